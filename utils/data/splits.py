"""A held-out validation split (``--val-split FRACTION``): a class-balanced share of the training
images that never reaches training, on which every epoch is evaluated and model_best chosen,
while the test split is scored once, at the end.

The split is a function of the labels and the fraction alone: each class gives
round(FRACTION x its images) of them (at least one where the class has two or more, never all),
drawn by a generator of a fixed seed, so runs of several --manualSeed values, several processes
or a resumed run hold out the same images.
"""
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch

from .errors import DataError

__all__ = ["SPLIT_SEED", "Split", "held_out_split", "hold_out"]

SPLIT_SEED = 20190325  # fixed: the held-out images must not move with --manualSeed


class Split(NamedTuple):
    """Indices into the training images, ascending: those that train, those held out."""
    train: torch.Tensor
    held_out: torch.Tensor


def held_out_split(labels: Union[torch.Tensor, Sequence[int]], fraction: float) -> Split:
    """The class-balanced held-out share ``fraction`` (in (0, 1)) of images with ``labels``;
    a DataError when it would hold out no image."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"a held-out share must be in (0, 1), got {fraction}")
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    held = []
    for label in torch.unique(labels, sorted=True):
        members = torch.nonzero(labels == label).flatten()
        count = len(members)
        take = min(max(round(fraction * count), 1), count - 1) if count > 1 else 0
        held.append(members[torch.randperm(count, generator=generator)[:take]])
    held_out = torch.sort(torch.cat(held)).values if held else torch.zeros(0, dtype=torch.long)
    if not len(held_out):  # every epoch would be scored on nothing (0 / 0 at its end)
        raise DataError(f"--val-split {fraction:g} holds out no image: no class has two or more "
                        f"training images, and a class's only image is never held out; use "
                        f"more data, or train without --val-split")
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held_out] = False
    return Split(torch.nonzero(keep).flatten(), held_out)


def hold_out(train_set: Any, test_set: Any, fraction: float) -> tuple[Any, Any, Optional[Any]]:
    """(the images that train, those evaluated every epoch, those scored once at the end) of a
    run: with ``fraction`` (--val-split) the training images less their held-out share, that
    share, and ``test_set``; without, ``train_set``, ``test_set`` and None. The sets are any with
    ``labels`` and ``subset(index)`` (an ArrayDataset, an ImageFiles tree)."""
    if not fraction:
        return train_set, test_set, None
    split = held_out_split(train_set.labels, fraction)
    return train_set.subset(split.train), train_set.subset(split.held_out), test_set
