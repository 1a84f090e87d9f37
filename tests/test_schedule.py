"""LR schedules: the reference's step schedule per epoch, cosine and warmup per iteration."""
import math

import pytest
import torch

from utils.settings.values import Schedule
from utils.train.schedule import IterationLR, lr_factor, make_scheduler


def run_schedule(steps_per_epoch, epochs, **settings):
    schedule = Schedule(**{"name": "step", "milestones": (), "epochs": epochs, **settings})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    scheduler = make_scheduler(optimizer, schedule, steps_per_epoch)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if getattr(scheduler, "per_iteration", False):
                scheduler.step()
        if not getattr(scheduler, "per_iteration", False):
            scheduler.step()
    return scheduler, lrs


def test_step_schedule_is_the_references_multisteplr_per_epoch():
    scheduler, lrs = run_schedule(3, 4, milestones=(1, 3), gamma=0.5)
    assert isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR)
    assert lrs == pytest.approx([0.4] * 3 + [0.2] * 6 + [0.1] * 3)


def test_min_lr_is_where_the_cosine_ends_and_zero_leaves_it_unchanged():
    _, lrs = run_schedule(10, 5, name="cosine", min_lr=0.04)
    for step in (0, 12, 25, 49):
        assert lrs[step] == pytest.approx(0.04 + 0.36 * 0.5 * (1 + math.cos(math.pi * step / 50)))
    assert lrs[-1] > 0.04 and lrs[-1] == pytest.approx(0.04, abs=1e-3)
    assert run_schedule(10, 5, name="cosine", min_lr=0.0)[1] == run_schedule(10, 5,
                                                                              name="cosine")[1]


@pytest.mark.parametrize("argv, words", [
    (["--min-lr", "0.01"], "needs that scheduler"),
    (["--min-lr", "0.5", "--scheduler", "cosine"], "a value below --lr 0.1"),
    (["--min-lr", "-1", "--scheduler", "cosine"], "--min-lr must be >= 0"),
])
def test_a_min_lr_that_cannot_act_is_refused(argv, words):
    from utils.scripts import cifar_flags
    from utils.settings.flag import UsageError
    flags = cifar_flags()
    with pytest.raises(UsageError, match=words):
        flags.settings(flags.parse(["--data", "x"] + argv))


def test_cosine_hits_the_closed_form_at_chosen_iterations():
    scheduler, lrs = run_schedule(10, 5, name="cosine")
    assert isinstance(scheduler, IterationLR)
    total = 50
    for step in (0, 1, 12, 25, 37, 49):
        assert lrs[step] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * step / total)))
    assert lrs[25] == pytest.approx(0.2)  # halfway: half the base LR


def test_warmup_is_linear_per_iteration_then_cosine():
    _, lrs = run_schedule(4, 6, name="cosine", warmup_epochs=2)
    assert lrs[:8] == pytest.approx([0.4 * (k + 1) / 8 for k in range(8)])
    # After 8 warmup steps the cosine runs over the remaining 16 steps.
    assert lrs[8] == pytest.approx(0.4)
    assert lrs[16] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))


def test_warmup_then_step_drops_at_epoch_boundaries():
    _, lrs = run_schedule(5, 4, warmup_epochs=1, milestones=(2, 3), gamma=0.1)
    assert lrs[:5] == pytest.approx([0.08, 0.16, 0.24, 0.32, 0.4])
    assert lrs[5:10] == pytest.approx([0.4] * 5)
    assert lrs[10:15] == pytest.approx([0.04] * 5)
    assert lrs[15:] == pytest.approx([0.004] * 5)


def test_factor_for_a_fractional_warmup():
    schedule = Schedule("step", epochs=2, milestones=(), warmup_epochs=0.5)
    assert lr_factor(0, schedule, steps_per_epoch=10) == pytest.approx(1 / 5)


def test_iteration_schedule_resumes_from_its_state():
    _, full = run_schedule(4, 4, name="cosine", warmup_epochs=1)
    schedule = Schedule("cosine", epochs=4, milestones=(), warmup_epochs=1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    first = make_scheduler(opt, schedule, 4)
    for _ in range(6):
        opt.step()
        first.step()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    second = make_scheduler(opt2, schedule, 4)
    opt2.load_state_dict(opt.state_dict())
    second.load_state_dict(first.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(full[6])


def test_a_resume_with_more_epochs_follows_the_new_cosine_at_once():
    def make(epochs):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
        return opt, make_scheduler(opt, Schedule("cosine", epochs=epochs, milestones=()), 4)
    opt, short = make(1)
    for _ in range(4):
        opt.step()
        short.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)  # the end of a 1-epoch cosine
    opt2, longer = make(2)
    opt2.load_state_dict(opt.state_dict())
    longer.load_state_dict(short.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.2)  # halfway through 2 epochs
