"""A run folder's lock (utils/records/run_folder.py) that no planted file turns against its
user: RUN/.lock as a symbolic link, a hard link, a FIFO or a directory is refused in one line
and never written through; the lock lives on the folder itself, so deleting RUN/.lock under a
live run lets no second run in."""
import os
import signal
import subprocess
import sys
import time

import pytest

import cifar
from builders import REPO, TINY_MODEL, make_cifar_pickles, one_line_failure, read_log_rows, \
    tiny_run
from utils.records.run_folder import FolderError, FolderUse, RunFolder, lock_holder

ARGS = TINY_MODEL + tiny_run(seed=2, train_batch=8)


def planted(tmp_path, kind):
    """A run folder whose .lock is a planted ``kind``; returns (folder, the victim file)."""
    run, victim = tmp_path / "run", tmp_path / "victim.txt"
    run.mkdir()
    victim.write_text("the user's own file")
    lock = run / ".lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling":
        lock.symlink_to(tmp_path / "outside.txt")
    elif kind == "hardlink":
        os.link(victim, lock)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    return str(run), victim


@pytest.mark.parametrize("kind, words", [
    ("symlink", "is a symbolic link"), ("dangling", "is a symbolic link"),
    ("hardlink", "hard links"), ("fifo", "not a regular file"), ("directory", "not a regular")])
def test_a_planted_lock_file_is_refused_and_never_written_through(tmp_path, kind, words):
    run, victim = planted(tmp_path, kind)
    started = time.monotonic()
    with pytest.raises(FolderError, match=words):
        RunFolder(FolderUse(run, fresh=False)).claim()
    assert time.monotonic() - started < 10  # a FIFO never blocks the open
    assert victim.read_text() == "the user's own file"
    assert not (tmp_path / "outside.txt").exists()
    assert os.path.lexists(os.path.join(run, ".lock"))  # left for its owner to look at


def test_a_run_into_a_planted_lock_is_one_line_before_the_data(tmp_path, capsys):
    run, victim = planted(tmp_path, "symlink")
    code, line = one_line_failure(cifar.main, ARGS + ["--data", str(tmp_path / "none"), "-c",
                                                      run, "--no-download"], capsys)
    assert code == 2 and f"{run}/.lock is a symbolic link" in line and "rm " in line
    assert victim.read_text() == "the user's own file"


def test_a_stale_lock_that_cannot_be_replaced_is_one_line_before_the_data(tmp_path, capsys):
    """An immutable .lock (chattr +i; as another user's stale lock in a sticky folder would
    be): refused before the data is read, not a traceback when the run claims the folder."""
    run = tmp_path / "run"
    run.mkdir()
    lock = run / ".lock"
    lock.write_text('{"pid": 1}')
    made = subprocess.run(["chattr", "+i", str(lock)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {made.stderr.decode().strip()}")
    try:
        code, line = one_line_failure(cifar.main, ARGS + ["--data", str(tmp_path / "none"), "-c",
                                                          str(run), "--no-download"], capsys)
    finally:
        subprocess.run(["chattr", "-i", str(lock)])
    assert code == 2 and line.endswith(
        f"{lock} was left by a run that has ended and cannot be replaced (Operation not "
        f"permitted): remove it (rm {lock}; its owner or root can) and run again, or train into "
        f"another folder (-c)"), line


def test_deleting_a_live_runs_lock_file_lets_no_second_run_in(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=32, n_test=8)
    run = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(REPO, "cifar.py")] + ARGS + ["--data", data, "-c", run]
    first = subprocess.Popen(cmd + ["--epochs", "1000"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        log = os.path.join(run, "log.txt")
        deadline = time.time() + 120
        checkpoint = os.path.join(run, "checkpoint.pth.tar")  # saved just after the log's row
        while time.time() < deadline and not (os.path.exists(log) and read_log_rows(log)[1]
                                              and os.path.exists(checkpoint)):
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        os.remove(os.path.join(run, ".lock"))  # as people delete "stale" locks
        assert lock_holder(run) is not None
        second = subprocess.run(cmd + ["--epochs", "1000", "--resume", run], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is in use by another run" in second.stderr
    finally:
        first.kill()
        first.wait()
    assert lock_holder(run) is None  # the kernel dropped the dead run's lock
