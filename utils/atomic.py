"""Files written whole or not at all: to a temporary file beside the target, flushed to disk and
renamed into place, so a kill or a full disk at any moment leaves the previous file intact."""
import io
import os
import shutil
import tempfile
from typing import Callable

import torch

from .files import NotRegularFile, not_writable_as_file

__all__ = ["atomic_write", "atomic_serialize", "atomic_save", "atomic_copy"]


def atomic_write(path: str, write: Callable) -> None:
    """Call ``write(f)`` on a temporary file beside ``path`` (``name.XXXX.tmp``), flush it to disk
    and rename it into place."""
    problem = not_writable_as_file(path)
    if problem:
        raise NotRegularFile(problem)
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
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):
            e.filename = path  # the user's name for what could not be written
        raise
    _fsync_dir(folder)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_serialize(path: str, write: Callable) -> None:
    """``write(f)`` into memory, then its bytes to ``path`` atomically. For torch's zip writer
    (torch.save, torch.export.save): it reports a failed write (a full disk) as a RuntimeError
    without an errno, or aborts the process from a destructor; from memory, the disk is written
    by Python, whose OSError says what happened. Costs one copy of the file in memory."""
    buffer = io.BytesIO()
    write(buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def atomic_save(obj: object, path: str) -> None:
    """torch.save ``obj`` to ``path`` atomically."""
    atomic_serialize(path, lambda f: torch.save(obj, f))


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
