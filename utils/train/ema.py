"""Exponential moving average of the weights, evaluated and checkpointed beside them.

After the first update (a copy of the weights), every optimizer step sets

    ema <- decay * ema + (1 - decay) * w        (torch.lerp(ema, w, 1 - decay))

for every floating-point parameter and buffer (BatchNorm's running statistics too, so the averaged
model can be evaluated as it is); integer buffers (BatchNorm's batch counter) are copied.

``WeightEMA`` is torch.optim.swa_utils.AveragedModel (its checkpoint keys: ``module.*`` and the
update count ``n_averaged``) with the same arithmetic as ``get_ema_multi_avg_fn``, but an update
that never waits for the GPU: AveragedModel reads its on-device count back to the host twice per
update to decide whether to copy or average, which stalls the host once per step. Here the host
keeps its own count (taken from ``n_averaged`` when a checkpoint is loaded)."""
from typing import Any, Mapping

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["WeightEMA", "create_ema"]


class WeightEMA(AveragedModel):
    """The EMA of ``model``'s weights with ``decay`` in (0, 1)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(model, use_buffers=True)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        pairs = list(zip([*self.module.parameters(), *self.module.buffers()],
                         [*model.parameters(), *model.buffers()], strict=True))
        floats = [(a, w.detach()) for a, w in pairs if a.is_floating_point()]
        counters = [(a, w.detach()) for a, w in pairs if not a.is_floating_point()]
        if floats:
            averaged, current = map(list, zip(*floats))
            if self.updates == 0:
                torch._foreach_copy_(averaged, current)
            else:
                torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        if counters:
            torch._foreach_copy_(*map(list, zip(*counters)))
        self.n_averaged += 1
        self.updates += 1

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.updates = int(self.n_averaged)  # once per load, not per step
        return result


def create_ema(model: nn.Module, decay: float) -> WeightEMA:
    """A WeightEMA following ``model`` (the bare module, not a DDP/compile wrapper)."""
    return WeightEMA(model, decay)
