"""The training engine's fp16 path: GradScaler steps, overflow skipping and the scaler's state
in the checkpoint. fp16 autocast and GradScaler run on the CPU too, so the path the GPU takes
is tested here (cifar.py itself refuses --amp fp16 without a GPU, where it only costs time)."""
import pytest
import torch

import models
from builders import engine_recipe, random_images
from utils.data.loaders import DeviceLoader, EpochBatches
from utils.train.checkpoint import restore_training_state, training_state
from utils.train.engine import NonFiniteLoss, TrainPlan, check_finite, train_one_epoch


FP16 = TrainPlan(epochs=1, amp="fp16", show_progress=False)


def tiny_run(scaler, n=12, batch=4):
    torch.manual_seed(0)
    model = models.create_model(models.cifar.MODELS, "l_resnet", num_classes=10, depth=8)
    data = random_images(n, seed=1)
    loader = DeviceLoader(data, EpochBatches(n, batch, True, seed=2), "cpu", (0.5,) * 3,
                          (0.25,) * 3, augment=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, loader, optimizer


def test_fp16_skips_the_step_whose_gradients_overflow_and_backs_off_the_scale():
    # 2^40 overflows fp16 gradients on the first step; the backoff to 2^10 lets the other two
    # steps train. No growth within 2000 steps, so the final scale shows exactly one skip.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, backoff_factor=2.0 ** -30)
    model, loader, optimizer = tiny_run(scaler)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, top1, _ = train_one_epoch(model, loader, engine_recipe(optimizer, scaler), FP16, 0)
    assert scaler.get_scale() == 2.0 ** 10
    assert torch.isfinite(torch.tensor(loss)) and 0 <= top1 <= 100
    after = model.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the later steps trained

    # One skipped step leaves the weights where they were.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, backoff_factor=0.5)
    model, loader, optimizer = tiny_run(scaler, n=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_one_epoch(model, loader, engine_recipe(optimizer, scaler), FP16, 0)
    assert scaler.get_scale() == 2.0 ** 39
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_scaler_state_goes_into_the_checkpoint_and_comes_back():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, backoff_factor=2.0 ** -30)
    model, loader, optimizer = tiny_run(scaler)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1])
    train_one_epoch(model, loader, engine_recipe(optimizer, scaler), FP16, 0)
    state = training_state(1, model, optimizer, scheduler, scaler, 0.0, 0.0, {})
    resumed = torch.amp.GradScaler("cpu")
    restore_training_state(state, optimizer, scheduler, resumed)
    assert resumed.state_dict() == scaler.state_dict()
    assert resumed.get_scale() == 2.0 ** 10


def test_an_epoch_with_non_finite_numbers_or_weights_is_refused():
    model = torch.nn.Linear(2, 2)
    check_finite(0, [0.1, 1.0, 1.0, 50.0, 50.0], [model])  # all finite: nothing happens
    with pytest.raises(NonFiniteLoss, match="EMA validation accuracy became non-finite at epoch 3"):
        check_finite(2, [0.1, 1.0, 1.0, 50.0, 50.0, float("nan")], [model])
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(NonFiniteLoss, match="the weights became non-finite at epoch 1;"):
        check_finite(0, [0.1, 1.0, 1.0, 50.0, 50.0], [model])
