"""A run folder has one owner: the run that writes it holds a lock on it, and nothing in it is
replaced without a word.

- While a run trains, it holds an exclusive lock on ``RUN/.lock`` (utils.records.file_lock:
  flock, or msvcrt.locking on Windows; the file says who holds it, and goes when the run
  ends). A second run into the same folder is refused with one line naming the holder. The
  operating system drops the lock when its process dies, however it dies, so a killed run's
  lock file never blocks the next one (on a network file system, the lock is as good as its
  server's locking).
- A fresh run (no --resume) refuses a folder that already holds a run, unless --replace says to
  start it over (its run files are removed first, each named).
- What a save killed half-way leaves (``*.tmp`` beside a checkpoint, run.json or log.txt) is
  removed when the next run takes the folder, with a line.
"""
import dataclasses
import datetime
import glob
import json
import os
import socket
import stat
from typing import Optional, Sequence

from ..atomic import atomic_write
from .file_lock import FOLDER_LOCKS, NO_BLOCK, NO_FOLLOW, PROBE_MODE, is_locked, try_lock, unlock

__all__ = ["RUN_FILES", "holds_run", "lock_holder", "check_writable", "check_folder", "RunFolder",
           "FolderError"]

LOCK = ".lock"
# What a run writes into its folder (a fresh run over an old one replaces exactly these).
RUN_FILES = ("checkpoint.pth.tar", "model_best.pth.tar", "checkpoint_epoch_*.pth.tar", "log.txt",
             "log.eps", "log.png", "run.json", "per_class_accuracy.txt", "confusion_matrix.png")
UNFINISHED = ("*.pth.tar.*.tmp", "run.json.*.tmp", "log.txt.tmp", ".lock.*.tmp")


class FolderError(Exception):
    """A run folder this run may not write: the message says whose it is, or what it holds."""


def _matches(folder, patterns):
    return sorted({p for pattern in patterns for p in glob.glob(os.path.join(folder, pattern))})


def check_writable(folder: str, what: str = "the checkpoint folder") -> None:
    """Prove a file can be written in the run folder, before any long work, and leave nothing
    behind: a folder this check creates is removed again (the run makes it when it starts
    writing), so a run that fails before training leaves no empty folder. An empty name, a file
    or a dangling link is refused saying which."""
    if not folder.strip():
        raise FolderError("-c '': the run folder has no name; give a folder, or leave -c out "
                          "for checkpoints/SCRIPT-ARCH")
    if os.path.islink(folder) and not os.path.exists(folder):
        raise FolderError(f"-c {folder} is a link to {os.readlink(folder)}, which does not "
                          f"exist")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FolderError(f"-c {folder} is a file, not a folder: the run folder holds its "
                          f"checkpoints and log")
    created = []
    try:
        path = os.path.abspath(folder)
        while not os.path.exists(path):
            created.append(path)
            path = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise FolderError(f"cannot write to {what} {folder}: {e.strerror or e}") from e
    finally:
        for path in created:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                break


def holds_run(folder: str) -> list:
    """The run files ``folder`` holds (empty: no run there)."""
    return _matches(folder, RUN_FILES) if os.path.isdir(folder) else []


# What a run has written when it stops before its first checkpoint: its record and its log's
# header, nothing a --resume could continue.
BEFORE_FIRST_CHECKPOINT = ("run.json", "log.txt")


def stopped_before_first_checkpoint(folder: str, files: Sequence[str]) -> bool:
    """Whether ``files`` (holds_run's) are those of a run stopped before it saved anything to
    continue from: only run.json and a log.txt of no rows. A fresh run takes such a folder up
    (the same command again) without --replace."""
    names = {os.path.basename(path) for path in files}
    if not names or not names <= set(BEFORE_FIRST_CHECKPOINT):
        return False
    try:
        with open(os.path.join(folder, "log.txt"), "rb") as f:
            return len(f.read(1 << 16).splitlines()) <= 1  # a header at most
    except FileNotFoundError:
        return True
    except OSError:
        return False


def lock_holder(folder: str) -> Optional[str]:
    """Who holds ``folder``'s lock now ("pid N on HOST since T: COMMAND"), or None when nobody
    does (no lock file, or one left by a run that has ended)."""
    path = os.path.join(folder, LOCK)
    try:
        fd = _open_lock(folder) if FOLDER_LOCKS else os.open(path, PROBE_MODE | NO_BLOCK)
    except OSError:
        return None
    try:
        return _describe(path) if is_locked(fd) else None
    finally:
        os.close(fd)


def _open_lock(folder: str) -> int:
    """The descriptor the lock is taken on: the folder itself where flock can lock it (so the
    lock lives as long as the run, whatever becomes of RUN/.lock), else RUN/.lock (Windows)."""
    if FOLDER_LOCKS:
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    path = os.path.join(folder, LOCK)
    _check_lock_file(path)
    return os.open(path, os.O_RDWR | os.O_CREAT | NO_FOLLOW | NO_BLOCK, 0o666)


