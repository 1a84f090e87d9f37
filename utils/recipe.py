"""How a run trains, from its flags: the losses, optimizer, LR schedule, AMP scaler, batch
regularisers and EMA (a ``Recipe``), and putting a checkpoint's training state back into one.
Every default is the reference's recipe: cross-entropy, SGD with momentum and weight decay, the
step schedule per epoch, no regulariser beyond the loader's crops and flips."""
import dataclasses
import math

import torch
import torch.nn as nn

from .augment import BatchAugment, DualCutoutLoss
from .checkpoint import load_weights, restore_training_state
from .ema import create_ema
from .optim import create_optimizer
from .schedule import make_scheduler

__all__ = ["Recipe", "make_batch_augment", "make_recipe", "resume_from"]


@dataclasses.dataclass
class Recipe:
    """How a run trains: the losses (training, evaluation), optimizer, LR schedule, AMP scaler,
    batch regularisers and the EMA of the weights (None without --ema)."""
    criterion: nn.Module
    eval_criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: object
    batch_augment: BatchAugment
    ema: object


def make_batch_augment(args, num_classes):
    """The BatchAugment of --cutout/--random-erasing/--mixup/--cutmix/--ricap/--dual-cutout;
    an impossible combination is a ValueError (cli.check_args reports it before the data)."""
    return BatchAugment(num_classes, cutout_size=args.cutout,
                        random_erasing_p=args.random_erasing, mixup_alpha=args.mixup,
                        cutmix_alpha=args.cutmix, ricap_beta=args.ricap,
                        dual_cutout_alpha=args.dual_cutout)


def make_recipe(model, args, num_classes, batches_per_epoch):
    """The Recipe of the flags. The default is the reference's: cross-entropy, SGD with momentum
    and weight decay, the step schedule per epoch, no regulariser beyond the loader's crops."""
    batch_augment = make_batch_augment(args, num_classes)
    criterion = (DualCutoutLoss(args.dual_cutout, args.label_smoothing) if args.dual_cutout else
                 nn.CrossEntropyLoss(label_smoothing=args.label_smoothing))
    optimizer = create_optimizer(model, args.optimizer, lr=args.lr, momentum=args.momentum,
                                 weight_decay=args.weight_decay, nesterov=args.nesterov,
                                 no_wd_norm=args.no_wd_norm)
    scheduler = make_scheduler(optimizer, args, math.ceil(batches_per_epoch / args.iter_size))
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    ema = create_ema(model, args.ema) if args.ema else None
    return Recipe(criterion, nn.CrossEntropyLoss(), optimizer, scheduler, scaler, batch_augment,
                  ema)


def resume_from(checkpoint, model, recipe):
    """Weights, optimizer, schedule, EMA and RNG states of ``checkpoint`` into this run; returns
    (start_epoch, best_acc). The class count was checked before the data (check_num_classes)."""
    load_weights(model, checkpoint)
    return restore_training_state(checkpoint, recipe.optimizer, recipe.scheduler, recipe.scaler,
                                  recipe.ema)
