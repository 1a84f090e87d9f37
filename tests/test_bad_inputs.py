"""Every damaged input a hostile user can give ends in one line and an exit code, never a
traceback, a silently wrong run, or a saved NaN model. Each case builds its damage itself.

The classes: 1 code execution from data, 2 silently wrong data, 3 non-finite values, 4 flags,
checkpoints, logs and plot.py, 5 signals with workers and torchrun, 6 the log never lies."""
import json
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
from utils.session.stages import read_settings

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


@pytest.mark.parametrize("script", ["cifar", "export"])
def test_a_checkpoint_that_names_code_is_refused_without_advice_to_run_it(good, tmp_path, capsys,
                                                                          monkeypatch, script):
    import export
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "c.pth.tar")
    torch.save({"state_dict": {"w": torch.ones(1)}, "args": RunsCode()}, path)
    main, argv = ((cifar.main, ["--resume", path, "--data", good]) if script == "cifar" else
                  (export.main, ["--resume", path, "-o", str(tmp_path / "m.pt2")]))
    code, line = one_line_failure(main, argv, capsys)
    assert code == 1 and line == (
        f"error: checkpoint {path} names posix.system, which no checkpoint holds (code, or an "
        f"object of another program): refused without running it; a checkpoint holds only "
        f"tensors, numbers, text and containers")
    assert "weights_only" not in line and not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("script", ["cifar", "predict"])
def test_a_state_dict_that_names_code_is_refused(good, tmp_path, capsys, monkeypatch, script):
    """A bare state_dict (torchvision's and timm's way of sharing weights) with a payload:
    --weights refuses it, naming what it names; predict.py --model, which takes programs,
    says what the file is without loading it. Neither runs the payload."""
    import predict
    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "state.pth")
    torch.save({"conv1.weight": torch.ones(1), "fc.bias": RunsCode()}, path)
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    main, argv = ((cifar.main, TINY + ["--weights", path, "--data", good, "-c", "run"])
                  if script == "cifar" else (predict.main, ["--model", path, str(image)]))
    code, line = one_line_failure(main, argv, capsys)
    assert code == 1 and ("posix.system" in line and "refused" in line if script == "cifar" else
                          "it is a torch.save file" in line), line
    assert "weights_only" not in line and not (tmp_path / "code-ran").exists()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained):
    """export.py's program of ``trained``."""
    import export
    path = str(tmp_path_factory.mktemp("exported") / "m.pt2")
    assert export.main(["--resume", trained, "-o", path]) == 0
    return path


def tampered(path, to, change):
    """A copy of the .pt2 archive ``path`` at ``to`` with ``change(name, data) -> data``
    applied to every member (zip entries rewritten, as an attacker would)."""
    import zipfile
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(to, "w") as target:
        for info in source.infolist():
            target.writestr(info, change(info.filename, source.read(info)))
    return str(to)


def payload(marker) -> bytes:
    class MakesFile:
        def __reduce__(self):
            return open, (str(marker), "w")
    return pickle.dumps(MakesFile())


def a_pickled_weight(marker):
    def change(name, data):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/weight_0"):
            return payload(marker)
        return data
    return change


def a_pickled_sample_input(marker):
    def change(name, data):
        return payload(marker) if "sample_inputs" in name else data
    return change


@pytest.mark.parametrize("tamper", [a_pickled_weight, a_pickled_sample_input])
def test_a_tampered_export_runs_no_code_and_is_refused(exported, tmp_path, capsys, monkeypatch,
                                                       tamper):
    """torch.export.load unpickles a weight its config marks use_pickle, and retries the sample
    inputs without weights_only: both ways a shared .pt2 could run code."""
    import predict
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code-ran"
    bad = tampered(exported, tmp_path / "bad.pt2", tamper(marker))
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    code, line = one_line_failure(predict.main, ["--model", bad, str(image)], capsys)
    assert code == 1 and line.startswith(f"error: {bad}") and "refused" in line, line
    assert not marker.exists()
    assert predict.main(["--model", exported, str(image)]) == 0  # the good one still loads


