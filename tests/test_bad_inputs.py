"""Every damaged input a hostile user can give ends in one line and an exit code, never a
traceback, a silently wrong run, or a saved NaN model. Each case builds its damage itself.

The classes: 1 code execution from data, 2 silently wrong data, 3 non-finite values, 4 flags,
checkpoints, logs and plot.py, 5 signals with workers and torchrun, 6 the log never lies."""
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import cifar
import imagenet
import plot
from builders import (REPO, TINY_MODEL, make_cifar_pickles, make_idx_dataset, make_image_folder,
                      make_svhn, one_line_failure, read_log_rows, tiny_run, write_idx, write_mat)

TINY = TINY_MODEL + tiny_run(seed=2, train_batch=8, test_batch=8)
IMAGENET = ["-a", "l_resnet18", "-j", "0", "--epochs", "1"] + tiny_run(seed=2, train_batch=2,
                                                                       test_batch=2)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_cifar_pickles(str(tmp_path_factory.mktemp("good")), n_train=16, n_test=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, good):
    """A finished 1-epoch run of TINY on ``good``."""
    run = str(tmp_path_factory.mktemp("trained") / "run")
    cifar.main(TINY + ["--data", good, "--epochs", "1", "-c", run])
    return run


def cifar_fails(argv, capsys, code=None):
    exit_code, line = one_line_failure(cifar.main, argv, capsys)
    assert code is None or exit_code == code, (exit_code, line)
    return line


def copy_run(run, to):
    import shutil
    shutil.copytree(run, to)
    return str(to)


# --- 1. Code execution from data -------------------------------------------------------------

class RunsCode:
    def __reduce__(self):
        return os.system, ("touch code-ran",)


@pytest.mark.parametrize("dataset, victim", [("cifar10", "data_batch_1"),
                                             ("cifar10", "batches.meta"),
                                             ("cifar100", "train")])
def test_a_pickle_that_names_code_is_refused(tmp_path, capsys, monkeypatch, dataset, victim):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ("cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python")
    folder.mkdir()
    names = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
             if dataset == "cifar10" else ["train", "test", "meta"])
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump(RunsCode() if name == victim else {
                "data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "fine_labels": [0, 1],
                "label_names": ["a"] * 10, "fine_label_names": ["a"] * 100}, f)
    line = cifar_fails(TINY + ["-d", dataset, "--data", str(tmp_path), "-c", "run", "--epochs",
                               "1"], capsys, code=1)
    assert victim in line and "refused to load posix.system" in line
    assert not (tmp_path / "code-ran").exists()


# --- 2. Silently wrong data ------------------------------------------------------------------

def official_with(root, **batch):
    """CIFAR-10's official layout whose data_batch_2 holds ``batch`` (over good defaults)."""
    root = make_cifar_pickles(str(root), n_train=10, n_test=4)
    content = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], **batch}
    with open(os.path.join(root, "cifar-10-batches-py", "data_batch_2"), "wb") as f:
        pickle.dump(content, f)
    return root


@pytest.mark.parametrize("batch, message", [
    ({"labels": [0, 1, 2]}, "data_batch_2 holds 2 images but 3 labels"),
    ({"labels": [0, 10]}, "labels from 0 to 10; expected 0..9 (10 classes)"),
    ({"labels": [-1, 0]}, "labels from -1 to 0"),
    ({"labels": [0.5, 1.0]}, "float64 labels; expected class numbers"),
    ({"data": np.full((2, 3072), 0.5)}, "float64 pixels from 0.5 to 0.5; expected 8-bit"),
    ({"data": np.full((2, 3072), 1000, np.int16)}, "int16 pixels from 1000 to 1000"),
    ({"data": np.zeros((0, 3072), np.uint8), "labels": []}, "data_batch_2 holds no images"),
    ({"data": np.zeros((2, 3000), np.uint8)}, "does not hold CIFAR data (N rows of 3072"),
    ({"data": None}, "does not hold CIFAR data"),
], ids=["count", "too-high", "negative", "fractional", "float-0-1", "int16", "empty",
        "row-size", "no-array"])
def test_cifar_batches_are_checked_before_training(tmp_path, capsys, batch, message):
    root = official_with(tmp_path / "data", **batch)
    line = cifar_fails(TINY + ["--data", root, "-c", str(tmp_path / "r")], capsys, code=1)
    assert message in line and "data_batch_2" in line


