"""A script's ``main`` run as a command: one clear line on stderr and an exit code for every
expected failure (a flag, a folder, the data, a checkpoint, a diverged loss, a signal)."""
import errno
import os
import sys
from typing import Callable, Optional

from . import distributed
from .data.errors import DataError, out_of_shared_memory, worker_error
from .records.logger import LogError
from .records.run_folder import FolderError
from .session.auto_resume import RunFinished
from .settings.flag import UsageError
from .settings.resume import MalformedRecord
from .slurm import SlurmError, adopt_slurm_environment
from .stop_signals import SIGNAL_EXIT_CODES
from .train.checkpoint import CheckpointError
from .train.engine import NonFiniteLoss
from .train.stopping import (ImmediateStop, StoppedOutsideTraining, TrainingInterrupted,
                             stop_outside_training)

__all__ = ["EXIT_CODES", "run_main"]

EXIT_CODES = {UsageError: 2, FolderError: 2, DataError: 1, CheckpointError: 1,
              MalformedRecord: 1, NonFiniteLoss: 1, LogError: 1, SlurmError: 2}
# A write that found no room: the disk full, the quota spent, a file-size limit reached.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _say(line: str) -> None:
    """One line on stderr, from one process: under torchrun every process meets the same
    expected failure, and rank 0 speaks for them."""
    if distributed.is_main():
        try:
            print(line, file=sys.stderr)
        except OSError:  # the terminal is gone (SIGHUP): nobody is there to read it
            pass


def run_main(main: Callable, argv: Optional[list] = None, joins_group: bool = False) -> object:
    """Run ``main(argv)``; expected failures print one line to stderr and exit non-zero. A
    script that forms a process group (``joins_group``: the training scripts) first takes its
    ranks from SLURM's variables where srun started it without torchrun (utils.slurm)."""
    finished, result = False, None
    try:
        if joins_group:
            adopt_slurm_environment()
        with stop_outside_training():
            result = main(argv)
        finished = True
    except (TrainingInterrupted, ImmediateStop, StoppedOutsideTraining) as e:
        _say(f"\n=> {e}")
        sys.exit(SIGNAL_EXIT_CODES[e.signame])
    except RunFinished as e:  # --auto-resume of a finished run: nothing to do, no error
        if distributed.is_main():
            print(f"==> {e}")
    except KeyboardInterrupt:  # a Ctrl-C outside training (while the data loads, say)
        _say("\n=> interrupted")
        sys.exit(130)
    except tuple(EXIT_CODES) as e:
        _say(f"error: {e}")
        sys.exit(EXIT_CODES.get(type(e), 1))
    except RuntimeError as e:
        reported = worker_error(e)  # a loader worker killed (torch raises it anywhere)
        if reported is e:
            raise
        _say(f"error: {reported}")
        sys.exit(1)
    except OSError as e:
        if e.errno not in NO_ROOM:
            raise
        if str(e.filename or "").startswith("/dev/shm"):  # the loader's shared batches
            _say(f"error: {out_of_shared_memory()}")
            sys.exit(1)
        # Every file is written whole or not at all (utils.atomic): what was there is intact.
        _say(f"error: cannot write {e.filename or 'a file'}: {e.strerror}; the files written "
             f"before are intact: free some space, then run again (a training run goes on from "
             f"its last checkpoint with --resume)")
        sys.exit(1)
    finally:
        left_group = distributed.cleanup(synchronize=finished)
    if left_group:
        # Everything is written; skip interpreter finalization, where torch's C++ threads of a
        # torchrun process can still abort ("terminate called without an active exception")
        # after a run that succeeded, and torchrun would report the run as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result
