"""--tensorboard (utils/records/board.py): event files read back with tensorboard's own reader:
per-epoch scalars, the per-step loss, the flags once, and after a resume no step twice."""
import os
import signal
import subprocess
import sys
import time

import pytest

import cifar
from builders import REPO, TINY_MODEL, make_cifar_pickles, read_log_rows, tiny_run

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ARGS = TINY_MODEL + tiny_run(seed=5, train_batch=4, test_batch=8)


def events(run):
    accumulator = EventAccumulator(os.path.join(run, "tensorboard"))
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cifar_pickles(str(tmp_path_factory.mktemp("board")), n_train=48, n_test=8)


def test_each_epoch_and_every_nth_step_are_in_the_event_files(data, tmp_path):
    run = str(tmp_path / "run")
    cifar.main(ARGS + ["--data", data, "--epochs", "2", "-c", run, "--tensorboard",
                       "--log-every", "4"])
    board = events(run)
    tags = board.Tags()["scalars"]
    for name in ("train_loss", "train_acc", "train_top5", "valid_loss", "valid_acc",
                 "valid_top5", "lr", "images_per_second"):
        assert f"epoch/{name}" in tags
        assert [e.step for e in board.Scalars(f"epoch/{name}")] == [12, 24]  # 12 steps an epoch
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert [e.value for e in board.Scalars("epoch/valid_acc")] == pytest.approx(
        [row[4] for row in rows])
    assert [e.step for e in board.Scalars("step/loss")] == [4, 8, 12, 16, 20, 24]
    assert board.Tags()["tensors"] == ["flags/text_summary"]  # once


def test_a_resumed_run_appends_without_repeating_a_step(data, tmp_path):
    run = str(tmp_path / "run")
    cmd = [sys.executable, os.path.join(REPO, "cifar.py")] + ARGS + [
        "--data", data, "--epochs", "1000", "-c", run, "--tensorboard", "--log-every", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    log = os.path.join(run, "log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(log) and read_log_rows(log)[1]):
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch: the stop saves its place mid-epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    done = len(read_log_rows(log)[1])
    cifar.main(ARGS + ["--data", data, "--epochs", str(done + 1), "--resume", run,
                       "--tensorboard", "--log-every", "1"])
    board = events(run)
    steps = [e.step for e in board.Scalars("step/loss")]
    assert steps == list(range(1, 12 * (done + 1) + 1))  # every step once, in order
    assert [e.step for e in board.Scalars("epoch/valid_acc")] == \
        [12 * (e + 1) for e in range(done + 1)]


def test_log_every_without_tensorboard_is_refused(data, tmp_path, capsys):
    from builders import one_line_failure
    code, line = one_line_failure(cifar.main, ARGS + ["--data", data, "--log-every", "5", "-c",
                                                      str(tmp_path / "r")], capsys)
    assert code == 2 and "--log-every applies to --tensorboard" in line


def test_a_file_where_the_event_folder_goes_is_one_line_before_the_data(data, tmp_path,
                                                                       capsys):
    from builders import one_line_failure
    run = tmp_path / "run"
    cifar.main(ARGS + ["--data", data, "--epochs", "1", "-c", str(run)])
    (run / "tensorboard").write_text("not a folder")
    capsys.readouterr()
    code, line = one_line_failure(cifar.main, ["--resume", str(run), "--epochs", "2", "--data",
                                               data, "--tensorboard"], capsys)
    assert code == 2 and line.endswith("tensorboard is a file, where --tensorboard writes its "
                                       "event files: move it, or run without --tensorboard")


def test_without_the_package_tensorboard_is_one_line_saying_how_to_install_it(data, tmp_path,
                                                                              capsys,
                                                                              monkeypatch):
    from builders import one_line_failure
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    code, line = one_line_failure(cifar.main, ARGS + ["--data", data, "--tensorboard", "-c",
                                                      str(tmp_path / "r")], capsys)
    assert code == 2 and "pip install tensorboard" in line


def test_going_back_an_epoch_purges_the_steps_logged_after_it(data, tmp_path):
    """A resume from an older epoch copy continues at its step: the events logged after it
    (epoch 2's) are purged, not shown twice."""
    run = str(tmp_path / "run")
    common = ARGS + ["--data", data, "--tensorboard", "--log-every", "1"]
    cifar.main(common + ["--epochs", "2", "-c", run, "--keep-checkpoints", "2"])
    cifar.main(common + ["--epochs", "2", "--replace", "--resume",
                         os.path.join(run, "checkpoint_epoch_1.pth.tar")])
    board = events(run)
    assert [e.step for e in board.Scalars("step/loss")] == list(range(1, 25))
    assert [e.step for e in board.Scalars("epoch/train_loss")] == [12, 24]