def _check_lock_file(path: str) -> None:
    """RUN/.lock is a plain file this project writes, or absent: a symbolic link, a hard link
    to another name, a FIFO, a device or a directory there is refused, never written through
    (it could point at another user's file, or block for ever)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        what = "a symbolic link"
    elif not stat.S_ISREG(info.st_mode):
        what = "not a regular file (a FIFO, device, socket or directory)"
    elif info.st_nlink > 1:
        what = f"a file with {info.st_nlink} hard links (another name shares it)"
    else:
        return
    raise FolderError(f"{path} is {what}: a run's lock file is a plain file it writes itself; "
                      f"remove it (rm {path}) and run again")


def _remove_stale_lock(path: str) -> None:
    """Remove the .lock an ended run left; one that cannot be (an immutable file, another
    user's in a sticky folder) is refused in one line before any data is read, rather than
    failing when the run claims the folder."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _unreplaceable(path, e) from e


def _unreplaceable(path: str, error: OSError) -> FolderError:
    return FolderError(f"{path} was left by a run that has ended and cannot be replaced "
                       f"({error.strerror}): remove it (rm {path}; its owner or root can) and run "
                       f"again, or train into another folder (-c)")


def _describe(path):
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise ValueError("not a plain file")
        with open(path) as f:
            holder = json.load(f)
        return (f"pid {holder['pid']} on {holder['host']} since {holder['since']}: "
                f"{' '.join(holder['command'])}")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its lock file says no more)"


def _in_use(folder, holder):
    return FolderError(f"{folder} is in use by another run ({holder}); wait for it to end, or "
                       f"train into another folder (-c)")


def _holds_a_run(folder, files):
    names = ", ".join(os.path.basename(f) for f in files[:4]) + (", ..." if len(files) > 4 else "")
    return FolderError(f"{folder} holds a run ({names}): continue it with --resume {folder}, "
                       f"train into another folder (-c), or add --replace to start it over")


def check_folder(folder: str, fresh: bool, replace: bool) -> None:
    """Before any long work: refuse a folder another run holds, and a fresh run into a folder
    that holds a run, unless ``replace`` (RunFolder.claim checks again, holding the lock)."""
    _check_lock_file(os.path.join(folder, LOCK))
    holder = lock_holder(folder)
    if holder is not None:
        raise _in_use(folder, holder)
    if FOLDER_LOCKS:  # nobody holds the folder: a .lock there is an ended run's description
        _remove_stale_lock(os.path.join(folder, LOCK))
    if fresh and not replace:
        files = holds_run(folder)
        if files and not stopped_before_first_checkpoint(folder, files):
            raise _holds_a_run(folder, files)


@dataclasses.dataclass(frozen=True)
class FolderUse:
    """A run's folder and how the run may take it: ``fresh`` when the run starts the folder
    (not a --resume into it), and ``replace`` to remove a run found there (--replace)."""
    path: str
    fresh: bool = True
    replace: bool = False


class RunFolder:
    """The claim of one run on its folder: ``claim()`` takes the lock (or refuses), clears what
    a killed save left and, for a fresh run with ``replace``, the previous run's files;
    ``release()`` lets go. A context manager of the two. ``command`` (the run's command line)
    goes into the lock file, to say who holds the folder."""

    def __init__(self, use: FolderUse, command: Sequence[str] = ()):
        self.folder, self.fresh, self.replace = use.path, use.fresh, use.replace
        self.command = list(command)
        self.fd = None

    def claim(self) -> "RunFolder":
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, LOCK)
        _check_lock_file(path)
        while True:
            fd = _open_lock(self.folder)
            if not try_lock(fd):
                os.close(fd)
                raise _in_use(self.folder, _describe(path))
            if FOLDER_LOCKS:
                break
            try:  # the file locked must still be the folder's: a releasing run removes it
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self.fd = fd
        _check_lock_file(path)
        holder = json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")})
        if FOLDER_LOCKS:  # a new file renamed into place: nothing is written through a name
            try:
                atomic_write(path, lambda f: f.write(holder.encode()))
            except PermissionError as e:
                self.release()
                raise _unreplaceable(path, e) from e
        else:
            os.ftruncate(self.fd, 0)
            os.write(self.fd, holder.encode())
        try:
            self._tidy()
        except BaseException:
            self.release()
            raise
        return self

    def _tidy(self):
        leftovers = _matches(self.folder, UNFINISHED)
        for path in leftovers:
            os.remove(path)
        if leftovers:
            print(f"==> removed what a killed save left in {self.folder}: "
                  f"{', '.join(os.path.basename(p) for p in leftovers)}")
        files = holds_run(self.folder) if self.fresh else []
        never_saved = stopped_before_first_checkpoint(self.folder, files)
        if files and not self.replace and not never_saved:
            raise _holds_a_run(self.folder, files)
        for path in files:
            os.remove(path)
        if files:
            names = ', '.join(os.path.basename(p) for p in files)
            print(f"==> {self.folder} held a run stopped before its first checkpoint ({names}): "
                  f"starting it over" if never_saved and not self.replace else
                  f"==> --replace: removed the previous run's {names} from {self.folder}")

    def release(self) -> None:
        """Let the folder go: the lock file is removed (while still held, so no other run can
        have locked it) and the lock dropped; the folder holds only the run's files again."""
        if self.fd is not None:
            try:
                os.remove(os.path.join(self.folder, LOCK))
            except OSError:
                pass
            unlock(self.fd)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunFolder":
        return self.claim()

    def __exit__(self, *exc: object) -> bool:
        self.release()
        return False
