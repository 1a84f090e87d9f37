"""A run survives what kills runs: a SIGKILL during a save, SIGTERM, a NaN loss, a full disk; a
resumed run equals an uninterrupted one; a bad input costs one line, not a traceback."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import cifar
import imagenet
from builders import (REPO, TINY_MODEL, make_cifar_pickles, make_image_folder, one_line_failure,
                      read_log_rows, tiny_run)
from utils.cli import run_main
from utils.atomic import atomic_save
from utils.train.checkpoint import Checkpoint, save_checkpoint

TINY = TINY_MODEL + tiny_run(seed=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cifar_pickles(str(tmp_path_factory.mktemp("cifar")), n_train=48, n_test=16)


def weights(run):
    return torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["state_dict"]


def test_resume_is_exact(data, tmp_path):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    # --drop is unused by l_resnet, so use l_wrn: its dropout draws from the torch RNG, which
    # the checkpoint must carry across the stop.
    args = ["-a", "l_wrn", "--depth", "10", "--widen-factor", "1", "--drop", "0.3",
            "--gn-groups", "16", "--train-batch", "16", "--iter-size", "2", "--test-batch", "16",
            "--no-progress", "--manualSeed", "4", "--data", data, "--schedule", "1", "3"]
    cifar.main(args + ["--epochs", "3", "-c", straight])
    cifar.main(args + ["--epochs", "1", "-c", split])
    cifar.main(args + ["--epochs", "3", "--resume", split])
    a, b = weights(straight), weights(split)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(straight, "log.txt")) as f1, open(os.path.join(split, "log.txt")) as f2:
        assert f1.read() == f2.read()
    _, rows = read_log_rows(os.path.join(straight, "log.txt"))
    assert [r[0] for r in rows] == pytest.approx([0.1, 0.01, 0.01])  # the schedule resumed too


SLOW_SAVE = textwrap.dedent("""
    import os, sys, time, torch
    real_save, calls = torch.save, []
    def slow_save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint after epoch 2: half written, then stuck
            f.write(b"partial")
            f.flush()
            open(os.environ["MARKER"], "w").close()
            time.sleep(120)
        return real_save(obj, f, *a, **k)
    torch.save = slow_save
    sys.path.insert(0, os.environ["REPO"])
    import cifar
    from utils.cli import run_main
    run_main(cifar.main, sys.argv[1:])
