"""Where fcntl and SIGHUP do not exist (Windows): the scripts import and train, SIGHUP is not
handled, and the run folder's lock (msvcrt.locking there, utils/records/file_lock.py) still
refuses a second run. Simulated on this machine: each process below starts with fcntl and
signal.SIGHUP removed, and the lock module given a stand-in msvcrt of Windows' byte-range
semantics (POSIX lockf underneath, so its locks also go with their process)."""
import os
import subprocess
import sys
import time

from builders import REPO, TINY_MODEL, make_cifar_pickles, read_log_rows, tiny_run

WINDOWS_LIKE = """
import fcntl as _posix, runpy, signal, sys, types
msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_UNLCK, msvcrt.LK_NBLCK = 0, 2
def locking(fd, mode, nbytes):
    _posix.lockf(fd, _posix.LOCK_UN if mode == msvcrt.LK_UNLCK else
                 _posix.LOCK_EX | _posix.LOCK_NB, nbytes)
msvcrt.locking = locking
sys.modules["msvcrt"], sys.modules["fcntl"] = msvcrt, None
sys.path.insert(0, __import__("os").path.dirname(sys.argv[1]))
import utils.records.file_lock  # takes the stand-in msvcrt, as it takes Windows' own
del sys.modules["msvcrt"]  # the standard library must not believe it runs on Windows
del signal.SIGHUP
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def windows_like(args, **kwargs):
    return [sys.executable, "-c", WINDOWS_LIKE, os.path.join(REPO, "cifar.py")] + args


def test_a_run_trains_and_its_lock_refuses_a_second_without_fcntl_and_sighup(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=64, n_test=8)
    run = str(tmp_path / "run")
    args = TINY_MODEL + tiny_run(seed=3, train_batch=4) + ["--data", data, "-c", run]
    first = subprocess.Popen(windows_like(args + ["--epochs", "1000"]), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = os.path.join(run, "log.txt")
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None and not (
                os.path.exists(log) and read_log_rows(log)[1]):
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1][-2000:]
        second = subprocess.run(windows_like(args + ["--epochs", "1000", "--resume", run]),
                                cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is in use by another run" in second.stderr, \
            second.stderr[-2000:]
        first.terminate()  # SIGTERM: still handled, the place saved
        _, err = first.communicate(timeout=120)
        assert first.returncode == 143 and "stopped by SIGTERM" in err, err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    done = len(read_log_rows(log)[1])
    after = subprocess.run(windows_like(args + ["--epochs", str(done + 1), "--resume", run]),
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert after.returncode == 0, after.stderr[-2000:]
    assert len(read_log_rows(log)[1]) == done + 1
