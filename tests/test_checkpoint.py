"""The typed checkpoint (utils.train.checkpoint.Checkpoint): what it captures of a run comes back
whole through a file, and the checkpoints written before it existed (the reference's, this
project's earlier ones, a bare state_dict) still load, with what they lack left empty."""
import dataclasses

import pytest
import torch

import models
from utils.train.checkpoint import (ALWAYS_WRITTEN, Checkpoint, CheckpointError, read_checkpoint,
                                    save_checkpoint)
from utils.seeding import rng_state
from utils.settings.values import RecipeSettings, Schedule
from utils.train.recipe import make_recipe


def same(a, b):
    """Deep equality of checkpoint contents: tensors by value, containers by their items."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def trained(ema=0.9, seed=0):
    """A tiny model with its recipe after two optimizer steps (momentum, EMA and schedule state
    all non-trivial)."""
    torch.manual_seed(seed)
    model = models.create_model(models.cifar.MODELS, "l_resnet", num_classes=10, depth=8)
    recipe = make_recipe(model, RecipeSettings(ema=ema, schedule=Schedule(
        "cosine", epochs=2, warmup_epochs=0.5)), 10, batches_per_epoch=4, seed=seed)
    for _ in range(2):
        loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean()
        loss.backward()
        recipe.optimizer.step()
        recipe.optimizer.zero_grad()
        recipe.scheduler.step()
        if recipe.ema is not None:
            recipe.ema.update_parameters(model)
    return model, recipe


ABOUT = {"arch": "l_resnet", "num_classes": 10, "args": {"arch": "l_resnet", "depth": 8},
         "log": {"names": ["Learning Rate"], "rows": [[0.1]]},
         "run": {"sessions": [], "flags": {}, "recorded": {}}}


def test_a_captured_checkpoint_survives_dict_and_file_round_trips(tmp_path):
    model, recipe = trained()
    captured = Checkpoint.capture(1, model, recipe, 12.5, 20.0, ABOUT)
    assert captured.epoch == 1 and captured.acc == 12.5 and captured.best_acc == 20.0
    assert captured.arch == "l_resnet" and captured.position is None
    again = Checkpoint.from_dict(captured.to_dict())
    assert all(same(getattr(captured, f.name), getattr(again, f.name))
               for f in dataclasses.fields(Checkpoint))
    save_checkpoint(captured, False, str(tmp_path))
    read = read_checkpoint(str(tmp_path))
    assert all(same(getattr(captured, f.name), getattr(read, f.name))
               for f in dataclasses.fields(Checkpoint))


def test_restore_puts_every_state_back(tmp_path):
    model, recipe = trained()
    save_checkpoint(Checkpoint.capture(1, model, recipe, 12.5, 20.0, ABOUT), False,
                    str(tmp_path))
    fresh, fresh_recipe = trained(seed=1)
    assert not same(fresh.state_dict(), model.state_dict())
    start = read_checkpoint(str(tmp_path)).restore(fresh, fresh_recipe)
    assert start == (1, 20.0)
    assert same(fresh.state_dict(), model.state_dict())
    assert same(fresh_recipe.optimizer.state_dict(), recipe.optimizer.state_dict())
    assert same(fresh_recipe.scheduler.state_dict(), recipe.scheduler.state_dict())
    assert same(fresh_recipe.ema.state_dict(), recipe.ema.state_dict())
    assert fresh_recipe.ema.updates == 2


def test_the_file_holds_the_keys_every_earlier_checkpoint_held():
    model, recipe = trained(ema=0.0)
    saved = Checkpoint.capture(3, model, recipe, 1.0, 2.0, ABOUT).to_dict()
    # The reference's keys first, then ours; an absent scaler is still written as None and an
    # absent EMA not at all, as before the typed form.
    assert list(saved)[:5] == ["epoch", "state_dict", "acc", "best_acc", "optimizer"]
    assert set(ALWAYS_WRITTEN) <= set(saved) and saved["scaler"] is None
    assert "ema_state_dict" not in saved and "position" not in saved
    assert set(saved) == set(ALWAYS_WRITTEN) | set(ABOUT)


def test_an_earlier_checkpoint_of_this_project_loads_and_resumes(tmp_path):
    model, recipe = trained()
    # The dict this project's scripts wrote before the typed checkpoint, built by hand.
    earlier = {"epoch": 2, "state_dict": model.state_dict(), "acc": 30.0, "best_acc": 31.0,
               "optimizer": recipe.optimizer.state_dict(),
               "scheduler": recipe.scheduler.state_dict(), "scaler": None,
               "rng": rng_state(), **ABOUT,
               "ema_state_dict": recipe.ema.state_dict()}
    path = str(tmp_path / "checkpoint.pth.tar")
    torch.save(earlier, path)
    read = read_checkpoint(path)
    assert (read.epoch, read.acc, read.best_acc, read.arch, read.num_classes) == (
        2, 30.0, 31.0, "l_resnet", 10)
    assert read.extra == {}
    fresh, fresh_recipe = trained(seed=1)
    assert read.restore(fresh, fresh_recipe) == (2, 31.0)
    assert same(fresh.state_dict(), model.state_dict())
    assert same(read.to_dict(), earlier)  # written back, it is the same file's contents


def test_a_reference_checkpoint_loads_with_tensor_accuracies_and_no_schedule(tmp_path):
    model, recipe = trained(ema=0.0)
    reference = {"epoch": 5, "state_dict": {"module." + k: v for k, v in
                                            model.state_dict().items()},
                 "acc": torch.tensor(91.25), "best_acc": torch.tensor(92.5),
                 "optimizer": recipe.optimizer.state_dict()}
    path = str(tmp_path / "checkpoint.pth.tar")
    torch.save(reference, path)
    read = read_checkpoint(path)
    assert read.acc == 91.25 and read.best_acc == 92.5 and isinstance(read.acc, float)
    assert read.arch is None and read.args is None and read.scheduler is None
    fresh, fresh_recipe = trained(ema=0.0, seed=1)
    assert read.restore(fresh, fresh_recipe) == (5, 92.5)
    assert same(fresh.state_dict(), model.state_dict())
    assert fresh_recipe.scheduler.last_epoch == 5  # advanced to the reference's epoch


def test_a_bare_state_dict_is_a_checkpoint_of_weights_alone(tmp_path):
    model, _ = trained(ema=0.0)
    path = str(tmp_path / "weights.pth")
    torch.save(model.state_dict(), path)
    read = read_checkpoint(path)
    assert same(read.state_dict, model.state_dict())
    assert (read.epoch, read.optimizer, read.arch) == (0, None, None)


def test_fields_of_other_tools_survive_and_unknown_run_facts_are_refused(tmp_path):
    model, recipe = trained(ema=0.0)
    saved = Checkpoint.capture(1, model, recipe, 1.0, 1.0, ABOUT).to_dict()
    read = Checkpoint.from_dict({**saved, "note": "from another tool"})
    assert read.extra == {"note": "from another tool"}
    assert read.to_dict()["note"] == "from another tool"
    with pytest.raises(ValueError, match="records no"):
        Checkpoint.capture(1, model, recipe, 1.0, 1.0, {**ABOUT, "lr": 0.1})


def test_a_damaged_field_is_refused_where_it_is_read(tmp_path):
    model, recipe = trained(ema=0.0)
    saved = Checkpoint.capture(1, model, recipe, 1.0, 1.0, ABOUT).to_dict()
    with pytest.raises(CheckpointError, match="malformed 'acc'"):
        Checkpoint.from_dict({**saved, "acc": float("nan")}, "c.pth.tar")
    with pytest.raises(CheckpointError, match="malformed 'epoch'"):
        Checkpoint.from_dict({**saved, "epoch": "3"}, "c.pth.tar")
