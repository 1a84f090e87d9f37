"""How a run trains, from its flags: the losses, optimizer, LR schedule, AMP scaler and autocast,
gradient accumulation and clipping, batch regularisers and EMA, in one ``Recipe`` the engine's
step needs nothing beside; and putting a checkpoint's training state back into one. Every
default is the reference's recipe: cross-entropy, SGD with momentum and weight decay, the step
schedule per epoch, no regulariser beyond the loader's crops and flips."""
import contextlib
import dataclasses
import math
from typing import ContextManager, Optional, Union

import torch
import torch.nn as nn

from .. import distributed
from ..data.augment import BatchAugment, DualCutoutLoss, Regularisers
from ..seeding import batch_generator
from .ema import WeightEMA, create_ema
from .optim import create_optimizer
from .schedule import Schedule, make_scheduler

__all__ = ["RecipeSettings", "Recipe", "make_recipe", "autocast", "AMP_DTYPES",
           "apply_hyperparameters"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class RecipeSettings:
    """What a recipe is made of, as values (the recipe flag group of the scripts). The defaults
    are the reference's CIFAR recipe. ``amp`` and ``iter_size`` live here and nowhere else among
    the settings: the Recipe made of them holds the scaler, the autocast dtype and the
    accumulation."""
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


def autocast(device: Union[torch.device, str], amp: str) -> ContextManager:
    """Autocast to ``amp``'s dtype ("bf16", "fp16") on ``device``'s type; "none": full precision."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[amp])


@dataclasses.dataclass
class Recipe:
    """Everything one training step does besides calling the model: the losses (training,
    evaluation), optimizer, LR schedule (stepped per epoch, or per optimizer step when it says
    ``per_iteration``), the AMP scaler (fp16) and autocast precision ``amp``, the micro-batches
    per optimizer step (``iter_size``), the gradient norm clipped to (0: none), the batch
    regularisers with the ``seed`` of their draws, and the EMA of the weights (None without
    --ema)."""
    criterion: nn.Module
    eval_criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler]
    scaler: Optional[torch.amp.GradScaler]
    batch_augment: Optional[BatchAugment]
    ema: Optional[WeightEMA]
    clip_grad: float = 0.0
    iter_size: int = 1
    amp: str = "none"
    seed: int = 0

    @property
    def per_iteration(self) -> bool:
        """Whether the schedule steps after every optimizer step (warmup, cosine) rather than
        after every epoch."""
        return bool(getattr(self.scheduler, "per_iteration", False))

    def regularise(self, x: torch.Tensor, y: torch.Tensor, epoch: int, batch: int) -> tuple:
        """The batch regularisers' (cutout, mixup, ...) version of micro-batch ``batch`` of
        ``epoch``, drawn from a generator of (seed, epoch, batch, rank) alone, so a resumed or
        re-split run draws the same."""
        if self.batch_augment is None or not self.batch_augment.enabled:
            return x, y
        return self.batch_augment(x, y, batch_generator(self.seed, epoch, batch,
                                                        distributed.rank()))


def make_recipe(model: nn.Module, settings: RecipeSettings, num_classes: int,
                batches_per_epoch: int, seed: int = 0) -> Recipe:
    """The Recipe of ``settings`` for ``model`` (the bare module), whose batch regularisers
    draw from ``seed`` (the run's)."""
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
                  BatchAugment(num_classes, regs), ema, clip_grad=settings.clip_grad,
                  iter_size=settings.iter_size, amp=settings.amp, seed=seed)


def apply_hyperparameters(optimizer: torch.optim.Optimizer,
                          scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
                          settings: RecipeSettings) -> None:
    """The LR (as the base of the schedule: the step it has reached keeps its factor),
    momentum and weight decay of ``settings`` in a restored optimizer (a --resume may give them
    anew, and they apply from its first epoch). A parameter group without decay (--no-wd-norm's)
    keeps none."""
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
