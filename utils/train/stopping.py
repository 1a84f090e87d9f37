"""Stopping a run on a signal without losing it: SIGTERM (a scheduler's warning), SIGINT (Ctrl-C),
SIGHUP (a closed terminal or ssh session) and SIGUSR1 (SLURM's warning before a time limit,
``sbatch --signal=B:USR1@SECONDS``). Where a signal does not exist (SIGHUP and SIGUSR1 on
Windows) it is simply not handled.

The first signal is recorded, the step in flight finishes, a recovery checkpoint records the place
in the epoch, and the run ends (``TrainingInterrupted``). A second signal ends it at once
(``ImmediateStop``): as soon as Python runs again, which is after the operation in flight (a long
conv cannot be cut short). Never inside a checkpoint write: a second signal during one takes
effect when the write has finished, so no file is left half-written.

Python calls a signal's handler once for any number of deliveries that arrive while C code runs
(two Ctrl-C during one long step would look like one); the wakeup fd (signal.set_wakeup_fd), to
which the interpreter writes a byte per delivery, is what counts them.
"""
import contextlib
import os
import signal
import socket
import sys
import time
from typing import Callable, Iterator, Optional

from .. import distributed
from ..stop_signals import STOP_SIGNAL_NAMES, STOP_SIGNALS
from .meters import Meters

__all__ = ["TrainingInterrupted", "ImmediateStop", "StoppedOutsideTraining",
           "stop_outside_training", "StopSignal", "StepControl"]


class TrainingInterrupted(Exception):
    def __init__(self, signame: str, resume_epoch: int, batch: int = 0,
                 epoch_batches: Optional[int] = None):
        """``resume_epoch``, ``batch``: the 0-based epoch and micro-batch where a --resume of the
        checkpoint just written continues; ``epoch_batches``: the epoch's micro-batches (a
        ``batch`` past its last one: the epoch's training is done, its evaluation is not)."""
        if not batch:
            where = f"with epoch {resume_epoch + 1}"
        elif epoch_batches is not None and batch >= epoch_batches:
            where = (f"with the evaluation of epoch {resume_epoch + 1} (its training was "
                     f"saved)")
        else:
            where = (f"at epoch {resume_epoch + 1}, batch {batch + 1} (its place in the epoch "
                     f"was saved)")
        super().__init__(f"stopped by {signame} after the step in flight; --resume continues "
                         f"{where}")
        self.signame = signame


class ImmediateStop(BaseException):
    """A second signal: the run ends now, without a checkpoint of the steps since the last
    one. A BaseException, as KeyboardInterrupt, so no ``except Exception`` swallows it."""

    def __init__(self, signame: str, checkpointed: bool = True):
        """``checkpointed``: whether the run's folder holds a checkpoint to continue from."""
        super().__init__(
            f"stopped at once by a second {signame}: the steps since the last checkpoint are "
            f"not saved; --resume continues from that checkpoint" if checkpointed else
            f"stopped at once by a second {signame}, before the run's first checkpoint: there "
            f"is nothing to resume; the same command starts the run over")
        self.signame = signame


class StoppedOutsideTraining(BaseException):
    """A stop signal before the training loop began (while the data loads, say) or after it
    ended: no step is lost, and the run ends with a line instead of dying silently."""

    def __init__(self, signame: str):
        super().__init__(f"stopped by {signame} outside the training loop (while the data "
                         f"loads, say): no training step was lost")
        self.signame = signame


