"""Specification of stopping on signals (utils/train/stopping.py): the first signal is recorded,
a second one stops at once, never inside a checkpoint write, however the two arrive."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from builders import REPO, make_cifar_pickles
from utils.records.run_folder import FolderUse, RunFolder, check_folder
from utils.train.stopping import (ImmediateStop, StopSignal, StoppedOutsideTraining,
                                  stop_outside_training)


def deliver(sig, times=1):
    for _ in range(times):
        os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs between bytecodes of the main thread


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_first_signal_is_recorded_and_the_second_stops_at_once(sig, monkeypatch):
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # SIGHUP leaves the terminal
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    with StopSignal() as stop:
        deliver(sig)
        assert stop.received == sig.name
        with pytest.raises(ImmediateStop, match=f"stopped at once by a second {sig.name}"):
            deliver(sig)
    assert signal.getsignal(sig) is not stop._handle  # the handlers are put back


def test_two_signals_that_reach_the_handler_as_one_call_count_as_two():
    """Deliveries during one long C call reach the Python handler as a single call; the
    interpreter writes a byte per delivery to the wakeup fd, which counts them."""
    with StopSignal() as stop:
        writer = stop._wakeup[1]
        writer.send(bytes([signal.SIGINT, signal.SIGCHLD, signal.SIGINT]))  # two of ours
        with pytest.raises(ImmediateStop, match="second SIGINT"):
            stop._handle(signal.SIGINT, None)
        assert stop.deliveries == 2


def test_a_second_signal_waits_for_the_end_of_a_checkpoint_write():
    written = []
    with StopSignal() as stop:
        with pytest.raises(ImmediateStop, match="second SIGTERM"):
            with stop.critical():
                deliver(signal.SIGTERM, times=2)
                written.append("whole")  # the write finishes
    assert written == ["whole"]


def long_step_run(tmp_path):
    """cifar.py at a step of a few seconds on 2 CPU cores (batch 512 of ResNet-20)."""
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=1024, n_test=8)
    run = str(tmp_path / "run")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "cifar.py"), "-a", "resnet", "--depth", "20",
         "--train-batch", "512", "--data", data, "--epochs", "5", "--schedule", "3",
         "--no-progress", "-c", run,
         "--manualSeed", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    for line in proc.stdout:  # the first epoch has started
        if line.startswith("Epoch: [1"):
            break
    time.sleep(0.5)
    return proc, run


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_in_one_long_step_stops_the_run_with_a_line(tmp_path, sig, code):
    proc, run = long_step_run(tmp_path)
    started = time.monotonic()
    os.killpg(proc.pid, sig)
    time.sleep(0.3)  # a person's second Ctrl-C (sent together, the kernel merges the two)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()
            and not line.startswith("warning: ")] == [
        f"=> stopped at once by a second {sig.name}, before the run's first checkpoint: there "
        f"is nothing to resume; the same command starts the run over"]
    assert time.monotonic() - started < 60
    leftovers = [n for n in os.listdir(run) if n.endswith(".tmp")] if os.path.isdir(run) else []
    assert leftovers == []
    # As the line says: a --resume finds nothing and says so, and the same command is let in.
    resumed = subprocess.run([sys.executable, os.path.join(REPO, "cifar.py"), "--resume", run],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 1 and resumed.stderr.strip().endswith(
        f"error: {run} holds a run stopped before its first checkpoint: there is nothing to "
        f"resume; run its command again without --resume to start it over"), resumed.stderr
    check_folder(run, fresh=True, replace=False)  # no "holds a run"
    with RunFolder(FolderUse(run), ["cifar.py"]):
        assert os.listdir(run) == [".lock"]  # its record and empty log are taken up


def test_a_second_signal_after_a_checkpoint_points_to_it(tmp_path):
    proc, run = long_step_run(tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)  # the first stops after the step, saving its place
    proc.communicate(timeout=120)
    resumed = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "cifar.py"), "--resume", run, "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    for line in resumed.stdout:
        if line.startswith("Epoch: [1"):
            break
    time.sleep(0.5)
    os.killpg(resumed.pid, signal.SIGTERM)
    time.sleep(0.3)
    os.killpg(resumed.pid, signal.SIGTERM)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 143 and ("--resume continues from that checkpoint" in err
                                          or "its place in the epoch was saved" in err), err


def test_a_stop_signal_outside_the_training_loop_ends_the_run_with_a_line():
    with pytest.raises(StoppedOutsideTraining, match="stopped by SIGTERM outside the training "
                                                     "loop .while the data loads, say.: no "
                                                     "training step was lost"):
        with stop_outside_training():
            deliver(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_sigterm_while_the_data_loads_is_one_line(tmp_path):
    from builders import make_image_folder
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 1500), ("test", 10)))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "cifar.py"), "-a", "resnet", "--depth", "8",
         "--data", root, "--no-progress", "-c", str(tmp_path / "run"), "-j", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    for line in proc.stdout:
        if line.startswith("==> Preparing dataset"):
            break
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert "Epoch: [1" not in out, "the data loaded before the signal came: use more images"
    assert proc.returncode == 143, err
    assert [line for line in err.splitlines() if line.strip()
            and not line.startswith("warning: ")] == [
        "=> stopped by SIGTERM outside the training loop (while the data loads, say): no "
        "training step was lost"]


def test_sighup_saves_the_place_and_exits_129(tmp_path):
    proc, run = long_step_run(tmp_path)
    os.killpg(proc.pid, signal.SIGHUP)
    proc.communicate(timeout=120)
    assert proc.returncode == 129
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert saved["epoch"] == 0 and saved["position"]["batch"] == 1  # after the step in flight


def test_a_loader_worker_killed_ends_the_run_with_a_line(tmp_path):
    """torch reports a dead worker from its SIGCHLD handler, wherever the main process is (in a
    backward pass, say): run_main turns it into one line."""
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=4096, n_test=8)  # a long epoch 1
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "cifar.py"), "-a", "resnet", "--depth", "20",
         "--loader", "dataloader", "-j", "2", "--train-batch", "16", "--data", data,
         "--epochs", "50", "--no-progress", "-c", str(tmp_path / "run")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("Epoch: [1"):
            break
    workers = []
    for _ in range(60):  # the workers start after the line: on a loaded machine, seconds after
        time.sleep(0.5)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                 text=True).stdout.split()
        if workers:
            break
    assert workers, "no loader workers found"
    time.sleep(0.5)  # torch registers its workers' pids once all have started: a worker killed
    # before that would not be reported
    os.kill(int(workers[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning")]
    assert proc.returncode == 1 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith(f"error: a data loader worker died (DataLoader worker (pid "
                               f"{workers[0]}) is killed by signal: Killed)")
