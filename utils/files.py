"""Opening a user's data file for reading: regular files only, refused before a byte is read;
and the same rule for an output path (``not_writable_as_file``).

A FIFO among the data would block its reader for ever, and a link to a device such as
/dev/zero would never end; neither is data. The open itself is non-blocking, since opening a
FIFO for reading waits for a writer."""
import os
import stat
import zipfile
from typing import BinaryIO, Optional

__all__ = ["NotRegularFile", "TooLarge", "open_regular", "read_regular", "not_writable_as_file",
           "is_export_archive"]


class NotRegularFile(OSError):
    """A path that is a FIFO, a device, a socket or a folder rather than a file of data."""


class TooLarge(OSError):
    """A file larger than what its format can reasonably hold: its ``size`` and the ``limit``
    in bytes."""

    def __init__(self, path: str, size: int, limit: int):
        super().__init__(f"{path} holds {size:,} bytes, more than the {limit:,} its format ever "
                         f"needs")
        self.path, self.size, self.limit = path, size, limit


def open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file (after links); else
    NotRegularFile, whose message says so. Other failures are open()'s OSError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise NotRegularFile(f"{path} is not a regular file (a FIFO, device or socket)")
    return f


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of regular file ``path``, refused (TooLarge) past ``limit`` bytes before any
    is read; NotRegularFile or open()'s OSError otherwise."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise TooLarge(path, size, limit)
        return f.read(limit + 1)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def not_writable_as_file(path: str) -> Optional[str]:
    """Why an output file cannot be written at ``path``, or None: it exists (after links) and
    is a folder, a device, a FIFO or a socket. An output is renamed into place, which would
    replace a device node with a regular file (as root, /dev/null the machine's), or it would
    block on a FIFO."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # nothing there yet (or a dangling link): a new file
        return None
    if stat.S_ISREG(mode):
        return None
    return f"{path} is a {_kind(mode)}, not a file; outputs are written as regular files only"


def is_export_archive(path: str) -> bool:
    """Whether ``path`` is a torch.export archive (a zip whose archive_format member says pt2:
    export.py's .pt2), which torch.load would call corrupt."""
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as archive:
            return any(name.endswith("/archive_format") and archive.read(name).strip() == b"pt2"
                       for name in archive.namelist()[:64])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return False
