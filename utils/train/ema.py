"""Exponential moving average of the weights, evaluated and checkpointed beside them.

torch.optim.swa_utils does the work: ``AveragedModel`` with ``get_ema_multi_avg_fn(decay)``.
After the first update (a copy of the weights), every optimizer step sets

    ema <- decay * ema + (1 - decay) * w

for parameters and, with ``use_buffers=True``, for buffers too (BatchNorm running statistics),
so the averaged model can be evaluated as it is."""
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["create_ema"]


def create_ema(model, decay):
    """An AveragedModel following ``model`` (the bare module, not a DDP/compile wrapper)."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
