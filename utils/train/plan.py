"""The plan of a run's epoch loop, as values: where training starts (``StartPoint``, with the
``EpochPosition`` of a run stopped mid-epoch), the loop itself (``TrainPlan``), and the model as it is called beside the module that is saved
(``PreparedModel``). The engine (utils.train.engine) runs it."""
import dataclasses
from typing import NamedTuple, Optional

import torch

from ..records.run_folder import FolderUse
from ..settings.values import CheckpointPolicy, LoopSettings
from .checkpoint import CheckpointError
from .meters import Meters

__all__ = ["EpochPosition", "StartPoint", "TrainPlan", "PreparedModel"]


@dataclasses.dataclass(frozen=True)
class EpochPosition:
    """Where in an epoch a recovery checkpoint was taken: the next micro-batch, each process's
    Meters so far (one per rank) and the LR the epoch started with (its log row's)."""
    batch: int
    meters: tuple
    lr: float

    def as_dict(self) -> dict:
        return {"batch": self.batch, "meters": [m.tolist() for m in self.meters], "lr": self.lr}

    @classmethod
    def from_dict(cls, saved: Optional[dict], world: int = 1) -> Optional["EpochPosition"]:
        """The position a checkpoint saved (None: it was taken at an epoch's end), for a run of
        ``world`` processes. Saved by another number of processes, its meters go to rank 0:
        the epoch's numbers stay right, only not bitwise those of an unstopped run."""
        if not saved:
            return None
        try:
            meters = [Meters("cpu", m) for m in saved["meters"]]
            if len(meters) != world:
                meters = [Meters.total(meters)] + [Meters() for _ in range(world - 1)]
            return cls(int(saved["batch"]), tuple(meters), float(saved["lr"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"the checkpoint's position in its epoch is malformed: "
                                  f"{type(e).__name__}: {e}") from e


@dataclasses.dataclass(frozen=True)
class StartPoint:
    """Where training starts: the 0-based epoch, the place in it of a run resumed mid-epoch,
    the best validation accuracy so far, and whether the run continues a checkpoint (whose log
    it then appends to)."""
    epoch: int = 0
    position: Optional[EpochPosition] = None
    best_acc: float = 0.0
    resumed: bool = False


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """The loop of a run: epochs [start.epoch, epochs), its folder (which gets the log and
    checkpoints), the checkpoints it keeps and how the loop shows and records itself (TTA,
    progress, TensorBoard): the last two as their flags gave them (utils.settings.values)."""
    epochs: int
    start: StartPoint = StartPoint()
    folder: Optional[FolderUse] = None
    checkpoints: CheckpointPolicy = CheckpointPolicy()
    loop: LoopSettings = LoopSettings()


class PreparedModel(NamedTuple):
    """The model as it is called (maybe DDP/DataParallel/compiled) and the bare module whose
    state_dict is saved."""
    call: torch.nn.Module
    raw: torch.nn.Module