def test_a_batch_that_is_not_a_dict_is_named(tmp_path, capsys):
    root = make_cifar_pickles(str(tmp_path / "data"), n_train=10, n_test=4)
    with open(os.path.join(root, "cifar-10-batches-py", "test_batch"), "wb") as f:
        pickle.dump([1, 2, 3], f)
    assert "test_batch is not a readable CIFAR python batch file: FormatError: expected a dict" \
        in cifar_fails(TINY + ["--data", root, "-c", str(tmp_path / "r")], capsys, code=1)


def test_idx_and_mat_labels_are_checked(tmp_path, capsys):
    mnist = make_idx_dataset(str(tmp_path / "m"), "MNIST", n_train=10, n_test=4)
    write_idx(os.path.join(mnist, "MNIST", "raw", "train-labels-idx1-ubyte.gz"),
              np.arange(12, dtype=np.uint8))
    assert "holds 10 images but 12 labels" in cifar_fails(
        TINY + ["-d", "mnist", "--data", mnist, "-c", str(tmp_path / "r")], capsys, code=1)
    write_idx(os.path.join(mnist, "MNIST", "raw", "train-labels-idx1-ubyte.gz"),
              np.full(10, 12, dtype=np.uint8))
    assert "labels from 12 to 12; expected 0..9" in cifar_fails(
        TINY + ["-d", "mnist", "--data", mnist, "-c", str(tmp_path / "r")], capsys, code=1)
    os.makedirs(tmp_path / "s")
    svhn = make_svhn(str(tmp_path / "s"), n_train=10, n_test=4)
    write_mat(os.path.join(svhn, "train_32x32.mat"),
              {"X": np.zeros((32, 32, 3, 10), np.uint8), "y": np.full((10, 1), 11.0)})
    assert "labels from 11 to 11" in cifar_fails(
        TINY + ["-d", "svhn", "--data", svhn, "-c", str(tmp_path / "r")], capsys, code=1)


def test_a_16_bit_image_is_refused_not_whitened(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 2), ("test", 1)))
    wide = os.path.join(root, "train", "a", "0.png")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(wide)
    assert Image.open(wide).mode.startswith("I")
    line = cifar_fails(TINY + ["--data", root, "-c", str(tmp_path / "r")], capsys, code=1)
    assert f"image {wide} has" in line and "more than 8 bits" in line


def test_a_test_class_unknown_to_train_is_named(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 2),), classes=("a", "b"))
    make_image_folder(root, splits=(("test", 1),), classes=("a", "zebra"))
    line = cifar_fails(TINY + ["--data", root, "-c", str(tmp_path / "r")], capsys, code=1)
    assert "class folder(s) zebra that the training split does not have" in line


def test_imagenet_val_classes_take_train_labels_by_name(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "i"), splits=(("train", 1),), classes=("a", "b", "c"),
                             ext="jpg")
    make_image_folder(root, splits=(("val", 1),), classes=("a", "c"), ext="jpg")
    settings, _ = imagenet.imagenet_flags().parse(["--data", root, "-j", "0"])
    classes, (_, val) = imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 0, False)
    # val/ lacks b: c keeps train/'s label 2 (not 1, its place among val/'s folders).
    assert classes == ["a", "b", "c"] and torch.cat([y for _, y in val]).tolist() == [0, 2]
    make_image_folder(root, splits=(("val", 1),), classes=("d",), ext="jpg")
    line = one_line_failure(imagenet.main, IMAGENET + ["--data", root, "-c", str(tmp_path / "r")],
                            capsys)[1]
    assert "val has class folder(s) d that the training split does not have" in line


def test_an_empty_split_is_an_error(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "i"), splits=(("train", 1),), ext="jpg")
    os.makedirs(os.path.join(root, "val", "a"))
    line = one_line_failure(imagenet.main, IMAGENET + ["--data", root, "-c", str(tmp_path / "r")],
                            capsys)[1]
    assert "val has class folders but no image files" in line


# --- 3. Nothing non-finite is accepted, logged or saved --------------------------------------

