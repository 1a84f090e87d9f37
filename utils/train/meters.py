"""The running sums of an epoch's numbers on one process, from which its mean loss and top-1 /
top-5 accuracy come. The sums of the model's outputs stay on the device, so adding a batch never
waits for it (the host reads them only when it prints, saves or ends the epoch); the counts of
images, known on the host, stay there."""
from typing import Iterable, NamedTuple, Optional, Sequence, Union

import torch

from .. import distributed
from ..eval import topk_correct

__all__ = ["Scores", "Meters"]

Device = Union[torch.device, str]


class Scores(NamedTuple):
    """Mean loss and top-1 / top-5 accuracy (%) of a pass over images."""
    loss: float
    top1: float
    top5: float


class Meters:
    """The loss times the images it averaged over, the top-1 and top-5 hits (one float64
    tensor on the device), the images and the targets scored (host integers). A batch
    regulariser such as dual cutout scores more targets than it has images: hits count over
    targets, the loss over images. Saved (``tolist``) as the five numbers in that order."""
    FIELDS = ("loss_sum", "top1", "top5", "images", "scored")

    def __init__(self, device: Device = "cpu", saved: Optional[Sequence[float]] = None):
        saved = [0.0] * len(self.FIELDS) if saved is None else list(saved)
        if len(saved) != len(self.FIELDS):
            raise ValueError(f"Meters hold {len(self.FIELDS)} numbers ({', '.join(self.FIELDS)}),"
                             f" got {len(saved)}")
        self.sums = torch.tensor([float(v) for v in saved[:3]], dtype=torch.float64,
                                 device=device)
        self.images, self.scored = int(saved[3]), int(saved[4])

    @torch.no_grad()
    def add(self, loss: torch.Tensor, output: torch.Tensor, target: torch.Tensor,
            images: int) -> None:
        """One batch: ``loss`` is the mean over its ``images``; ``output`` is scored against
        ``target`` (class indices, or soft targets whose largest entry counts)."""
        top1, top5 = topk_correct(output.detach(), target, (1, 5))
        self.sums += torch.stack([loss.detach().double() * images, top1.double(), top5.double()])
        self.images += images
        self.scored += target.shape[0]

    def tolist(self) -> list:
        """The five numbers (a host sync): what a recovery checkpoint saves."""
        return self.sums.tolist() + [self.images, self.scored]

    def averages(self) -> "Scores":
        """The Scores of what was added (a host sync)."""
        loss_sum, top1, top5, images, scored = self.tolist()
        return Scores(loss_sum / images, 100 * top1 / scored, 100 * top5 / scored)

    def reduced(self) -> "Meters":
        """The sums over every process (each adds its shard of every batch): one all-reduce."""
        counts = torch.tensor([self.images, self.scored], dtype=torch.float64,
                              device=self.sums.device)
        every = distributed.all_reduce_sum(torch.cat([self.sums, counts])).tolist()
        return Meters(self.sums.device, every)

    def to(self, device: Device) -> "Meters":
        return Meters(device, self.tolist())

    @classmethod
    def total(cls, parts: Iterable["Meters"]) -> "Meters":
        """``parts`` added together, on the CPU."""
        numbers = [0.0] * len(cls.FIELDS)
        for part in parts:
            numbers = [a + b for a, b in zip(numbers, part.tolist())]
        return cls("cpu", numbers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Meters) and self.tolist() == other.tolist()

    def __repr__(self) -> str:
        return "Meters(" + ", ".join(f"{k}={v:g}" for k, v in zip(self.FIELDS, self.tolist())) + ")"
