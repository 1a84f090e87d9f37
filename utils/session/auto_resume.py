"""``--auto-resume``: one command line for a run's first launch and every restart (a requeued
SLURM job, torchrun's --max-restarts after a worker died).

If the run folder (-c, or the default one) holds this run's checkpoint, the run continues from
the newest place it saved, a recovery checkpoint or an epoch's, exactly as --resume does;
otherwise it starts. "This run" means every recorded flag the command line gives agrees with
the checkpoint's (a folder of another run is refused in one line naming the difference); a run
that has done its epochs ends at once, exit 0, saying it is finished. A folder holding a run
that stopped before its first checkpoint has nothing to continue: it is started over, with a
line. Every process of a torchrun or srun launch reads the same folder and decides alike; the
lock of a dead predecessor is the kernel's to drop (utils.records.run_folder).
"""
import os
from typing import NamedTuple, Optional

from ..distributed import launched_as_main
from ..records.run_folder import holds_run
from ..settings.flag import UsageError
from ..settings.flags import ParsedFlags, ScriptFlags
from ..train.checkpoint import Checkpoint, read_checkpoint

__all__ = ["RunFinished", "AutoResumed", "auto_resume"]


class RunFinished(Exception):
    """--auto-resume of a run that has done its epochs: nothing to do, and that is no error."""


class AutoResumed(NamedTuple):
    """The command line as --auto-resume leaves it (with --resume where a checkpoint is), and
    the checkpoint read (None for a fresh start)."""
    parsed: ParsedFlags
    checkpoint: Optional[Checkpoint]


def auto_resume(flags: ScriptFlags, parsed: ParsedFlags) -> AutoResumed:
    """What --auto-resume makes of ``parsed``: a --resume of the run folder's checkpoint, a
    fresh start, or RunFinished. It decides on the command line's typed Invocation."""
    asked = flags.invocation(parsed)
    if asked.resume:
        raise UsageError("--auto-resume finds the run's checkpoint itself: drop --resume (or "
                         "--auto-resume)")
    if asked.evaluate:
        raise UsageError("--auto-resume continues a run's training; to evaluate it, give -e "
                         "--resume RUN")
    if asked.replace:  # --replace keeps its meaning: start the folder's run over
        return AutoResumed(parsed, None)
    folder = asked.run_folder
    path = os.path.join(folder, "checkpoint.pth.tar")
    if not os.path.isfile(path):
        if holds_run(folder):
            _say(f"==> --auto-resume: {folder} holds a run that stopped before its first "
                 f"checkpoint, nothing to continue: starting it over")
            return AutoResumed(parsed.starting_over(), None)
        return AutoResumed(parsed, None)
    checkpoint = read_checkpoint(path)
    difference = flags.differing_recorded(parsed, checkpoint.args or {})
    if difference:
        raise UsageError(f"--auto-resume: {folder} holds another run ({difference}): train "
                         f"into another folder (-c), or continue that run with --resume "
                         f"{folder}")
    if checkpoint.epoch >= asked.epochs and not checkpoint.position:
        raise RunFinished(f"{folder}: the run is finished ({checkpoint.epoch} of {asked.epochs} "
                          f"epochs); nothing to do")
    _say(f"==> --auto-resume: continuing the run in {folder}")
    return AutoResumed(parsed.resuming(path), checkpoint)


def _say(line: str) -> None:
    """A line from the first process only (torchrun and srun start several)."""
    if launched_as_main():
        print(line)