@pytest.mark.parametrize("flag, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--mixup", "inf"), ("--momentum", "nan"),
    ("--wd", "nan"), ("--label-smoothing", "nan"), ("--ema", "nan"), ("--gamma", "inf"),
    ("--warmup-epochs", "nan"), ("--drop", "nan"), ("--cutmix", "-inf"),
    ("--random-erasing", "nan")])
def test_non_finite_flag_values_are_refused(good, tmp_path, capsys, flag, value):
    line = cifar_fails(TINY + ["--data", good, "-c", str(tmp_path / "r"), f"{flag}={value}"],
                       capsys, code=2)
    assert line.startswith(f"error: {flag.replace('--wd', '--weight-decay')} must be a finite "
                           f"number")


def test_a_nan_validation_loss_leaves_checkpoint_and_log_untouched(good, trained, tmp_path,
                                                                    capsys, monkeypatch):
    run = copy_run(trained, tmp_path / "run")
    # Everything but run.json, where the resume adds its session.
    before = {name: open(os.path.join(run, name), "rb").read() for name in os.listdir(run)
              if name != "run.json"}
    real = torch.nn.CrossEntropyLoss.forward

    def nan_when_evaluating(self, output, target):
        loss = real(self, output, target)
        return loss * float("nan") if not torch.is_grad_enabled() else loss
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", nan_when_evaluating)
    line = cifar_fails(["--resume", run, "--epochs", "2", "--data", good, "--no-progress"],
                       capsys, code=1)
    assert "validation loss became non-finite at epoch 2" in line and "last good one" in line
    assert sorted(os.listdir(run)) == sorted(before) + ["run.json"]  # no model_best appeared
    for name, content in before.items():
        assert open(os.path.join(run, name), "rb").read() == content, name


# --- 4. Flags, checkpoints, logs and plot.py: a line, not a traceback ------------------------

