"""Weights saved in another project's form, read into ours.

The Batch-Channel Normalization authors' ImageNet models (their imagenet/ folder; ResNets with
torchvision's module names) save, through DataParallel (``module.`` keys, which
``unwrap_state_dict`` drops), each BCN layer as its batch part under ``pbn.`` (a BatchNorm, or
their estimating BatchNorm with an ``estbn_moving_speed`` buffer) and its channel part's affine
as ``weight`` and ``bias`` of shape (1, G, 1). Ours (models.norms.BatchChannelNorm2d) keeps the
batch part under ``bn.`` and the affine as (G,), and its estimate speed is a setting
(--bcn-speed), not a buffer.
"""
from typing import NamedTuple, Optional

import torch

__all__ = ["AuthorsForm", "from_bcn_authors", "micro_batch_speeds"]


class AuthorsForm(NamedTuple):
    """A state_dict mapped from the BCN authors' form, and the estimate speeds it held."""
    state: dict
    speeds: frozenset


def from_bcn_authors(state: dict, own: dict) -> Optional[AuthorsForm]:
    """``state`` (already without ``module.``) in our form, when it is in the BCN authors'
    (it has ``pbn.`` keys); None otherwise. ``own``: the model's state_dict, whose shapes say
    which (1, G, 1) affines to flatten."""
    if not any(".pbn." in key for key in state):
        return None
    mapped, speeds = {}, set()
    for key, value in state.items():
        if key.endswith(".pbn.estbn_moving_speed"):
            speeds.add(float(value.reshape(-1)[0]))
            continue
        ours = key.replace(".pbn.", ".bn.")
        target = own.get(ours)
        if (target is not None and target.ndim == 1 and value.ndim == 3
                and value.shape[0] == value.shape[2] == 1):
            value = value.reshape(-1)
        mapped[ours] = value
    return AuthorsForm(mapped, frozenset(speeds))


def micro_batch_speeds(model: torch.nn.Module) -> set:
    """The estimate speeds of ``model``'s BCN layers that train on micro-batches (where the
    speed acts: --ghost-batch)."""
    return {m.speed for m in model.modules()
            if hasattr(m, "micro_batch") and getattr(m, "micro_batch", 0)}
