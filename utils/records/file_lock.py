"""An exclusive lock on an open file that the operating system drops when its process dies,
however it dies: ``flock`` where fcntl exists (Linux, macOS), ``msvcrt.locking`` of the file's
first byte on Windows. The standard library's own calls, so no dependency: both are what the
well-kept lock libraries (filelock, portalocker) wrap. A probe of who holds the lock is a
non-blocking attempt that is released at once."""
import os

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None

__all__ = ["FOLDER_LOCKS", "NO_FOLLOW", "NO_BLOCK", "PROBE_MODE", "try_lock", "is_locked",
           "unlock"]

# flock locks a folder's own descriptor (so a lock outlives any file in it); msvcrt cannot.
FOLDER_LOCKS = fcntl is not None
# Opening a lock file never follows a link or blocks on a FIFO, where the platform can say so.
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
NO_BLOCK = getattr(os, "O_NONBLOCK", 0)
# How to open the file a probe locks: msvcrt.locking wants a handle that may write.
PROBE_MODE = os.O_RDONLY if fcntl is not None else os.O_RDWR


def try_lock(fd: int) -> bool:
    """Take the exclusive lock of the open file ``fd`` without waiting: whether it was free."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def unlock(fd: int) -> None:
    """Let go of the lock ``try_lock`` took on ``fd``."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    os.lseek(fd, 0, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def is_locked(fd: int) -> bool:
    """Whether another process holds the lock of the open file ``fd`` (opened PROBE_MODE)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    if not try_lock(fd):
        return True
    unlock(fd)
    return False