@pytest.mark.parametrize("flags, message", [
    (["--momentum", "-0.1"], "--momentum must be in [0, 1), got -0.1"),
    (["--momentum", "1"], "at 1 or more old gradients never fade"),
    (["--wd", "-1"], "--weight-decay must be >= 0"),
    (["--gamma", "0"], "--gamma must be positive"),
    (["--drop", "1"], "--drop must be in [0, 1)"),
    (["--test-batch", "0"], "--test-batch must be at least 1"),
    (["-a", "resnet", "--depth", "0"], "--depth must be at least 1"),
    (["-a", "resnext", "--depth", "11", "--cardinality", "0"], "--cardinality must be at least 1"),
    (["-a", "wrn", "--depth", "10", "--widen-factor", "0"], "--widen-factor must be at least 1"),
    (["-a", "densenet", "--depth", "10", "--growthRate", "0"], "--growthRate must be at least 1"),
    (["-a", "densenet", "--depth", "10", "--compressionRate", "0"],
     "--compressionRate must be at least 1"),
    (["-a", "l_resnet", "--depth", "8", "--gn-groups", "0"], "--gn-groups must be at least 1"),
    (["-a", "se_resnet", "--depth", "8", "--se-reduction", "-1"],
     "--se-reduction must be at least 1"),
    (["-a", "pyramidnet", "--depth", "20", "--alpha", "-1"], "--alpha must be at least 0"),
    (["-a", "shake_shake", "--depth", "8", "--base-channels", "0"],
     "--base-channels must be at least 1"),
    (["-a", "resnet", "--depth", "20000"], "this project builds at most 10000 layers"),
    (["-a", "wrn", "--depth", "28", "--widen-factor", "200"], "GiB for weights, gradients"),
    (["--start-epoch", "3", "--epochs", "3"], "nothing to train: --start-epoch 3 is not below"),
    (["--cutout", "40"], "--cutout 40 is larger than the 32x32 training images"),
    (["-a", "resnet", "--depth", "8", "--cardinality", "4"], "--cardinality does not apply"),
    (["-a", "resnet", "--depth", "8", "--sync-bn"], "--sync-bn needs CUDA GPUs under torchrun"),
    (["-a", "resnet", "--depth", "8", "--sync-bn", "--ghost-batch", "4"],
     "choose one of --sync-bn and --ghost-batch"),
    (["--best-by", "tta"], "--best-by tta needs --tta flip"),
    (["--clip-grad", "-1"], "--clip-grad must be >= 0"),
    (["--autoaugment", "cifar10", "--trivialaugment"],
     "choose one of --autoaugment, --trivialaugment"),
    (["--randaugment", "0", "9"], "--randaugment N must be at least 1, got 0"),
    (["--randaugment", "2", "31"], "--randaugment M must be in 0..30"),
    (["--save-every", "-1"], "--save-every must be >= 0 minutes"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints must be >= 0"),
    (["-a", "l_resnet", "--depth", "8", "--ghost-batch", "2"],
     "--ghost-batch needs batch statistics (--norm bn or bcn); this model's norm is gn"),
    (["-a", "resnet", "--depth", "8", "--norm", "ln", "--ghost-batch", "2"],
     "this model's norm is ln, which normalises each image on its own"),
    (["-a", "l_resnet", "--depth", "8", "--norm", "bn"], "-a l_resnet is GN+WS by name"),
    (["-a", "l_resnet", "--depth", "8", "--no-ws"], "for another pair write -a resnet --norm"),
    (["-a", "vgg11", "--norm", "gn"], "--norm does not apply to vgg11 (it takes no family flags "
                                      "and the norm flags --ws)"),
    (["-a", "resnet", "--depth", "8", "--gn-groups", "16"],
     "--gn-groups applies to --norm gn and bcn; this model's norm is bn"),
    (["-a", "resnet", "--depth", "8", "--norm", "gn", "--bcn-speed", "0.1"],
     "--bcn-speed applies to --norm bcn; this model's norm is gn"),
    (["-a", "resnet", "--depth", "8", "--norm", "bcn", "--bcn-speed", "0"],
     "--bcn-speed must be in (0, 1], got 0.0"),
    (["-a", "resnet", "--depth", "8", "--norm", "gn", "--gn-groups", "5"],
     "16 channels cannot be split into 5 groups"),
    (["-a", "shake_shake", "--depth", "8", "--base-channels", "1"],
     "shake_shake needs --base-channels >= 2"),
], ids=lambda v: v if isinstance(v, str) and not v.startswith("-") else None)
def test_flags_out_of_range_name_the_flag(good, tmp_path, capsys, flags, message):
    argv = TINY + ["--data", good, "-c", str(tmp_path / "r")] + flags
    assert message in cifar_fails(argv, capsys, code=2)


def test_imagenet_base_width_must_be_positive(tmp_path, capsys):
    line = one_line_failure(imagenet.main, ["-a", "l_resnext50", "--data", str(tmp_path),
                                            "--base-width", "0"], capsys)[1]
    assert "--base-width must be at least 1" in line


@pytest.mark.parametrize("content, message", [
    (torch.ones(3), "holds a Tensor, not a checkpoint"),
    ({"a": 1}, "holds no state_dict of named tensors"),
    ({"state_dict": {"w": torch.ones(1)}, "epoch": "three"}, "malformed 'epoch': a str"),
    ({"state_dict": {"w": torch.ones(1)}, "epoch": -2}, "negative epoch count"),
    ({"state_dict": {"w": torch.ones(1)}, "args": [1, 2]}, "malformed 'args': a list"),
], ids=["tensor", "no-weights", "epoch-str", "epoch-negative", "args-list"])
def test_torch_files_that_are_not_checkpoints_are_named(good, tmp_path, capsys, content, message):
    path = str(tmp_path / "c.pth.tar")
    torch.save(content, path)
    line = cifar_fails(TINY + ["--data", good, "--resume", path], capsys, code=1)
    assert path in line and message in line


def test_a_checkpoint_with_a_malformed_state_is_named(good, trained, tmp_path, capsys):
    checkpoint = torch.load(os.path.join(trained, "checkpoint.pth.tar"), weights_only=True)
    checkpoint["rng"] = {"python": 1}
    path = str(tmp_path / "c.pth.tar")
    torch.save(checkpoint, path)
    assert "the checkpoint's random generator state does not fit this run" in cifar_fails(
        ["--data", good, "--resume", path, "--epochs", "2", "--no-progress"], capsys, code=1)


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "adamw"], "--optimizer adamw: the checkpoint was trained with sgd"),
    (["--scheduler", "cosine"], "--scheduler cosine: the checkpoint was trained with step"),
    (["--warmup-epochs", "1"], "the checkpoint's schedule steps per epoch"),
    (["--ema", "0.9"], "--ema 0.9: the checkpoint keeps no average of the weights"),
], ids=["optimizer", "scheduler", "warmup", "ema"])
def test_a_resume_that_cannot_continue_names_the_flag(good, trained, capsys, flags, message):
    line = cifar_fails(["--data", good, "--resume", trained, "--epochs", "3"] + flags, capsys,
                       code=2)
    assert message in line and "--weights" in line


