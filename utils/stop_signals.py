"""The signals that stop a run after the step in flight (utils.train.stopping), and that a
DataLoader worker leaves to the main process (utils.data.workers): SIGINT (Ctrl-C), SIGTERM (a
scheduler's kill), SIGHUP (a closed terminal), SIGUSR1 (SLURM's warning before a time limit,
``sbatch --signal=B:USR1@SECONDS``). Those this platform has: Windows has no SIGHUP or
SIGUSR1."""
import signal

__all__ = ["STOP_SIGNAL_NAMES", "STOP_SIGNALS", "SIGNAL_EXIT_CODES"]

STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1")
STOP_SIGNALS = tuple(getattr(signal, name) for name in STOP_SIGNAL_NAMES
                     if hasattr(signal, name))
# Exit codes as a shell reports a process killed by the signal: 128 + its number (Linux's).
SIGNAL_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129, "SIGUSR1": 138}
