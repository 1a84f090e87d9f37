"""Files written whole or not at all: to a temporary file beside the target, flushed to disk and
renamed into place, so a kill or a full disk at any moment leaves the previous file intact."""
import os
import shutil
import tempfile
from typing import Callable

import torch

__all__ = ["atomic_write", "atomic_save", "atomic_copy"]


def atomic_write(path: str, write: Callable) -> None:
    """Call ``write(f)`` on a temporary file beside ``path`` (``name.XXXX.tmp``), flush it to disk
    and rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file 0600; the renamed file gets what open() would have given it
        # (0666 less the umask), so teammates read checkpoints as they read the logs.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_save(obj: object, path: str) -> None:
    """torch.save ``obj`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_copy(src: str, dst: str) -> None:
    """``src``'s bytes as ``dst``, atomically."""
    def copy(out):
        with open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
    atomic_write(dst, copy)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