@contextlib.contextmanager
def stop_outside_training() -> Iterator[None]:
    """SIGTERM, SIGHUP and SIGUSR1 raise StoppedOutsideTraining in this process while the
    block runs and the training loop's own StopSignal does not hold them (SIGINT already raises
    KeyboardInterrupt). A process forked from this one (a loader worker before it sets its
    own handlers) still dies of the signal, as it would have."""
    owner = os.getpid()

    def handle(signum, frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise StoppedOutsideTraining(signal.Signals(signum).name)

    previous = {}
    try:
        for sig in STOP_SIGNALS:
            if sig != signal.SIGINT:
                previous[sig] = signal.signal(sig, handle)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StopSignal:
    """Records SIGTERM, SIGINT, SIGHUP and SIGUSR1 instead of dying mid-step, so the engine can stop
    between steps; a second delivery raises ImmediateStop (deferred to the end of a
    ``critical()`` section). Under torchrun a signal reaches processes at different steps (or
    only one of them): ``agreed()`` is the signal any process got, the same on all, so they
    stop after the same step instead of one waiting forever in the next step's all-reduce."""
    NAMES = (None,) + STOP_SIGNAL_NAMES

    def __init__(self):
        self.received: Optional[str] = None
        self.deliveries = 0
        self.previous = {}
        self._critical = 0
        self._deferred: Optional[str] = None
        self._wakeup = None
        self._previous_wakeup = -1

    def __enter__(self) -> "StopSignal":
        try:
            for sig in STOP_SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            return self
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup = (reader, writer)
        self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        return self

    def _count_deliveries(self) -> int:
        """Deliveries of our signals since the last call (at least the one being handled)."""
        count = 0
        if self._wakeup is not None:
            try:
                while True:
                    data = self._wakeup[0].recv(512)
                    if not data:
                        break
                    count += sum(1 for b in data if b in {int(s) for s in STOP_SIGNALS})
            except (BlockingIOError, InterruptedError):
                pass
        return max(1, count)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if name == "SIGHUP":
            _leave_the_terminal()
        self.deliveries += self._count_deliveries()
        if self.received is None:
            self.received = name
        if self.deliveries >= 2:
            if self._critical:
                self._deferred = name
            else:
                raise ImmediateStop(name)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section no second signal interrupts (a checkpoint write): it acts after it."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._deferred:
            raise ImmediateStop(self._deferred)

    def agreed(self) -> Optional[str]:
        return self.NAMES[distributed.max_over_processes(self.NAMES.index(self.received))]

    def __exit__(self, *exc: object) -> bool:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            for end in self._wakeup:
                end.close()
            self._wakeup = None
        return False


def _leave_the_terminal():
    """After SIGHUP the terminal is gone and writing to it fails (EIO): this process's output
    goes nowhere from now on, so the run can still finish its step and save."""
    devnull = open(os.devnull, "w")
    sys.stdout = sys.stderr = devnull


class StepControl:
    """What happens between two optimizer steps: when a signal has come (to any process) or the
    --save-every timer is due, a recovery checkpoint of the position in the epoch is written by
    ``save(epoch, next_batch, meters)``; after a signal the run then stops. Processes agree on
    both with one CPU all-reduce per step (none without torchrun)."""

    def __init__(self, stop: StopSignal, save_every_minutes: float, save: Callable,
                 on_step: Optional[Callable] = None):
        self.stop, self.save, self.on_step = stop, save, on_step
        self.interval = save_every_minutes * 60.0
        self.last_save = time.monotonic()

    def after_step(self, epoch: int, next_batch: int, meters: Meters, check: Callable,
                   epoch_batches: Optional[int] = None, loss: Optional[object] = None) -> None:
        """``meters``: this process's Meters of the epoch so far; ``check()`` raises for a
        non-finite epoch. Reading either syncs the host, so they are read only when a
        checkpoint is written. ``epoch_batches``: the epoch's micro-batches (``next_batch``
        equals it after the epoch's last step); ``loss``: the step's last micro-batch's, for
        ``on_step(epoch, next_batch, loss)`` (TensorBoard's per-step loss)."""
        if self.on_step is not None and loss is not None:
            self.on_step(epoch, next_batch, loss)
        due = bool(self.interval) and time.monotonic() - self.last_save >= self.interval
        code = distributed.max_over_processes(
            2 * StopSignal.NAMES.index(self.stop.received) + int(due))
        if not code:
            return
        check()  # a non-finite epoch is never saved
        with self.stop.critical():
            self.save(epoch, next_batch, meters)
        self.last_save = time.monotonic()
        signame = StopSignal.NAMES[code // 2]
        if signame:
            raise TrainingInterrupted(signame, epoch, next_batch, epoch_batches)