def test_a_resume_with_another_pair_is_refused(good, trained, capsys):
    line = cifar_fails(["--data", good, "--resume", trained, "--epochs", "3", "--norm", "bn"],
                       capsys, code=2)
    assert "--norm bn: the checkpoint's network was built with --norm gn" in line
    line = cifar_fails(["--data", good, "--resume", trained, "--epochs", "3", "--no-ws"], capsys,
                       code=2)
    assert "--ws False: the checkpoint's network was built with --ws True" in line


@pytest.mark.parametrize("arch, flags, message", [
    ("squeezenet1_0", ["--norm", "gn"], "squeezenet1_0 has no BatchNorm2d layer for --norm gn"),
    ("vit_b_16", ["--ws"], "vit_b_16 has no conv directly followed by a norm layer"),
    ("vit_b_16", ["--ghost-batch", "2"], "--ghost-batch needs batch statistics; vit_b_16 has no "
                                         "BatchNorm2d or BatchChannelNorm2d layer"),
])
def test_a_torchvision_model_without_a_place_for_the_pair_is_refused(tmp_path, capsys, arch,
                                                                     flags, message):
    root = make_image_folder(str(tmp_path / "inet"), splits=(("train", 1), ("val", 1)))
    line = one_line_failure(imagenet.main, ["-a", arch, "--data", root, "-j", "0",
                                            "-c", str(tmp_path / "r")] + flags, capsys)[1]
    assert message in line


def test_a_finished_checkpoint_has_nothing_to_train(good, trained, capsys):
    assert "nothing to train: the checkpoint has done 1 epochs and --epochs is 1" in cifar_fails(
        ["--data", good, "--resume", trained], capsys, code=2)


def test_disk_full_inside_torch_save_gives_the_disk_full_line(good, tmp_path, capsys,
                                                              monkeypatch):
    import shutil
    from collections import namedtuple

    def full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9, 0))
    line = cifar_fails(TINY + ["--data", good, "--epochs", "1", "-c", str(tmp_path / "r")],
                       capsys, code=1)
    assert line == (f"error: could not write a checkpoint in {tmp_path / 'r'}: No space left on "
                    f"device; the previous checkpoint there is intact")


def write_log(path, text):
    with open(path, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("A\tB\t\n1.0\tgarbage\t\n", "line 2 is not a row of 2 numbers"),
    ("A\tB\t\n1.0\t\n", "line 2 is not a row of 2 numbers"),
    (b"\x00\xff\xfe binary", "is not a text log"),
    ("", "is empty: no header"),
], ids=["garbage", "short-row", "binary", "empty"])
def test_plot_names_a_log_it_cannot_read(tmp_path, capsys, text, message):
    log = write_log(tmp_path / "log.txt", text)
    assert plot.main([log, "-o", str(tmp_path / "c.png")]) == 1
    err = capsys.readouterr().err
    assert message in err and log in err and "Traceback" not in err


def test_plot_refuses_an_output_it_cannot_write(tmp_path, capsys):
    log = write_log(tmp_path / "log.txt", "A\t\n1.0\t\n")
    assert plot.main([log, "-o", str(tmp_path / "missing" / "c.png")]) == 1
    assert f"no folder {tmp_path / 'missing'}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        plot.main([log, "-o", str(tmp_path / "c.xyz")])
    assert exit_info.value.code == 2
    assert "unknown picture format 'xyz'" in capsys.readouterr().err


# --- 5. Signals with DataLoader workers, and before the first checkpoint ---------------------

