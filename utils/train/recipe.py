"""How a run trains, made from its RecipeSettings (utils.settings.values): the losses, optimizer,
LR schedule, AMP scaler and autocast, gradient accumulation and clipping, batch regularisers and
EMA, in one ``Recipe`` the engine's step needs nothing beside; and a resumed run's new LR,
momentum and weight decay put into it (``apply_hyperparameters``; the checkpoint's own state is
restored by utils.train.checkpoint). Every default is the reference's recipe: cross-entropy,
SGD with momentum and weight decay, the step schedule per epoch, no regulariser beyond the
loader's crops and flips."""
import contextlib
import dataclasses
import math
from typing import ContextManager, Optional, Union

import torch
import torch.nn as nn

from .. import distributed
from .regularisers import BatchAugment, DualCutoutLoss
from ..seeding import batch_generator
from ..settings.values import RecipeSettings
from .ema import WeightEMA, create_ema
from .optim import create_optimizer
from .schedule import make_scheduler

__all__ = ["Recipe", "make_recipe", "autocast", "AMP_DTYPES",
           "apply_hyperparameters"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
