"""How a run trains, from its flags: the losses, optimizer, LR schedule, AMP scaler, batch
regularisers and EMA (a ``Recipe``), and putting a checkpoint's training state back into one.
Every default is the reference's recipe: cross-entropy, SGD with momentum and weight decay, the
step schedule per epoch, no regulariser beyond the loader's crops and flips."""
import dataclasses
import math

import torch
import torch.nn as nn

from ..data.augment import BatchAugment, DualCutoutLoss, Regularisers
from .checkpoint import load_weights, restore_training_state
from .ema import create_ema
from .optim import create_optimizer
from .schedule import Schedule, make_scheduler

__all__ = ["RecipeSettings", "Recipe", "make_recipe", "resume_from"]


@dataclasses.dataclass(frozen=True)
class RecipeSettings:
    """What a recipe is made of, as values (the recipe flag group of the scripts). The defaults
    are the reference's CIFAR recipe."""
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    no_wd_norm: bool = False
    schedule: Schedule = Schedule()
    iter_size: int = 1
    label_smoothing: float = 0.0
    regularisers: Regularisers = Regularisers()
    ema: float = 0.0
    amp: str = "none"
    clip_grad: float = 0.0


@dataclasses.dataclass
class Recipe:
    """How a run trains: the losses (training, evaluation), optimizer, LR schedule, AMP scaler,
    batch regularisers, the EMA of the weights (None without --ema) and the gradient norm
    clipped to (0: none)."""
    criterion: nn.Module
    eval_criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: object
    batch_augment: BatchAugment
    ema: object
    clip_grad: float = 0.0


def make_recipe(model, settings, num_classes, batches_per_epoch):
    """The Recipe of ``settings`` (a RecipeSettings) for ``model`` (the bare module)."""
    regs = settings.regularisers
    criterion = (DualCutoutLoss(regs.dual_cutout, settings.label_smoothing) if regs.dual_cutout
                 else nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing))
    optimizer = create_optimizer(model, settings.optimizer, lr=settings.lr,
                                 momentum=settings.momentum, weight_decay=settings.weight_decay,
                                 nesterov=settings.nesterov, no_wd_norm=settings.no_wd_norm)
    steps_per_epoch = math.ceil(batches_per_epoch / settings.iter_size)
    scheduler = make_scheduler(optimizer, settings.schedule, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if settings.amp == "fp16" else None
    ema = create_ema(model, settings.ema) if settings.ema else None
    return Recipe(criterion, nn.CrossEntropyLoss(), optimizer, scheduler, scaler,
                  BatchAugment(num_classes, regs), ema, settings.clip_grad)


def resume_from(checkpoint, model, recipe, settings):
    """Weights, optimizer, schedule, EMA and RNG states of ``checkpoint`` into this run, then
    this run's LR, momentum and weight decay (``settings``, a RecipeSettings: a --resume may give
    them anew, and they apply from its first epoch); returns (start_epoch, best_acc). The class
    count was checked before the data (utils.settings.run.check_resume)."""
    load_weights(model, checkpoint)
    start = restore_training_state(checkpoint, recipe.optimizer, recipe.scheduler, recipe.scaler,
                                   recipe.ema)
    apply_hyperparameters(recipe.optimizer, recipe.scheduler, settings)
    return start


def apply_hyperparameters(optimizer, scheduler, settings):
    """The LR (as the base of the schedule: the step it has reached keeps its factor),
    momentum and weight decay of ``settings`` in a restored optimizer. A parameter group
    without decay (--no-wd-norm's) keeps none."""
    bases = getattr(scheduler, "base_lrs", None) or [g.get("initial_lr", g["lr"])
                                                      for g in optimizer.param_groups]
    for i, (group, base) in enumerate(zip(optimizer.param_groups, bases)):
        group["lr"] = group["lr"] * settings.lr / base if base else settings.lr
        group["initial_lr"] = settings.lr
        if "momentum" in group:
            group["momentum"] = settings.momentum
        if not (settings.no_wd_norm and i == 1):  # parameter_groups: the second is undecayed
            group["weight_decay"] = settings.weight_decay
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [settings.lr] * len(optimizer.param_groups)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
