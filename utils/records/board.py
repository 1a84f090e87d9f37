"""``--tensorboard``: the run's numbers as TensorBoard event files in RUN/tensorboard, written
through torch.utils.tensorboard (the ``tensorboard`` package) by the main process only.

One x axis for everything, the optimizer step (1-based, counted over the whole run):
    step/loss        every --log-every steps: the loss of the step's last micro-batch
    epoch/*          at each epoch's last step: train and valid loss, top-1 and top-5, the LR,
                     the epoch's training img/s
    flags            the run's flags, as text, once (at the first launch)
A resumed run appends to the same files; the events at or after the step it continues from
(logged before a kill, after its checkpoint) are purged, so no step appears twice.
"""
import json
import os
from typing import Optional

from ..settings.flag import UsageError
from .run_folder import FolderError, check_writable

__all__ = ["BOARD_FOLDER", "require_tensorboard", "check_board_folder", "Board"]

BOARD_FOLDER = "tensorboard"


def require_tensorboard() -> None:
    """A UsageError saying how to install tensorboard, where it is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise UsageError(f"--tensorboard writes through the tensorboard package, which is not "
                         f"installed here ({e}): pip install tensorboard") from e


def check_board_folder(run_folder: str) -> None:
    """Before any long work: RUN/tensorboard, where it exists, is a folder a file can be
    written in (a file of that name, or a read-only folder, failed only after the data had
    loaded, with a traceback). A FolderError says which."""
    path = os.path.join(run_folder, BOARD_FOLDER)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise FolderError(f"{path} is a file, where --tensorboard writes its event files: move "
                          f"it, or run without --tensorboard")
    if os.path.isdir(path):
        check_writable(path, "--tensorboard's event files' folder")


class Board:
    """The event files of a run folder, opened to continue at optimizer step ``first_step``
    (1 for a fresh run); ``flags`` are written once, by a fresh run."""

    def __init__(self, folder: str, first_step: int, flags: Optional[dict] = None):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(os.path.join(folder, BOARD_FOLDER),
                                    purge_step=first_step if first_step > 1 else None)
        if flags is not None and first_step <= 1:
            self.writer.add_text("flags", "    " + json.dumps(flags, indent=1, default=str)
                                 .replace("\n", "\n    "), 0)

    def step(self, step: int, loss: float) -> None:
        self.writer.add_scalar("step/loss", loss, step)

    def epoch(self, step: int, numbers: dict) -> None:
        """``numbers``: {name: value} of the epoch, logged as epoch/NAME at ``step``."""
        for name, value in numbers.items():
            self.writer.add_scalar(f"epoch/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
