"""A run stopped mid-epoch and resumed is the run that never stopped, bit for bit: weights, EMA,
optimizer, schedule, RNG states, log and checkpoint. Stopped by a signal (after the step in
flight, even when the signal lands between micro-batches of one step), or killed outright after
a timed recovery checkpoint; with the DeviceLoader and the StreamLoader; under torchrun."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import cifar
from builders import REPO, make_cifar_pickles
from utils.train.stopping import StopSignal, TrainingInterrupted

# Dropout (the global RNG), per-iteration cosine with warmup, cutout (per-batch draws), an EMA and
# gradient accumulation: every piece of state a resume must carry.
RECIPE = ["-a", "l_wrn", "--depth", "10", "--widen-factor", "1", "--drop", "0.3",
          "--gn-groups", "16", "--train-batch", "8", "--iter-size", "4", "--test-batch", "16",
          "--no-progress", "--manualSeed", "11", "--scheduler", "cosine", "--warmup-epochs",
          "0.5", "--cutout", "8", "--ema", "0.9"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 72 images: 9 micro-batches of 8 an epoch, steps of 4 + 4 + 1.
    return make_cifar_pickles(str(tmp_path_factory.mktemp("data")), n_train=72, n_test=16)


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_run(straight, resumed):
    a, b = (torch.load(os.path.join(r, "checkpoint.pth.tar"), weights_only=True)
            for r in (straight, resumed))
    assert a.keys() == b.keys()
    for key in a:
        if key != "run":  # the run record: the resumed run adds its session
            assert same(a[key], b[key]), key
    with open(os.path.join(straight, "log.txt")) as f1, open(os.path.join(resumed, "log.txt")) as f2:
        assert f1.read() == f2.read()


def stop_at_micro_batch(monkeypatch, k):
    """A SIGTERM that arrives during the k-th training micro-batch (1-based)."""
    signals, calls = [], []
    real_enter, real_forward = StopSignal.__enter__, torch.nn.CrossEntropyLoss.forward

    def enter(self):
        signals.append(self)
        return real_enter(self)

    def forward(self, output, target):
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == k:
                signals[-1].received = "SIGTERM"
        return real_forward(self, output, target)
    monkeypatch.setattr(StopSignal, "__enter__", enter)
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", forward)


@pytest.mark.parametrize("loader", [["--loader", "device"], ["--loader", "dataloader", "-j", "0"],
                                    ["--loader", "dataloader", "-j", "2"]],
                         ids=["DeviceLoader", "StreamLoader", "StreamLoader-2-workers"])
def test_a_signal_between_micro_batches_resumes_at_the_exact_step(data, tmp_path, monkeypatch,
                                                                  capsys, loader):
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    args = RECIPE + loader + ["--data", data, "--epochs", "2"]
    cifar.main(args + ["-c", straight])
    # Micro-batch 11 is the 2nd of epoch 2's first step: the step finishes (micro-batches 10-13),
    # then the run saves its place (epoch 2, next batch 5) and stops.
    with monkeypatch.context() as patch:
        stop_at_micro_batch(patch, 11)
        with pytest.raises(TrainingInterrupted, match="continues at epoch 2, batch 5"):
            cifar.main(args + ["-c", stopped])
    saved = torch.load(os.path.join(stopped, "checkpoint.pth.tar"), weights_only=True)
    assert saved["epoch"] == 1 and saved["position"]["batch"] == 4
    assert len(open(os.path.join(stopped, "log.txt")).read().splitlines()) == 2  # no partial row
    capsys.readouterr()
    cifar.main(["--resume", stopped, "--data", data] + loader)
    assert "resumed at batch 5" in capsys.readouterr().out
    assert_same_run(straight, stopped)


def test_a_signal_in_the_last_step_of_an_epoch_resumes_with_its_evaluation(data, tmp_path,
                                                                          monkeypatch, capsys):
    """The place saved after an epoch's last step is the epoch's end: a resume evaluates the
    epoch, logs and saves it, as the run that never stopped did."""
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    args = RECIPE + ["--data", data, "--epochs", "2"]
    cifar.main(args + ["-c", straight])
    with monkeypatch.context() as patch:
        stop_at_micro_batch(patch, 18)  # epoch 2's last micro-batch, in its last step
        with pytest.raises(TrainingInterrupted, match="continues with the evaluation of epoch 2"):
            cifar.main(args + ["-c", stopped])
    saved = torch.load(os.path.join(stopped, "checkpoint.pth.tar"), weights_only=True)
    assert saved["epoch"] == 1 and saved["position"]["batch"] == 9
    capsys.readouterr()
    cifar.main(["--resume", stopped, "--data", data])
    assert "resumed after its last batch" in capsys.readouterr().out
    assert_same_run(straight, stopped)


def test_sigkill_after_a_timed_recovery_checkpoint_loses_nothing_but_the_steps_since(data,
                                                                                    tmp_path):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    # The step schedule (warmup per iteration): its LR does not depend on --epochs, so a run
    # killed anywhere can be compared with a straight run of as many epochs as it got into.
    args = RECIPE + ["--data", data, "--scheduler", "step", "--schedule", "2"]
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "cifar.py")] + args +
                            ["-c", killed, "--save-every", "0.001", "--epochs", "1000"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path, deadline, saved = os.path.join(killed, "checkpoint.pth.tar"), time.time() + 180, {}
    try:
        while time.time() < deadline and not saved.get("position"):
            try:
                saved = torch.load(path, weights_only=True)
            except (FileNotFoundError, RuntimeError, EOFError):
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # right after a recovery checkpoint (every 60 ms)
    finally:
        proc.wait()
    assert saved.get("position"), "no recovery checkpoint inside an epoch was written"
    epochs = str(torch.load(path, weights_only=True)["epoch"] + 1)
    cifar.main(args + ["--epochs", epochs, "-c", straight])
    cifar.main(["--resume", killed, "--data", data, "--epochs", epochs])
    assert_same_run(straight, killed)


def torchrun(args, stdout=subprocess.DEVNULL):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(REPO, "cifar.py")] + args
    return subprocess.Popen(cmd, cwd=REPO, stdout=stdout, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def wait_for_progress(proc, done):
    """Read rank 0's plain progress lines until one shows ``done`` micro-batches of epoch 1."""
    for line in proc.stdout:
        if line.startswith("Training") and f"({done}/" in line:
            return
    raise AssertionError("the run ended before its progress showed")


def test_two_processes_stopped_mid_epoch_resume_exactly(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=800, n_test=16)
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    args = RECIPE + ["--data", data]
    proc = torchrun(args + ["--epochs", "2", "-c", straight])
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    # With progress lines (10 an epoch): signalled once 30 of its 100 micro-batches are done.
    shown = [a for a in args if a != "--no-progress"]
    proc = torchrun(shown + ["--epochs", "2", "-c", stopped], stdout=subprocess.PIPE)
    wait_for_progress(proc, 30)
    ranks = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "cifar.py"], capture_output=True,
                           text=True).stdout.split()
    os.kill(int(ranks[1]), signal.SIGTERM)  # one rank: both must stop after the same step
    _, err = proc.communicate(timeout=180)
    assert err.count("=> stopped by SIGTERM") == 1, err[-2000:]
    saved = torch.load(os.path.join(stopped, "checkpoint.pth.tar"), weights_only=True)
    assert saved.get("position") and len(saved["position"]["meters"]) == 2
    proc = torchrun(["--resume", stopped, "--data", data])
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    assert_same_run(straight, stopped)
