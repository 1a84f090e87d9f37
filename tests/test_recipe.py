"""utils.train.recipe.make_recipe: what each recipe flag turns on, and the reference's recipe by
default."""
import pytest
import torch
import torch.nn as nn

import cifar
from utils.train.regularisers import DualCutoutLoss
from utils.settings.flag import UsageError
from utils.train.recipe import make_recipe
from utils.train.schedule import IterationLR
from utils.session.stages import read_settings


def recipe_for(flags, batches_per_epoch=10):
    settings, _ = read_settings(cifar.cifar_flags(), ["-a", "resnet", "--depth", "8"] + flags)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    return make_recipe(model, settings.recipe, 10, batches_per_epoch)


def test_default_recipe_is_the_references():
    recipe = recipe_for([])
    assert isinstance(recipe.optimizer, torch.optim.SGD)
    assert recipe.optimizer.param_groups[0]["momentum"] == 0.9
    assert not recipe.optimizer.param_groups[0]["nesterov"]
    assert isinstance(recipe.scheduler, torch.optim.lr_scheduler.MultiStepLR)
    assert recipe.criterion.label_smoothing == 0 and not recipe.batch_augment.enabled
    assert recipe.ema is None and recipe.scaler is None


def test_label_smoothing_spreads_eps_over_the_classes():
    recipe = recipe_for(["--label-smoothing", "0.1"])
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    log_p = logits.log_softmax(1)
    # Target distribution: 1 - eps + eps/K on the true class, eps/K on every other.
    expected = -((1 - 0.1 + 0.01) * log_p[0, 0] + 0.01 * log_p[0, 1:].sum())
    assert recipe.criterion(logits, torch.tensor([0])).item() == pytest.approx(expected.item())
    assert recipe.eval_criterion.label_smoothing == 0  # validation loss stays plain


def test_cosine_warmup_lars_dual_cutout_ema():
    recipe = recipe_for(["--scheduler", "cosine", "--warmup-epochs", "1", "--optimizer", "lars",
                         "--cutout", "8", "--dual-cutout", "0.1", "--ema", "0.99",
                         "--iter-size", "2"])
    assert isinstance(recipe.scheduler, IterationLR)
    # 10 batches with --iter-size 2: 5 optimizer steps per epoch, so the warmup's first is 1/5.
    assert recipe.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 5)
    assert isinstance(recipe.criterion, DualCutoutLoss)
    assert recipe.ema is not None and recipe.batch_augment.enabled


@pytest.mark.parametrize("flags, message", [
    (["--nesterov", "--optimizer", "adamw"], "--nesterov needs --optimizer sgd"),
    (["--label-smoothing", "1"], "--label-smoothing must be in"),
    (["--ema", "1"], "--ema takes a decay"),
    (["--warmup-epochs", "400"], "exceeds --epochs"),
    (["--cutout", "-1"], "--cutout must be >= 0"),
])
def test_impossible_recipes_are_usage_errors(flags, message):
    with pytest.raises(UsageError, match=message):
        recipe_for(flags)


def test_dual_cutout_without_a_size_is_a_usage_error():
    with pytest.raises(UsageError, match="--cutout SIZE"):
        recipe_for(["--dual-cutout", "0.1"])