@pytest.mark.parametrize("kind, words", [
    ("fifo", "is not a regular file (a FIFO, device or socket)"),
    ("device", "is not a regular file (a FIFO, device or socket)"),
    ("missing", "cannot read"),
    ("safetensors-fifo", "no checkpoint found at"),
])
def test_predicts_model_that_is_not_a_file_is_one_line_and_never_blocks(tmp_path, kind, words):
    """predict.py --model reads the file's first bytes to tell a .pt2 from a .safetensors: a
    FIFO (which would block that read for ever), a device or a missing file is one line."""
    model = {"fifo": tmp_path / "m.pt2", "device": "/dev/zero", "missing": tmp_path / "none.pt2",
             "safetensors-fifo": tmp_path / "m.safetensors"}[kind]
    if "fifo" in kind:
        os.mkfifo(model)
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    done = subprocess.run([sys.executable, "predict.py", "--model", str(model), str(image)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning")]
    assert done.returncode == 1 and len(lines) == 1 and words in lines[0], done.stderr


@pytest.mark.parametrize("flag", ["--resume", "--weights"])
def test_an_export_given_as_a_checkpoint_is_named_not_called_corrupt(exported, good, tmp_path,
                                                                     capsys, flag):
    argv = ([flag, exported, "--data", good] if flag == "--resume" else
            TINY + [flag, exported, "--data", good, "-c", str(tmp_path / "run")])
    line = cifar_fails(argv, capsys, code=1)
    assert f"{exported} is an exported program" in line and "corrupt" not in line, line


@pytest.mark.parametrize("kind, words", [
    ("empty", "-c '': the run folder has no name"),
    ("file", "is a file, not a folder"),
    ("dangling", "which does not exist"),
])
def test_a_run_folder_that_cannot_be_one_says_why(good, tmp_path, capsys, kind, words):
    target = {"empty": "", "file": str(tmp_path / "f"), "dangling": str(tmp_path / "l")}[kind]
    if kind == "file":
        open(target, "w").close()
    elif kind == "dangling":
        os.symlink(str(tmp_path / "nowhere" / "x"), target)
    line = cifar_fails(TINY + ["--data", good, "-c", target], capsys, code=2)
    assert words in line, line


def test_a_nan_in_the_first_epoch_says_no_checkpoint_holds_good_weights():
    from utils.train.engine import NonFiniteLoss
    assert "no epoch had finished" in str(NonFiniteLoss(0, 3))
    assert "the last checkpoint is the last good one" in str(NonFiniteLoss(2))


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


def test_a_32_bit_image_is_refused_not_whitened(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 2), ("test", 1)))
    wide = os.path.join(root, "train", "a", "0.tif")
    Image.fromarray(np.full((32, 32), 400000, np.int32)).save(wide)
    assert Image.open(wide).mode == "I"
    line = cifar_fails(TINY + ["--data", root, "-c", str(tmp_path / "r")], capsys, code=1)
    assert f"image {wide} has 32-bit pixels (more than 16 bits)" in line


@pytest.mark.parametrize("decode", ["cpu", "pil", "device"])
def test_max_pixels_reaches_the_loader_workers_of_every_path(tmp_path, capsys, decode):
    root = make_image_folder(str(tmp_path / "inet"), splits=(("train", 2), ("val", 1)),
                             size=(64, 48), ext="jpg")
    code, line = one_line_failure(imagenet.main, IMAGENET[:2] + [
        "--data", root, "--decode", decode, "-j", "1", "--max-pixels", "3000", "-c",
        str(tmp_path / "r")] + IMAGENET[4:], capsys)
    assert code == 1 and "64x48 is 3,072 pixels, more than the limit of 3,000" in line, line


def test_a_16_bit_grey_png_trains_as_its_high_byte(tmp_path):
    from utils.data.datasets import load_dataset
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 2), ("test", 1)))
    wide = os.path.join(root, "train", "a", "0.png")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(wide)
    train, _ = load_dataset(root, "cifar10", download=False)
    assert (train.images == 40000 >> 8).all(dim=(1, 2, 3)).any()


def test_a_test_class_unknown_to_train_is_named(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 2),), classes=("a", "b"))
    make_image_folder(root, splits=(("test", 1),), classes=("a", "zebra"))
    line = cifar_fails(TINY + ["--data", root, "-c", str(tmp_path / "r")], capsys, code=1)
    assert "class folder(s) zebra that the training split does not have" in line


def test_imagenet_val_classes_take_train_labels_by_name(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "i"), splits=(("train", 1),), classes=("a", "b", "c"),
                             ext="jpg")
    make_image_folder(root, splits=(("val", 1),), classes=("a", "c"), ext="jpg")
    settings, _ = read_settings(imagenet.imagenet_flags(), ["--data", root, "-j", "0"])
    classes, loaders = imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 0, False)
    val = loaders.test
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
                                      "and the norm flags --ws, --ws-form)"),
    (["-a", "resnet", "--depth", "8", "--gn-groups", "16"],
     "--gn-groups applies to --norm gn and bcn; this model's norm is bn"),
    (["-a", "resnet", "--depth", "8", "--norm", "gn", "--bcn-speed", "0.1"],
     "--bcn-speed applies to --norm bcn; this model's norm is gn"),
    (["-a", "resnet", "--depth", "8", "--norm", "bcn", "--bcn-speed", "0"],
     "--bcn-speed must be in (0, 1], got 0.0"),
    (["-a", "resnet", "--depth", "8", "--norm", "gn", "--gn-groups", "0"],
     "--gn-groups must be at least 1, got 0"),
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


