"""The training engine's fp16 path: GradScaler steps, overflow skipping and the scaler's state
in the checkpoint. fp16 autocast and GradScaler run on the CPU too, so the path the GPU takes
is tested here (cifar.py itself refuses --amp fp16 without a GPU, where it only costs time)."""
import pytest
import torch

import models
from builders import engine_recipe, random_images
from utils.data.loaders import BatchFormat, CropFlip, DeviceLoader, EpochBatches
from utils.train.checkpoint import Checkpoint
from utils.train.engine import NonFiniteLoss, check_finite, train_one_epoch
from utils.settings.values import LoopSettings
from utils.train.plan import TrainPlan


PLAN = TrainPlan(epochs=1, loop=LoopSettings(show_progress=False))


def tiny_run(scaler, n=12, batch=4):
    torch.manual_seed(0)
    model = models.create_model(models.cifar.MODELS, "l_resnet", num_classes=10, depth=8)
    data = random_images(n, seed=1)
    loader = DeviceLoader(data, EpochBatches(n, batch, True, seed=2), "cpu",
                          BatchFormat((0.5,) * 3, (0.25,) * 3), CropFlip())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, loader, optimizer


def test_fp16_skips_the_step_whose_gradients_overflow_and_backs_off_the_scale():
    # 2^40 overflows fp16 gradients on the first step; the backoff to 2^10 lets the other two
    # steps train. No growth within 2000 steps, so the final scale shows exactly one skip.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, backoff_factor=2.0 ** -30)
    model, loader, optimizer = tiny_run(scaler)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, top1, _ = train_one_epoch(model, loader, engine_recipe(optimizer, scaler, amp="fp16"),
                                    PLAN, 0)
    assert scaler.get_scale() == 2.0 ** 10
    assert torch.isfinite(torch.tensor(loss)) and 0 <= top1 <= 100
    after = model.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the later steps trained

    # One skipped step leaves the weights where they were.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, backoff_factor=0.5)
    model, loader, optimizer = tiny_run(scaler, n=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_one_epoch(model, loader, engine_recipe(optimizer, scaler, amp="fp16"), PLAN, 0)
    assert scaler.get_scale() == 2.0 ** 39
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_scaler_state_goes_into_the_checkpoint_and_comes_back():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, backoff_factor=2.0 ** -30)
    model, loader, optimizer = tiny_run(scaler)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1])
    recipe = engine_recipe(optimizer, scaler, amp="fp16", scheduler=scheduler)
    train_one_epoch(model, loader, recipe, PLAN, 0)
    state = Checkpoint.capture(1, model, recipe, 0.0, 0.0, {})
    resumed = torch.amp.GradScaler("cpu")
    state.restore(model, engine_recipe(optimizer, resumed, amp="fp16", scheduler=scheduler))
    assert resumed.state_dict() == scaler.state_dict()
    assert resumed.get_scale() == 2.0 ** 10


def test_an_epoch_with_non_finite_numbers_or_weights_is_refused():
    model = torch.nn.Linear(2, 2)
    row = {"Learning Rate": 0.1, "Train Loss": 1.0, "Valid Loss": 1.0, "Train Acc.": 50.0,
           "Valid Acc.": 50.0}
    check_finite(0, row, [model])  # all finite: nothing happens
    with pytest.raises(NonFiniteLoss, match="EMA validation accuracy became non-finite at epoch 3"):
        check_finite(2, {**row, "EMA Valid Acc.": float("nan")}, [model])
    with pytest.raises(NonFiniteLoss, match="TTA validation accuracy became non-finite"):
        check_finite(2, {**row, "TTA Valid Acc.": float("inf")}, [model])
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(NonFiniteLoss, match="the weights became non-finite at epoch 1;"):
        check_finite(0, row, [model])


def clipped_step(clip, scaler=None, amp="none"):
    """One engine step of a large-gradient linear model; the gradient the optimizer saw."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights stay, grads show
    seen = []
    optimizer.register_step_pre_hook(lambda opt, *a: seen.append(
        torch.cat([p.grad.flatten() for p in model.parameters()]).clone()))
    x, y = 100 * torch.randn(16, 8), torch.randint(0, 3, (16,))

    class One:
        device = "cpu"

        def batch_sizes(self):
            return [16]

        def __iter__(self):
            return iter([(x, y)])
    train_one_epoch(model, One(), engine_recipe(optimizer, scaler, clip_grad=clip, num_classes=3,
                                                amp=amp), PLAN, 0)
    return seen[0]


def test_a_last_batch_of_one_image_at_1x1_features_is_a_line_not_a_traceback():
    """BatchNorm cannot normalise one value per channel: 9 images in batches of 4 leave a last
    batch of 1, and a BN after global pooling sees 1x1 features."""
    import torch.nn as nn
    from utils.settings.flag import UsageError
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4),
                          nn.Flatten(), nn.Linear(4, 10))
    loader = DeviceLoader(random_images(9, seed=1), EpochBatches(9, 4, True, seed=2), "cpu",
                          BatchFormat((0.5,) * 3, (0.25,) * 3), CropFlip())
    recipe = engine_recipe(torch.optim.SGD(model.parameters(), lr=0.1))
    loader.set_epoch(0)
    with pytest.raises(UsageError, match=r"batch 3 of epoch 1 holds 1 image\(s\), and a "
                                         r"BatchNorm layer sees one value per channel .* \(9 "
                                         r"images an epoch\)"):
        train_one_epoch(model, loader, recipe, PLAN, 0)


def test_clip_grad_bounds_the_global_norm():
    free = clipped_step(0.0)
    assert free.norm() > 2.0
    clipped = clipped_step(1.0)
    assert clipped.norm() == pytest.approx(1.0, rel=1e-4)
    # The direction is kept: clipping only scales the whole gradient.
    torch.testing.assert_close(clipped, free * (1.0 / free.norm()), rtol=1e-4, atol=1e-6)


def test_clip_grad_under_fp16_clips_the_unscaled_gradient():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    clipped = clipped_step(1.0, scaler, "fp16")
    # Without unscaling first, the scaled gradient (x 256) would be clipped to norm 1 and then
    # unscaled to norm 1/256.
    assert clipped.norm() == pytest.approx(1.0, rel=1e-2)


def test_tta_flip_evaluates_the_mean_of_the_logits_of_image_and_mirror():
    from utils.train.engine import evaluate
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5)).eval()
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))

    class One:
        device = "cpu"

        def __len__(self):
            return 1

        def __iter__(self):
            return iter([(x, y)])
    criterion = torch.nn.CrossEntropyLoss()
    loss, top1, _ = evaluate(model, One(), criterion, show_progress=False, tta=True)
    with torch.no_grad():
        mean = (model(x) + model(x.flip(-1))) / 2
    assert loss == pytest.approx(criterion(mean, y).item(), rel=1e-6)
    assert top1 == pytest.approx(100 * (mean.argmax(1) == y).float().mean().item())
    plain = evaluate(model, One(), criterion, show_progress=False)[0]
    assert plain != pytest.approx(loss)  # the mirror changed the answer