""")


def test_sigkill_during_save_leaves_the_last_checkpoint(data, tmp_path):
    run, marker = str(tmp_path / "run"), str(tmp_path / "in-save")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE] + TINY +
                            ["--data", data, "--epochs", "3", "-c", run],
                            env=dict(os.environ, MARKER=marker, REPO=REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert os.path.exists(marker), proc.stderr.read().decode() if proc.poll() is not None else ""
    proc.kill()
    proc.wait()
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert saved["epoch"] == 1  # the good one, whole
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 2  # epoch 2 was logged, then the save died
    cifar.main(TINY + ["--data", data, "--epochs", "3", "--resume", run])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 3  # epoch 2 once, not twice


def test_sigterm_stops_after_the_step_and_resume_continues(data, tmp_path):
    run = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "cifar.py")] + TINY +
                            ["--data", data, "--epochs", "1000", "-c", run], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = os.path.join(run, "log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and len(read_log_rows(log)[1]) >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    done = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["epoch"]
    assert done >= 1 and len(read_log_rows(log)[1]) == done
    cifar.main(TINY + ["--data", data, "--epochs", str(done + 1), "--resume", run])
    assert len(read_log_rows(log)[1]) == done + 1


def test_nan_loss_names_epoch_and_batch_and_keeps_the_checkpoint(data, tmp_path, monkeypatch,
                                                                 capsys):
    run = str(tmp_path / "run")
    cifar.main(TINY + ["--data", data, "--epochs", "1", "-c", run])
    before = open(os.path.join(run, "checkpoint.pth.tar"), "rb").read()
    real, calls = torch.nn.CrossEntropyLoss.forward, []

    def poisoned(self, input, target):
        calls.append(1)
        loss = real(self, input, target)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    with pytest.raises(SystemExit) as exit_info:
        run_main(cifar.main, TINY + ["--data", data, "--epochs", "2", "--resume", run])
    assert exit_info.value.code == 1
    assert "loss became non-finite at epoch 2, batch 2" in capsys.readouterr().err
    assert open(os.path.join(run, "checkpoint.pth.tar"), "rb").read() == before


def test_disk_full_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good = Checkpoint(epoch=1, state_dict={"w": torch.ones(3)})
    save_checkpoint(good, True, str(tmp_path))

    def full(obj, f, *a, **k):
        f.write(b"x" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(Exception, match="No space left on device.*previous checkpoint"):
        save_checkpoint(Checkpoint(epoch=2), True, str(tmp_path))
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pth.tar", "model_best.pth.tar"]


def test_atomic_save_replaces_whole_files(tmp_path):
    path = str(tmp_path / "c.pth.tar")
    atomic_save({"a": 1}, path)
    atomic_save({"a": 2}, path)
    assert torch.load(path, weights_only=True) == {"a": 2}
    assert os.listdir(tmp_path) == ["c.pth.tar"]


def fail(argv, script=cifar, capsys=None):
    return one_line_failure(script.main, argv, capsys)[1]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("damaged")
    run = str(root / "run")
    cifar.main(TINY + ["--data", data, "--epochs", "1", "-c", run])
    ckpt = os.path.join(run, "checkpoint.pth.tar")
    blob = open(ckpt, "rb").read()
    truncated = str(root / "truncated.pth.tar")
    open(truncated, "wb").write(blob[:len(blob) // 2])
    garbage = str(root / "garbage.pth.tar")
    open(garbage, "wb").write(b"\x00not a checkpoint")
    return {"run": run, "ckpt": ckpt, "truncated": truncated, "garbage": garbage}


BAD_INPUTS = [
    (["-a", "resnet50"], "unknown architecture 'resnet50'; did you mean"),
    (["-a", "resnet", "--depth", "21"], "needs depth = 6n+2"),
    (["-a", "l_wrn", "--depth", "11"], "wrn needs depth = 6n+4"),
    (["--train-batch", "0"], "--train-batch must be at least 1"),
    (["--iter-size", "0"], "--iter-size must be at least 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--schedule", "20", "10"], "--schedule epochs must increase"),
    (["--gpu-id", "7"], "--gpu-id 7"),
    (["-a", "preresnet", "--depth", "20", "--zero-init-residual"], "does not apply to preresnet"),
]


@pytest.mark.parametrize("flags,message", BAD_INPUTS, ids=[m[:20] for _, m in BAD_INPUTS])
def test_bad_flags_cost_one_line(flags, message, data, tmp_path, capsys):
    argv = ["-a", "resnet", "--depth", "20", "--data", data, "-c", str(tmp_path / "r")] + flags
    assert message in fail(argv, capsys=capsys)


def test_bad_data_and_checkpoints_cost_one_line(data, damaged, tmp_path, capsys):
    base = TINY + ["--data", data]
    assert "no cifar10 data found" in fail(
        ["--data", str(tmp_path / "empty"), "--no-download"], capsys=capsys)
    assert "unreadable (truncated, corrupt" in fail(base + ["--resume", damaged["truncated"]],
                                                   capsys=capsys)
    assert "unreadable" in fail(base + ["--resume", damaged["garbage"]], capsys=capsys)
    assert "no checkpoint found" in fail(base + ["--resume", str(tmp_path)], capsys=capsys)
    assert "architecture 'l_resnet', but --arch is 'resnet'" in fail(
        ["-a", "resnet", "--depth", "20", "--data", data, "--resume", damaged["run"]],
        capsys=capsys)
    # Another dataset on --resume is refused before any data is read.
    assert "--dataset cifar100: the checkpoint was trained with --dataset cifar10" in fail(
        ["-d", "cifar100", "--data", data, "--resume", damaged["run"], "--no-download"],
        capsys=capsys)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot write to the checkpoint folder" in fail(
        base + ["-c", str(blocker / "run")], capsys=capsys)


def test_corrupt_image_is_named(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "inet"), splits=(("train", 2), ("val", 1)))
    bad = os.path.join(root, "train", "b", "1.png")
    open(bad, "wb").write(b"\x89PNG broken")
    line = fail(["-a", "l_resnet18", "--data", root, "--epochs", "1", "-j", "0",
                 "--train-batch", "6", "-c", str(tmp_path / "r"), "--no-progress"],
                script=imagenet, capsys=capsys)
    assert f"cannot read image {bad}" in line