@pytest.mark.parametrize("field, state, message", [
    ("rng", {"python": 1}, "random generator state does not fit this run"),
    ("scheduler", {"foo": 1}, "schedule state does not fit this run: it has no 'milestones'"),
    ("optimizer", {"foo": 1}, "optimizer state does not fit this run: it has no 'state'"),
], ids=["rng", "scheduler-foo", "optimizer-foo"])
def test_a_checkpoint_with_a_malformed_state_is_named(good, trained, tmp_path, capsys, field,
                                                      state, message):
    checkpoint = torch.load(os.path.join(trained, "checkpoint.pth.tar"), weights_only=True)
    checkpoint[field] = state
    path = str(tmp_path / "c.pth.tar")
    torch.save(checkpoint, path)
    assert message in cifar_fails(
        ["--data", good, "--resume", path, "--epochs", "2", "--no-progress"], capsys, code=1)


def test_a_schedule_state_of_another_kind_of_schedule_is_refused(good, trained, tmp_path, capsys):
    """A per-iteration schedule's state (warmup, cosine) in a checkpoint of a step schedule, as a
    hand-edited or mixed-up file would carry: its LR would be replayed wrong, not refused."""
    checkpoint = torch.load(os.path.join(trained, "checkpoint.pth.tar"), weights_only=True)
    checkpoint["scheduler"]["base_lrs"] = [0.1, 0.1]
    path = str(tmp_path / "c.pth.tar")
    torch.save(checkpoint, path)
    assert "its 'base_lrs' holds 2 items where this run has 1" in cifar_fails(
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


def test_a_full_dev_shm_gets_the_shared_memory_line_not_the_disk_full_one(capsys):
    """An OSError ENOSPC on a /dev/shm file (the loader's shared batches) is the documented
    shared-memory line; on any other file, the disk-full one."""
    import errno
    from utils.cli import run_main

    def fails(name):
        def main(argv):
            raise OSError(errno.ENOSPC, "No space left on device", name)
        return main

    for name, words in (("/dev/shm/torch_123", "ran out of shared memory (/dev/shm)"),
                        ("/tmp/run/log.txt", "cannot write /tmp/run/log.txt: No space left")):
        with pytest.raises(SystemExit) as exit_info:
            run_main(fails(name), [])
        assert exit_info.value.code == 1 and words in capsys.readouterr().err


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


def leftovers(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_disk_full_while_the_curves_are_drawn_is_one_line(good, tmp_path, capsys, monkeypatch):
    import matplotlib.pyplot as plt

    def full(f, *args, **kwargs):
        f.write(b"\x89PNG half a picture")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(plt, "savefig", full)
    run = tmp_path / "r"
    line = cifar_fails(TINY + ["--data", good, "--epochs", "1", "-c", str(run)], capsys, code=1)
    assert line.startswith(f"error: cannot write {run / 'log.'}"), line
    assert ": No space left on device; the files written before are intact" in line
    assert not {"log.png", "log.eps"} & set(os.listdir(run)) and not leftovers(run)


def test_disk_full_at_the_first_write_of_a_run_is_one_line(good, tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    run = tmp_path / "r"
    line = cifar_fails(TINY + ["--data", good, "--epochs", "1", "-c", str(run)], capsys, code=1)
    assert f"error: cannot write {run}" in line and "No space left on device" in line, line
    assert not leftovers(run)


@pytest.mark.parametrize("export_format, name", [("exported", "m.pt2"), ("state_dict", "m.pth")])
def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(trained, tmp_path, export_format,
                                                                name):
    """A real write past a file-size limit (EFBIG; Python ignores SIGXFSZ): torch's own writer
    would abort the process from C++ and leave a zero-byte file."""
    import resource
    limit = 20_000  # below either file of the tiny model

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, os.path.join(REPO, "export.py"), "--resume", trained,
                           "-o", str(out / name), "--format", export_format],
                          preexec_fn=small_files, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot write {out / name}: File too large"), lines
    assert os.listdir(out) == []


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


# --- Reliability III, class 0: a run folder has one owner; nothing replaced without a word -----

def run_files(folder):
    """{name: bytes} of what a run wrote into ``folder``."""
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def test_two_runs_into_one_folder_the_second_is_refused_naming_the_first(good, tmp_path):
    """Real processes: the first holds the folder; a second, fresh or resuming, is refused with
    the holder's pid; once the first is killed (SIGKILL: no chance to clean up), its lock is
    gone with it and --resume carries on."""
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=64, n_test=8)
    run = str(tmp_path / "run")
    first = start(TINY + ["--data", data, "--epochs", "1000"], run)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(run, "checkpoint.pth.tar")):
        time.sleep(0.2)
    for extra in (["--epochs", "3"], ["--resume", run, "--epochs", "2000"]):
        second = subprocess.run([sys.executable, os.path.join(REPO, "cifar.py")] + TINY +
                                ["--data", data, "-c", run] + extra, cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"{run} is in use by another run (pid {first.pid} on " in lines[0]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    done = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["epoch"]
    cifar.main(["--resume", run, "--data", data, "--epochs", str(done + 1), "--no-progress"])
    assert len(read_log_rows(os.path.join(run, "log.txt"))[1]) == done + 1
    assert not os.path.exists(os.path.join(run, ".lock"))  # a finished run lets go


def test_a_fresh_run_refuses_a_folder_that_holds_a_run_unless_told(good, trained, tmp_path,
                                                                   capsys):
    run = copy_run(trained, tmp_path / "run")
    before = run_files(run)
    line = cifar_fails(TINY + ["--data", good, "--epochs", "1", "-c", run], capsys, code=2)
    assert f"{run} holds a run (checkpoint.pth.tar" in line and "--replace" in line
    assert run_files(run) == before  # nothing touched
    cifar.main(TINY + ["--data", good, "--epochs", "1", "-c", run, "--replace"])
    assert "--replace: removed the previous run's checkpoint.pth.tar" in capsys.readouterr().out
    assert len(read_log_rows(os.path.join(run, "log.txt"))[1]) == 1


def test_going_back_to_an_older_epoch_copy_says_what_it_would_replace(good, tmp_path, capsys):
    run = str(tmp_path / "run")
    cifar.main(TINY + ["--data", good, "--epochs", "3", "-c", run, "--keep-checkpoints", "3"])
    before = run_files(run)
    old = os.path.join(run, "checkpoint_epoch_1.pth.tar")
    line = cifar_fails(["--resume", old, "--data", good, "--epochs", "4"], capsys, code=2)
    assert "goes back to an older epoch" in line and "checkpoint.pth.tar and " \
        "model_best.pth.tar" in line and "--replace" in line
    assert run_files(run) == before
    # Into another folder (-c): the old run stays as it is, the new one starts at epoch 2.
    branch = str(tmp_path / "branch")
    cifar.main(["--resume", old, "--data", good, "--epochs", "2", "-c", branch, "--no-progress"])
    assert run_files(run) == before
    assert len(read_log_rows(os.path.join(branch, "log.txt"))[1]) == 2
    # Told to, it replaces: the log is cut back to epoch 1 and grows from there.
    cifar.main(["--resume", old, "--data", good, "--epochs", "2", "--replace", "--no-progress"])
    assert len(read_log_rows(os.path.join(run, "log.txt"))[1]) == 2


def test_what_a_killed_save_left_is_removed_at_the_next_start(good, trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    for name in ("checkpoint.pth.tar.k1m2n3.tmp", "run.json.x9y8z7.tmp", "log.txt.tmp"):
        open(os.path.join(run, name), "wb").write(b"half a save")
    cifar.main(["--resume", run, "--data", good, "--epochs", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert "removed what a killed save left" in out and "checkpoint.pth.tar.k1m2n3.tmp" in out
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_export_never_writes_over_a_checkpoint_and_asks_before_any_file(trained, tmp_path,
                                                                        capsys):
    import export
    checkpoint = os.path.join(trained, "checkpoint.pth.tar")
    before = open(checkpoint, "rb").read()
    for output in (checkpoint, os.path.join(trained, "model_best.pth.tar")):
        code, line = one_line_failure(export.main, ["--resume", trained, "-o", output], capsys)
        assert code == 2 and "would write over a checkpoint" in line
    assert open(checkpoint, "rb").read() == before
    existing = tmp_path / "m.pth"
    existing.write_bytes(b"mine")
    code, line = one_line_failure(export.main, ["--resume", trained, "-o", str(existing),
                                                "--format", "state_dict"], capsys)
    assert code == 2 and "exists; add --replace" in line and existing.read_bytes() == b"mine"
    assert export.main(["--resume", trained, "-o", str(existing), "--format", "state_dict",
                        "--replace"]) == 0


# --- class 1: what is read back from disk is checked like a flag ----------------------------

def damaged_checkpoint(trained, tmp_path, **fields):
    checkpoint = torch.load(os.path.join(trained, "checkpoint.pth.tar"), weights_only=True)
    for key, value in fields.items():
        if value is None:
            checkpoint.pop(key, None)
        elif key == "args":
            checkpoint["args"] = {**checkpoint["args"], **value}
        else:
            checkpoint[key] = value
    folder = tmp_path / "damaged"
    folder.mkdir(exist_ok=True)
    torch.save(checkpoint, folder / "checkpoint.pth.tar")
    return str(folder / "checkpoint.pth.tar")


@pytest.mark.parametrize("fields, message", [
    (dict(position={"batch": 999, "meters": [[0.0, 0.0, 0.0, 8.0, 8.0]], "lr": 0.1}),
     "position in its epoch is malformed: batch 1000 of an epoch of 2 batches"),
    (dict(position={"batch": 1, "meters": [[1.0, 2.0]], "lr": 0.1}),
     "malformed 'position': its meters are not lists of 5"),
    (dict(position={"batch": 1, "meters": [[0.0] * 5], "lr": float("nan")}),
     "malformed 'position': its learning rate is nan"),
    (dict(args={"lr": "fast"}), "malformed 'args': lr is 'fast', which --learning-rate cannot"),
    (dict(args={"depth": 8.5}), "malformed 'args': depth is 8.5"),
    (dict(args={"optimizer": "rmsprop"}), "malformed 'args': optimizer is 'rmsprop'"),
    (dict(args={"epochs": None}), "malformed 'args': epochs is None"),
    (dict(args={"schedule": None}), "malformed 'args': schedule is None"),
    (dict(args={"train_batch": None}), "malformed 'args': train_batch is None"),
    (dict(args={"weight_decay": None}), "malformed 'args': weight_decay is None"),
    (dict(args={"arch": None}), "malformed 'args': arch is None"),
    (dict(args={"lr": -0.5}), "malformed 'args': lr is -0.5: --lr must be positive"),
    (dict(args={"train_batch": 0}), "malformed 'args': train_batch is 0: --train-batch must"),
    (dict(log={"names": ["A"], "rows": [[1.0, 2.0]]}), "malformed 'log': row 1 is not a row of 1"),
    (dict(log={"names": ["A"], "rows": [[float("inf")]]}), "malformed 'log': row 1 holds"),
    (dict(run={"sessions": "yesterday"}), "malformed 'run': its sessions are not a list"),
    (dict(best_acc=float("nan")), "malformed 'best_acc': nan is not a finite number"),
    (dict(num_classes=0), "malformed 'num_classes': 0 classes"),
    (dict(args={"randaugment": [2, 99]}), "malformed 'args': --randaugment M must be in 0..30 "
     "(torchvision's 31 magnitude bins), got 99 (--randaugment as the checkpoint records it; "
     "this command line does not write it)"),
    (dict(args={"mixup": 0.2, "cutmix": 1.0}), "malformed 'args': choose one of --mixup, "
                                               "--cutmix"),
], ids=["position-past-end", "meters", "lr", "args-str", "args-float", "args-choice",
        "args-epochs-none", "args-schedule-none", "args-batch-none", "args-wd-none",
        "args-arch-none", "args-lr-range", "args-batch-range",
        "log-row", "log-inf", "sessions", "best-acc", "classes", "args-policy",
        "args-combination"])
def test_a_checkpoint_field_read_back_is_checked_like_its_flag(good, trained, tmp_path, capsys,
                                                               fields, message):
    path = damaged_checkpoint(trained, tmp_path, **fields)
    code, line = one_line_failure(cifar.main, ["--resume", path, "--data", good, "--epochs", "3",
                                               "--no-progress"], capsys)
    assert code in (1, 2) and message in line, line


@pytest.mark.parametrize("arch, flags, message", [
    ("resnet", ["--ws"], "--ws True: the checkpoint's network was built with --ws False"),
    ("resnet", ["--norm", "gn"], "--norm gn: the checkpoint's network was built with --norm bn"),
    ("l_resnet", ["--no-ws"], "--ws False: the checkpoint's network was built with --ws True"),
], ids=["bn-given-ws", "bn-given-gn", "l-given-no-ws"])
def test_a_checkpoint_from_before_norm_and_ws_trained_its_architectures_pair(
        good, trained, tmp_path, capsys, arch, flags, message):
    checkpoint = torch.load(os.path.join(trained, "checkpoint.pth.tar"), weights_only=True)
    del checkpoint["args"]["norm"], checkpoint["args"]["ws"]
    checkpoint["arch"] = checkpoint["args"]["arch"] = arch
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(checkpoint, path)
    code, line = one_line_failure(cifar.main, ["--resume", str(path), "--data", good] + flags,
                                  capsys)
    assert code == 2 and message in line, line


def test_a_checkpoint_of_the_other_script_says_which_script_wrote_it(good, trained, tmp_path,
                                                                     capsys):
    checkpoint = os.path.join(trained, "checkpoint.pth.tar")
    code, line = one_line_failure(imagenet.main, ["--resume", checkpoint, "-j", "0"], capsys)
    assert code == 2 and line.endswith(
        f"{checkpoint} is a checkpoint of -a l_resnet, written by cifar.py, which imagenet.py "
        f"does not build: use it with cifar.py"), line
    run = torch.load(checkpoint, weights_only=True)["run"]
    run["sessions"][-1]["command"] = ["imagenet.py", "-a", "l_resnet18"]
    path = damaged_checkpoint(trained, tmp_path, arch="l_resnet18", run=run,
                              args={"arch": "l_resnet18"})
    code, line = one_line_failure(cifar.main, ["--resume", path, "--data", good], capsys)
    assert code == 2 and "is a checkpoint of -a l_resnet18, written by imagenet.py, which " \
        "cifar.py does not build: use it with imagenet.py" in line, line


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"\x80\x02 pickle?"],
                         ids=["empty", "broken-zip", "not-torch"])
def test_a_checkpoint_file_that_does_not_parse_is_one_line(good, tmp_path, capsys, content):
    path = tmp_path / "c.pth.tar"
    path.write_bytes(content)
    line = cifar_fails(["--resume", str(path), "--data", good], capsys, code=1)
    assert "is unreadable (truncated, corrupt or not a PyTorch file)" in line
    assert "weights_only" not in line  # torch's advice, which would run a malicious file


@pytest.mark.parametrize("tool", ["plot", "summarize"])
def test_plot_and_summarize_never_wait_on_a_fifo_or_read_a_device(tmp_path, capsys, tool):
    import summarize
    run = tmp_path / "r"
    run.mkdir()
    os.mkfifo(run / ("log.txt" if tool == "plot" else "run.json"))
    if tool == "summarize":
        (run / "log.txt").write_text("Valid Acc.\t\n10.0\t\n")
    started = time.monotonic()
    main = plot.main if tool == "plot" else summarize.main
    assert main([str(run / "log.txt") if tool == "plot" else str(run),
                 "-o", str(tmp_path / "p.png")]) == 1
    assert f"error: {run}" in capsys.readouterr().err.replace("no log at ", "")
    assert time.monotonic() - started < 10


def special_node(path, kind):
    """A FIFO, or (as root) a character device like /dev/null's, at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))
    return str(path)


def still_special(path):
    import stat
    mode = os.lstat(path).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device node needs root")
@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("tool", ["export", "plot", "summarize"])
def test_an_output_that_is_a_device_or_fifo_is_refused_and_left_alone(trained, tmp_path, capsys,
                                                                      tool, kind):
    """An output is renamed into place: over a device node that would make the node a regular
    file (as root, -o /dev/null the machine's), and --replace does not change that."""
    import export
    import summarize
    target = special_node(tmp_path / ("out.pt2" if tool == "export" else "out.png"), kind)
    main, argv = {
        "export": (export.main, ["--resume", trained, "-o", target, "--format", "state_dict",
                                 "--replace"]),
        "plot": (plot.main, [os.path.join(trained, "log.txt"), "-o", target]),
        "summarize": (summarize.main, [trained, "-o", target]),
    }[tool]
    if tool == "export":
        code, line = one_line_failure(main, argv, capsys)
    else:  # plot.py and summarize.py return their exit code
        code, err = main(argv), capsys.readouterr().err
        line, = [x for x in err.splitlines() if x.strip()]
    assert code in (1, 2) and f"{target} is a " in line and "not a file" in line, line
    assert still_special(target)


def test_an_atomic_write_refuses_a_device(tmp_path):
    from utils.atomic import atomic_write
    from utils.files import NotRegularFile
    target = special_node(tmp_path / "x", "fifo")
    with pytest.raises(NotRegularFile, match="is a FIFO, not a file"):
        atomic_write(target, lambda f: f.write(b"x"))
    assert still_special(target)


@pytest.mark.parametrize("name, limit", [("log.txt", "MAX_LOG_BYTES"),
                                         ("run.json", "MAX_RECORD_BYTES")])
def test_a_log_or_record_past_any_real_size_is_refused_unread(tmp_path, monkeypatch, name, limit):
    from utils.records import logger, summary
    from utils.records.logger import LogError
    monkeypatch.setattr(logger if name == "log.txt" else summary, limit, 100)
    path = tmp_path / name
    path.write_text("Valid Acc.\t\n" + "10.0\t\n" * 50 if name == "log.txt" else
                    '{"recorded": {"note": "' + "x" * 200 + '"}}')
    read = logger.read_log if name == "log.txt" else summary.read_record
    with pytest.raises(LogError, match=f"holds [0-9,]+ bytes, more than the 100 its format"):
        read(str(path))


def test_summarize_checks_run_json_and_log_rows(tmp_path, capsys):
    import summarize
    run = tmp_path / "r"
    run.mkdir()
    (run / "log.txt").write_text("Valid Acc.\t\n10.0\t\n20.0\t\n")
    cases = [("[" * 100000 + "]" * 100000, "nests deeper than JSON a run writes"),
             ("[1, 2]", "is not a run record: it holds a list"),
             ('{"recorded": [1]}', "malformed 'recorded': a list"),
             ('{"recorded": {"epochs": "many"}}', "malformed 'recorded': epochs is 'many'"),
             ("{not json", "is not a run record")]
    for text, message in cases:
        (run / "run.json").write_text(text)
        assert summarize.main([str(run), "-o", str(tmp_path / "s.png")]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    (run / "run.json").write_text('{"recorded": {"epochs": 2}}')
    (run / "log.txt").write_text("Valid Acc.\t\n10.0\t\nnan\t\n")
    assert summarize.main([str(run), "-o", str(tmp_path / "s.png")]) == 1
    assert "line 3 holds a number that is not finite" in capsys.readouterr().err


def test_summarize_counts_a_folder_named_twice_once_and_notes_an_unfinished_run(tmp_path,
                                                                                capsys):
    import summarize
    run = tmp_path / "r"
    run.mkdir()
    (run / "log.txt").write_text("Valid Acc.\t\n10.0\t\n20.0\t\n")
    (run / "run.json").write_text('{"recorded": {"arch": "resnet", "epochs": 5}}')
    os.symlink(run, tmp_path / "link")
    assert summarize.main([str(run), str(run), str(tmp_path / "link"), "-o",
                           str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert [row.split()[1] for row in out.splitlines() if row.startswith("all")] == ["1"]
    assert f"note: {run} has 2 of its 5 epochs" in out


# --- classes 4, 5, 7, 9, 10, 11, 12 -----------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--manualSeed", "-1"], "--manualSeed must be in 0 .. 9,223,372,036,854,775,807, got -1"),
    (["--manualSeed", str(2 ** 63)], "--manualSeed must be at most 9,223,372,036,854,775,807"),
    (["--train-batch", str(2 ** 40)], "--train-batch must be at most 2,147,483,647"),
    (["-j", "1000"], "--workers must be at most 256, got 1,000"),
    (["--epochs", str(2 ** 31)], "--epochs must be at most 2,147,483,647"),
    (["-a", "se_resnet", "--depth", "8", "--se-reduction", "0"],
     "--se-reduction must be at least 1, got 0"),
], ids=["seed-negative", "seed-huge", "batch-huge", "workers", "epochs-huge", "se-0"])
def test_integer_flags_stay_within_what_torch_and_the_machine_take(good, tmp_path, capsys, flags,
                                                                   message):
    argv = TINY + ["--data", good, "-c", str(tmp_path / "r")] + flags
    assert message in cifar_fails(argv, capsys, code=2)


def test_a_float_that_rounds_to_zero_is_refused(good, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cifar.main(TINY + ["--data", good, "--ema", "1e-400"])
    assert exit_info.value.code == 2
    assert "argument --ema: 1e-400 is too small to tell from 0" in capsys.readouterr().err


def test_evaluating_needs_a_trained_model_and_a_finite_one(good, trained, tmp_path, capsys):
    assert "-e evaluates a trained model: give it with --resume RUN or --weights" in cifar_fails(
        TINY + ["--data", good, "-e"], capsys, code=2)
    checkpoint = torch.load(os.path.join(trained, "checkpoint.pth.tar"), weights_only=True)
    checkpoint["state_dict"]["fc.bias"][0] = float("nan")
    path = str(tmp_path / "nan.pth.tar")
    torch.save(checkpoint, path)
    assert "the weights to evaluate are not all finite" in cifar_fails(
        ["-e", "--resume", path, "--data", good, "--no-progress"], capsys, code=1)


@pytest.mark.parametrize("names, message", [
    ([f"c{i}" for i in range(20)], "names 20 classes in label_names; the data has 10"),
    ({"a": 1}, "holds label_names of dict; expected a list of 10 class names"),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "holds label_names of list; expected a list of 10"),
], ids=["twenty", "dict", "numbers"])
def test_dataset_metadata_of_the_wrong_kind_or_count_is_refused(tmp_path, capsys, names, message):
    root = make_cifar_pickles(str(tmp_path), n_train=10, n_test=5)
    with open(os.path.join(root, "cifar-10-batches-py", "batches.meta"), "wb") as f:
        pickle.dump({"label_names": names}, f)
    for argv in (TINY + ["--data", root, "--epochs", "1", "-c", str(tmp_path / "r")],):
        assert message in cifar_fails(argv, capsys, code=1)


def test_cifar_arrays_stored_channel_last_are_refused_not_scrambled(tmp_path, capsys):
    root = make_cifar_pickles(str(tmp_path), n_train=10, n_test=5)
    path = os.path.join(root, "cifar-10-batches-py", "data_batch_1")
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": [0, 1]}, f)
    assert "its data is an array of shape (2, 32, 32, 3)" in cifar_fails(
        TINY + ["--data", root, "--epochs", "1", "-c", str(tmp_path / "r")], capsys, code=1)


def test_a_symlink_loop_in_an_image_folder_is_refused(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / "f"), splits=(("train", 2), ("test", 1)))
    os.symlink("..", os.path.join(root, "train", "a", "loop"))
    line = cifar_fails(TINY + ["--data", root, "--epochs", "1", "-c", str(tmp_path / "r")],
                       capsys, code=1)
    assert "(a symbolic link to a folder already read)" in line and "loop" in line


@pytest.mark.parametrize("header, message", [
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", "declares 3 dimensions, more sizes than"),
    (b"\x00\x00\x08\x00", "declares no dimensions"),
    (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x09" + b"\x01" * 4, "says 9 values of 1 bytes"),
], ids=["short-header", "no-dims", "wrong-size"])
def test_idx_headers_are_checked_against_the_file(tmp_path, capsys, header, message):
    root = make_idx_dataset(str(tmp_path), "MNIST", gz=False)
    open(os.path.join(root, "MNIST", "raw", "train-labels-idx1-ubyte"), "wb").write(header)
    assert message in cifar_fails(TINY + ["-d", "mnist", "--data", root, "--epochs", "1", "-c",
                                          str(tmp_path / "r")], capsys, code=1)


@pytest.mark.parametrize("flags, message", [
    (["--tta", "flip"], "--tta flip: the checkpoint's log was written with --tta none"),
    (["--train-batch", "4"], "--train-batch 4: the checkpoint was trained with --train-batch 8"),
    (["--manualSeed", "9"], "--manualSeed 9: the checkpoint was trained with --manualSeed 2"),
    (["--schedule", "1", "2"], "--schedule 1 2: the checkpoint was trained with --schedule 150 "
                               "225"),
    (["--depth", "14"], "--depth 14: the checkpoint was trained with --depth 8"),
], ids=["tta", "train-batch", "seed", "schedule", "depth"])
def test_a_recorded_flag_a_resume_cannot_apply_is_refused(good, trained, capsys, flags, message):
    line = cifar_fails(["--data", good, "--resume", trained, "--epochs", "3"] + flags, capsys,
                       code=2)
    assert message in line


def test_a_resume_without_the_ema_is_refused(good, tmp_path, capsys):
    run = str(tmp_path / "ema")
    cifar.main(TINY + ["--data", good, "--epochs", "1", "-c", run, "--ema", "0.9"])
    assert "--ema 0: the checkpoint keeps an average of the weights" in cifar_fails(
        ["--data", good, "--resume", run, "--epochs", "2", "--ema", "0"], capsys, code=2)


def test_a_new_lr_on_resume_is_applied_and_recorded_from_its_epoch(good, trained, tmp_path):
    import json
    run = copy_run(trained, tmp_path / "run")
    cifar.main(["--data", good, "--resume", run, "--epochs", "2", "--lr", "0.5", "--momentum",
                "0.5", "--no-progress"])
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert rows[0][0] == pytest.approx(0.1) and rows[1][0] == pytest.approx(0.5)
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert saved["optimizer"]["param_groups"][0]["momentum"] == 0.5
    with open(os.path.join(run, "run.json")) as f:
        session = json.load(f)["sessions"][-1]
    assert session["changed"] == {"epochs": {"from": 1, "to": 2, "from_epoch": 2},
                                  "lr": {"from": 0.1, "to": 0.5, "from_epoch": 2},
                                  "momentum": {"from": 0.9, "to": 0.5, "from_epoch": 2}}


# --- class 8: the helper tools answer as the scripts do ---------------------------------------

def helper(script, argv):
    return subprocess.run([sys.executable, os.path.join(REPO, script)] + argv, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script, argv, code, message", [
    ("bench.py", ["step", "-a", "resnt", "--depth", "8", "--device", "cpu"], 2,
     "error: unknown architecture 'resnt'; did you mean resnet"),
    ("bench.py", ["step", "-a", "resnet", "--depth", "8", "--batch", "0"], 2,
     "argument --batch: must be from 1 to"),
    ("bench.py", ["pipeline", "cifar", "--windows", "0"], 2, "argument --windows: must be from 1"),
    ("bench.py", ["fold", "-a", "resnet", "--depth", "21"], 2, "needs depth = 6n+2"),
    ("plot.py", ["nowhere/log.txt", "-o", "x.png"], 1, "error: no log at nowhere/log.txt"),
    ("summarize.py", ["--group", "A=nowhere-*", "-o", "x.png"], 1, "no run folder matches"),
    ("export.py", ["--resume", "nowhere", "-o", "x.pt2"], 1, "no checkpoint found at nowhere"),
])
def test_the_helper_tools_answer_a_bad_input_in_one_line(script, argv, code, message):
    result = helper(script, argv)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith(
        ("error:", f"{script}: error:", "usage:"))]) <= 2


def test_export_of_a_checkpoint_whose_args_are_damaged_is_one_line(trained, tmp_path, capsys):
    import export
    path = damaged_checkpoint(trained, tmp_path, args={"depth": "eight"})
    code, line = one_line_failure(export.main, ["--resume", path, "-o",
                                                str(tmp_path / "m.pt2")], capsys)
    assert code == 1 and "malformed 'args': depth is 'eight'" in line


@pytest.mark.parametrize("flags, message", [
    (["--norm", "bcn", "--bcn-speed", "0.5"], "--bcn-speed is the speed of the estimates"),
    (["--start-epoch", "2", "--resume", "RUN"], "--start-epoch with --resume"),
], ids=["bcn-speed", "start-epoch"])
def test_a_flag_that_cannot_act_is_refused(good, trained, capsys, flags, message):
    flags = [trained if f == "RUN" else f for f in flags]
    model = [] if "--resume" in flags else ["-a", "resnet", "--depth", "8"]
    line = cifar_fails(model + ["--data", good, "--epochs", "3"] + flags, capsys, code=2)
    assert message in line


def test_export_never_writes_through_a_link_to_the_checkpoint(trained, tmp_path, capsys):
    import export
    from utils.cli import run_main
    link = tmp_path / "model.pt2"
    link.symlink_to(os.path.join(trained, "checkpoint.pth.tar"))
    before = open(os.path.join(trained, "checkpoint.pth.tar"), "rb").read()
    with pytest.raises(SystemExit) as exit_info:
        run_main(export.main, ["--resume", trained, "-o", str(link), "--replace"])
    assert exit_info.value.code == 2
    assert "would write over a checkpoint" in capsys.readouterr().err
    assert open(os.path.join(trained, "checkpoint.pth.tar"), "rb").read() == before
