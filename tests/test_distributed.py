"""torchrun with 2 CPU processes (gloo) computes what 1 process computes for the same global
batch, evaluates exactly, and resumes."""
import os
import re
import subprocess
import sys

import pytest
import torch

import cifar
from builders import REPO, TINY_MODEL, make_cifar_pickles, read_log_rows, tiny_run

ARGS = TINY_MODEL + tiny_run(seed=9, test_batch=8) + ["--iter-size", "2"]


def torchrun(args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", os.path.join(REPO, "cifar.py")] + args
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 53 test images: shards of unequal size, and 50 train images: a last batch of 2.
    return make_cifar_pickles(str(tmp_path_factory.mktemp("cifar")), n_train=50, n_test=53)


def test_two_processes_equal_one(data, tmp_path, capsys):
    ddp, single = str(tmp_path / "ddp"), str(tmp_path / "single")
    torchrun(ARGS + ["--data", data, "--epochs", "1", "-c", ddp])
    cifar.main(ARGS + ["--data", data, "--epochs", "1", "-c", single])
    a = torch.load(os.path.join(ddp, "checkpoint.pth.tar"), weights_only=True)
    b = torch.load(os.path.join(single, "checkpoint.pth.tar"), weights_only=True)
    assert not any(k.startswith("module.") for k in a["state_dict"])
    worst = max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item()
                for k in b["state_dict"])
    assert worst < 1e-5
    # The logged training loss and accuracy are over both processes' images, as in one process.
    rows_ddp, rows_single = (read_log_rows(os.path.join(r, "log.txt"))[1] for r in (ddp, single))
    assert rows_ddp[0][1] == pytest.approx(rows_single[0][1], abs=1e-4)
    assert rows_ddp[0][3] == pytest.approx(rows_single[0][3], abs=1e-4)
    # The DDP run's logged accuracy is the exact single-process evaluation of its weights.
    capsys.readouterr()
    cifar.main(["-e", "--resume", ddp, "--data", data, "--no-progress", "--test-batch", "53"])
    acc = float(re.search(r"Test Acc:\s+([\d.]+)", capsys.readouterr().out).group(1))
    _, rows = read_log_rows(os.path.join(ddp, "log.txt"))
    assert acc == pytest.approx(rows[0][4], abs=0.006)


def test_resume_under_torchrun_appends(data, tmp_path):
    run = str(tmp_path / "run")
    torchrun(ARGS + ["--data", data, "--epochs", "1", "-c", run])
    out = torchrun(ARGS + ["--data", data, "--epochs", "2", "--resume", run])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 2
    assert out.stdout.count("Epoch: [2 | 2]") == 1  # only rank 0 prints
    # -e under torchrun: sharded evaluation of the checkpoint, equal to the logged accuracy.
    out = torchrun(["-e", "--resume", run, "--data", data, "--no-progress"])
    acc = float(re.search(r"Test Acc:\s+([\d.]+)", out.stdout).group(1))
    assert acc == pytest.approx(rows[-1][4], abs=0.006)


def test_train_batch_must_divide(data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(REPO, "cifar.py")] + ARGS + ["--train-batch", "15", "--data", data,
                                                      "-c", str(tmp_path / "r")]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--train-batch 15 does not divide among 2 processes" in result.stderr
    assert result.stderr.count("does not divide") == 1  # rank 0 speaks for both


def test_a_flag_error_is_printed_once(data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(REPO, "cifar.py"), "--epochs", "many", "--data", data]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.count("argument --epochs: invalid int value: 'many'") == 1, result.stderr
    assert result.stderr.count("usage: cifar.py") == 1


def test_a_signal_to_one_rank_stops_both_after_the_same_step(data, tmp_path):
    """The ranks agree on the step to stop after; otherwise the other one would wait forever in
    the next step's all-reduce."""
    import signal
    import time
    run = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(REPO, "cifar.py")] + ARGS + ["--data", data, "--epochs", "1000", "-c", run]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(run, "checkpoint.pth.tar")):
        time.sleep(0.2)
    ranks = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "cifar.py"], capture_output=True,
                           text=True).stdout.split()
    assert len(ranks) == 2, ranks
    os.kill(int(ranks[1]), signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert err.count("=> stopped by SIGTERM") == 1, err[-2000:]
    assert "--resume continues" in err
    done = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["epoch"]
    assert len(read_log_rows(os.path.join(run, "log.txt"))[1]) == done