def start(argv, run):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "cifar.py")] + argv +
                            ["-c", run], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_process_group_with_workers_ends_cleanly(tmp_path, sig, code):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=64, n_test=8)
    run = str(tmp_path / "run")
    proc = start(TINY + ["--data", data, "--loader", "dataloader", "-j", "2", "--epochs", "1000"],
                 run)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(run, "checkpoint.pth.tar")):
        time.sleep(0.2)
    os.killpg(proc.pid, sig)  # the run and its workers, as Ctrl-C or a scheduler does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"stopped by {sig.name}" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    done = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["epoch"]
    assert done >= 1


def test_a_signal_in_the_first_epoch_saves_its_place(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=4000, n_test=8)
    run = str(tmp_path / "run")
    proc = start(TINY_MODEL + tiny_run(seed=1, train_batch=4) + ["--data", data, "--epochs", "1"],
                 run)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(run, "log.txt")):
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "--resume continues at epoch 1, batch" in err
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert saved["epoch"] == 0 and saved["position"]["batch"] > 0


# --- 6. The log never lies -------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["deleted", "short", "garbage"])
def test_a_damaged_log_is_rebuilt_from_the_checkpoint(good, tmp_path, capsys, damage):
    run = str(tmp_path / "run")
    cifar.main(TINY + ["--data", good, "--epochs", "2", "-c", run])
    log = os.path.join(run, "log.txt")
    header, rows = read_log_rows(log)
    if damage == "deleted":
        os.remove(log)
    else:
        lines = open(log).read().splitlines()
        write_log(log, "\n".join(lines[:2] if damage == "short" else
                                 lines[:2] + ["0.1\tgarbage"] + lines[3:]) + "\n")
    capsys.readouterr()
    cifar.main(["--data", good, "--resume", run, "--epochs", "3", "--no-progress"])
    assert "rebuilt from the checkpoint's rows" in capsys.readouterr().out
    header2, rows2 = read_log_rows(log)
    assert header2 == header and len(rows2) == 3 and rows2[:2] == rows


def test_a_lost_log_without_rows_in_the_checkpoint_is_refused(good, trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    checkpoint = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    del checkpoint["log"]  # as checkpoints written before the rows were kept
    torch.save(checkpoint, os.path.join(run, "checkpoint.pth.tar"))
    os.remove(os.path.join(run, "log.txt"))
    line = cifar_fails(["--data", good, "--resume", run, "--epochs", "2", "--no-progress"],
                       capsys, code=1)
    assert "log.txt is missing; the checkpoint holds no rows to rebuild it from" in line


# --- Reliability III: a worker's error ends the run; every decoding path names the file alike -

def unreadable_tree(tmp_path, split, content=b"\xff\xd8\xff broken"):
    root = make_image_folder(str(tmp_path / "inet"), splits=(("train", 3), ("val", 2)),
                             ext="jpg")
    bad = os.path.join(root, split, "b", "1.jpg")
    open(bad, "wb").write(content)
    return root, bad


@pytest.mark.parametrize("decode, split, workers", [
    ("cpu", "train", 1), ("pil", "train", 1), ("device", "train", 1), ("cpu", "val", 2)])
def test_an_unreadable_image_in_a_worker_ends_the_run_at_once_with_one_line(tmp_path, decode,
                                                                           split, workers):
    root, bad = unreadable_tree(tmp_path, split)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "imagenet.py"), "-a", "l_resnet18", "--data", root,
         "-j", str(workers), "--epochs", "1", "--train-batch", "3", "--test-batch", "2",
         "--decode", decode, "--no-progress", "-c", str(tmp_path / "run")],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert time.monotonic() - started < 120  # not a hang until someone kills it
    lines = [line for line in result.stderr.splitlines() if line.strip()
             and not line.startswith("warning: ")]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"error: cannot read image {bad}: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"\xff\xd8\xff broken", b"plain text, no image"],
                         ids=["jpeg", "text"])
def test_every_decoding_path_names_an_unreadable_file_the_same_way(tmp_path, capsys, content):
    root, bad = unreadable_tree(tmp_path, "train", content)
    seen = set()
    for decode in ("cpu", "pil", "device"):
        seen.add(one_line_failure(imagenet.main, IMAGENET + [
            "--data", root, "--decode", decode, "--train-batch", "3",
            "-c", str(tmp_path / decode)], capsys)[1])
    assert len(seen) == 1 and seen.pop().startswith(f"error: cannot read image {bad}: ")
