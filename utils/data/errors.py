"""The error of data that cannot be used: one line naming the place and what was expected; and
the one line for what a DataLoader's workers raise (worker_error)."""

__all__ = ["DataError", "out_of_shared_memory", "worker_error"]


class DataError(Exception):
    """Data that is missing or unreadable; the message names the place and what was expected."""


def out_of_shared_memory() -> DataError:
    """The line of a full /dev/shm, whichever part of the loading found it full."""
    return DataError("the data loader's workers ran out of shared memory (/dev/shm): lower -j "
                     "or the batch sizes, or give the machine (or container) more shared "
                     "memory (e.g. docker --shm-size)")


def worker_error(error: Exception) -> Exception:
    """The error to report for one raised while iterating a DataLoader: a worker's DataError
    (torch re-raises it with the worker's whole traceback as its message) as its own last line;
    workers out of shared memory, or a worker killed, as one line saying so; anything else
    unchanged."""
    text = str(error)
    if isinstance(error, DataError) and "Traceback" in text:
        last = text.strip().splitlines()[-1]
        return DataError(last.split(": ", 1)[1] if ": " in last else last)
    if isinstance(error, RuntimeError) and ("shared memory" in text or "Bus error" in text
                                            or "No space left on device" in text):
        return out_of_shared_memory()
    if isinstance(error, RuntimeError) and text.startswith("DataLoader worker (pid"):
        # torch raises this from its SIGCHLD handler, wherever the main process is then.
        return DataError(f"a data loader worker died ({text.strip().rstrip('.')}); the "
                         f"kernel's out-of-memory killer is the usual cause: lower -j or the "
                         f"batch sizes and run again (with --resume where the run has saved a "
                         f"checkpoint)")
    return error
