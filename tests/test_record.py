"""run.json: what a run records at its start and its result at the end; checkpoints hold it; a
resume adds its session. --keep-checkpoints N keeps exactly the last N epochs' copies."""
import json
import os

import pytest
import torch

import cifar
from builders import TINY_MODEL, make_cifar_pickles, tiny_run
from utils.records.record import git_commit
from utils.session import stages


def test_run_json_at_the_start_and_its_result_at_the_end(tmp_path, monkeypatch):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    seen = {}
    real_fit = stages.fit

    def fit_after_looking(*args):  # run.json as it stands while training
        with open(os.path.join(run, "run.json")) as f:
            seen.update(json.load(f))
        return real_fit(*args)
    monkeypatch.setattr(stages, "fit", fit_after_looking)
    argv = TINY_MODEL + tiny_run(seed=5, train_batch=8) + ["--data", data, "--epochs", "2", "-c",
                                                           run, "--lr", "0.05"]
    cifar.main(argv)
    assert seen["result"] is None
    (session,) = seen["sessions"]
    assert session["command"] == ["cifar.py"] + argv
    assert session["versions"]["torch"] == torch.__version__ and session["gpus"] == []
    assert session["host"] and session["started"][:2] == "20" and "commit" in session
    assert seen["flags"]["lr"] == 0.05 and seen["flags"]["checkpoint"] == run
    assert seen["recorded"]["manualSeed"] == 5 and "checkpoint" not in seen["recorded"]
    with open(os.path.join(run, "run.json")) as f:
        final = json.load(f)
    rows = open(os.path.join(run, "log.txt")).read().splitlines()[1:]
    accuracies = [float(r.split("\t")[4]) for r in rows]
    assert final["result"]["final_acc"] == accuracies[-1]
    assert final["result"]["best_acc"] == max(accuracies)
    assert final["result"]["epochs"] == 2 and final["result"]["wall_seconds"] > 0
    checkpoint = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert checkpoint["run"]["sessions"] == final["sessions"]

    # A resume keeps the first session and adds its own.
    cifar.main(["--resume", run, "--epochs", "3", "--data", data, "--no-progress"])
    with open(os.path.join(run, "run.json")) as f:
        resumed = json.load(f)
    assert [s["command"][1] for s in resumed["sessions"]] == [argv[0], "--resume"]
    assert resumed["result"]["epochs"] == 3
    # Each session's own wall time, and their total.
    first, second = (s["wall_seconds"] for s in resumed["sessions"])
    assert first == final["sessions"][0]["wall_seconds"] > 0 and second > 0
    assert resumed["result"]["wall_seconds"] == pytest.approx(first + second, abs=0.002)


def test_keep_checkpoints_keeps_exactly_the_last_n(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=8, n_test=4)
    run = str(tmp_path / "run")
    cifar.main(TINY_MODEL + tiny_run(seed=1, train_batch=8) + ["--data", data, "--epochs", "4",
                                                               "-c", run, "--keep-checkpoints", "2"])
    copies = sorted(n for n in os.listdir(run) if n.startswith("checkpoint_epoch_"))
    assert copies == ["checkpoint_epoch_3.pth.tar", "checkpoint_epoch_4.pth.tar"]
    third = torch.load(os.path.join(run, "checkpoint_epoch_3.pth.tar"), weights_only=True)
    assert third["epoch"] == 3
    plain = str(tmp_path / "plain")
    cifar.main(TINY_MODEL + tiny_run(seed=1, train_batch=8) + ["--data", data, "--epochs", "2",
                                                               "-c", plain])
    assert not [n for n in os.listdir(plain) if n.startswith("checkpoint_epoch_")]


def test_git_commit_is_read_from_the_checkout_files(tmp_path):
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(str(tmp_path)) == "a" * 40
    os.remove(git / "refs" / "heads" / "main")
    (git / "packed-refs").write_text("# pack-refs\n" + "b" * 40 + " refs/heads/main\n")
    assert git_commit(str(tmp_path)) == "b" * 40
    (git / "HEAD").write_text("c" * 40 + "\n")  # detached
    assert git_commit(str(tmp_path)) == "c" * 40
    assert git_commit(str(tmp_path / "nowhere")) is None


def test_checkpoints_and_run_json_follow_the_umask_as_the_log_does(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=8, n_test=4)
    run = str(tmp_path / "run")
    old = os.umask(0o022)
    try:
        cifar.main(TINY_MODEL + tiny_run(seed=1, train_batch=8) + ["--data", data, "--epochs",
                                                                   "1", "-c", run])
    finally:
        os.umask(old)
    modes = {name: os.stat(os.path.join(run, name)).st_mode & 0o777
             for name in ("checkpoint.pth.tar", "model_best.pth.tar", "run.json", "log.txt")}
    assert modes == dict.fromkeys(modes, 0o644)
