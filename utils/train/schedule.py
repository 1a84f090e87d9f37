"""Learning-rate schedules.

``--scheduler step`` without warmup is the reference's: MultiStepLR stepped once per epoch, the
LR multiplied by ``gamma`` at each epoch of ``--schedule``. Cosine annealing and linear warmup
change the LR at every optimizer step instead (``IterationLR``), so a short warmup or the end of a
cosine is smooth rather than a staircase of epochs.
"""
import functools
import math
import torch

from ..settings.values import Schedule

__all__ = ["IterationLR", "lr_factor", "make_scheduler"]


class IterationLR(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR the engine steps after every optimizer step (not every epoch)."""
    per_iteration = True

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume at the saved step, with this run's plan (a resume may change --epochs, which
        moves the cosine): the optimizer's LR is set from the plan, not left as saved."""
        super().load_state_dict(state_dict)
        for group, base, factor in zip(self.optimizer.param_groups, self.base_lrs,
                                       self.lr_lambdas):
            group["lr"] = base * factor(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def lr_factor(step: int, schedule: Schedule, steps_per_epoch: int,
              floor: float = 0.0) -> float:
    """The multiplier of the base LR for optimizer step ``step`` (0-based) of ``schedule``.

    warmup (first W = round(warmup_epochs x steps_per_epoch) steps): (step + 1) / W
    step:   gamma ** (number of milestones m with step >= m x steps_per_epoch)
    cosine: f + (1 - f) (1 + cos(pi x t)) / 2 with t = (step - W) / (total steps - W), going
            from 1 to the ``floor`` f (--min-lr over the base LR)
    """
    warmup = round(schedule.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if schedule.name == "cosine":
        total = schedule.epochs * steps_per_epoch
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return schedule.gamma ** sum(step >= m * steps_per_epoch for m in schedule.milestones)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The torch scheduler of a ``Schedule``: MultiStepLR stepped per epoch for the reference's
    plain step schedule, else an IterationLR stepped after every optimizer step."""
    if not schedule.per_iteration:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(schedule.milestones),
                                                    gamma=schedule.gamma)
    # --min-lr is an LR: each parameter group's floor is its share of that group's base LR.
    return IterationLR(optimizer, [functools.partial(lr_factor, schedule=schedule,
                                                     steps_per_epoch=steps_per_epoch,
                                                     floor=schedule.min_lr / group["lr"])
                                   for group in optimizer.param_groups])
