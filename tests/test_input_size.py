"""imagenet.py's input size, filter and normalisation (--train-crop-size, --val-resize-size,
--val-crop-size, --interpolation, --mean, --std): on every decode path, recorded in the
checkpoint, and used again by -e and export.py; each bad value one line."""
import json
import os

import pytest
import torch

import export
import imagenet
from builders import make_image_folder, one_line_failure
from utils.session.stages import read_settings

SIZES = ["--train-crop-size", "48", "--val-resize-size", "56", "--val-crop-size", "40",
         "--interpolation", "bicubic", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25",
         "0.25"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_image_folder(str(tmp_path_factory.mktemp("sizes") / "data"),
                             splits=(("train", 2), ("val", 1)), size=(80, 60), ext="jpg")


@pytest.mark.parametrize("decode", ["cpu", "pil", "device"])
def test_every_decode_path_cuts_the_sizes_asked_and_normalises_with_the_stats_given(tree,
                                                                                      decode):
    settings = read_settings(imagenet.imagenet_flags(), ["--data", tree, "-j", "0", "--decode",
                                                         decode] + SIZES).settings
    assert settings.data.views.train_crop == 48 and settings.data.views.mean == (0.5, 0.5, 0.5)
    _, loaders = imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 1, False)
    loaders.train.set_epoch(0)
    x, _ = next(iter(loaders.train))
    assert x.shape[1:] == (3, 48, 48)
    x, _ = next(iter(loaders.test))
    assert x.shape[1:] == (3, 40, 40)
    # (pixel / 255 - 0.5) / 0.25 lies in [-2, 2] (bicubic may overshoot a little on the device)
    assert -2.2 <= x.min() and x.max() <= 2.2 and x.min() < -0.5 < 0.5 < x.max()


def test_a_64_px_run_is_evaluated_and_exported_at_64_px(tree, tmp_path):
    run = str(tmp_path / "run")
    sizes = ["--train-crop-size", "64", "--val-resize-size", "72", "--val-crop-size", "64"]
    imagenet.main(["-a", "shufflenet_v2_x0_5", "--data", tree, "-j", "0", "--no-progress",
                   "--epochs", "1", "--train-batch", "3", "--test-batch", "3", "-c", run] + sizes)
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert (saved["args"]["train_crop_size"], saved["args"]["val_crop_size"]) == (64, 64)
    evaluated = read_settings(imagenet.imagenet_flags(), ["-e", "--resume", run, "--data",
                                                          tree]).settings
    assert (evaluated.data.views.val_resize, evaluated.data.views.val_crop) == (72, 64)
    imagenet.main(["-e", "--resume", run, "--data", tree, "-j", "0", "--no-progress"])
    path = str(tmp_path / "m.pt2")
    assert export.main(["--resume", run, "-o", path]) == 0
    files = {"metadata.json": ""}
    program = torch.export.load(path, extra_files=files)
    metadata = json.loads(files["metadata.json"])
    assert metadata["input"] == [3, 64, 64] and metadata["resize"] == 72
    assert metadata["mean"] == [0.485, 0.456, 0.406]
    assert program.module()(torch.randn(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("flags, message", [
    (["--val-crop-size", "300"], "--val-crop-size 300 is larger than --val-resize-size 256"),
    (["--train-crop-size", "0"], "--train-crop-size must be at least 1, got 0"),
    (["--val-resize-size", "-5"], "--val-resize-size must be at least 1, got -5"),
    (["--std", "0.2", "0", "0.2"], "--std must be positive, got 0.0"),
])
def test_each_bad_size_is_one_line(tree, tmp_path, capsys, flags, message):
    code, line = one_line_failure(imagenet.main, ["--data", tree, "-c", str(tmp_path / "r")]
                                  + flags, capsys)
    assert code == 2 and message in line, line
