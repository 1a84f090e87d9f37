"""imagenet.py on a generated ImageFolder of small JPEGs: our GN+WS models and torchvision's."""
import os

import pytest
import torch

import imagenet
from builders import make_image_folder, read_log_rows
from utils.settings.flag import UsageError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    # Sizes differ on purpose: the crops make every batch 224x224.
    return make_image_folder(str(tmp_path_factory.mktemp("inet")),
                             splits=(("train", 3), ("val", 2)), size=[(40, 32), (56, 64)],
                             ext="jpg")


@pytest.mark.parametrize("arch, flags", [("l_resnet18", []), ("mobilenet_v3_small", []),
                                         ("l_resnet18", ["--amp", "bf16", "--channels-last"])],
                         ids=["l_resnet18", "mobilenet_v3_small", "l_resnet18-bf16-nhwc"])
def test_one_epoch(arch, flags, tree, tmp_path):
    run = str(tmp_path / "run")
    imagenet.main(["-a", arch, "--data", tree, "--epochs", "1", "-j", "0", "--train-batch", "3",
                   "--test-batch", "4", "-c", run, "--no-progress", "--manualSeed", "1"] + flags)
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 1 and 0 <= rows[0][4] <= 100
    assert os.path.isfile(os.path.join(run, "model_best.pth.tar"))


def test_weights_from_a_checkpoint_and_pretrained_errors(tree, tmp_path):
    run = str(tmp_path / "run")
    imagenet.main(["-a", "l_resnet18", "--data", tree, "--epochs", "1", "-j", "0",
                   "--train-batch", "6", "-c", run, "--no-progress"])
    imagenet.main(["-a", "l_resnet18", "--data", tree, "-e", "-j", "0", "--no-progress",
                   "--weights", os.path.join(run, "checkpoint.pth.tar"),
                   "-c", str(tmp_path / "evaluated")])  # its per-class report goes there
    assert os.path.isfile(tmp_path / "evaluated" / "per_class_accuracy.txt")
    with pytest.raises(UsageError, match="missing keys: .*running_mean"):
        # GN keys into torchvision's BN resnet18: refused, with the keys named.
        imagenet.main(["-a", "resnet18", "--data", tree, "-e", "-j", "0", "--no-progress",
                       "--weights", os.path.join(run, "checkpoint.pth.tar")])
    with pytest.raises(UsageError, match="--pretrained takes torchvision weights"):
        imagenet.main(["-a", "l_resnet50", "--pretrained", "--data", tree, "-e", "-j", "0"])


PAIRS = [(norm, ws) for norm in ("bn", "gn", "ln", "in", "bcn") for ws in (False, True)]


@pytest.mark.parametrize("norm, ws", PAIRS, ids=[f"{n}{'+ws' if w else ''}" for n, w in PAIRS])
def test_a_torchvision_model_trains_resumes_and_evaluates_with_every_pair(tree, tmp_path, norm,
                                                                          ws):
    """A torchvision model (ShuffleNet V2 0.5x: small, BatchNorm after every conv) with the pair
    put in by the converter (models/convert.py)."""
    run = str(tmp_path / "run")
    common = ["--data", tree, "-j", "0", "--no-progress", "--test-batch", "6"]
    options = ["--ghost-batch", "1"] if norm == "bcn" and ws else []  # at the default groups
    imagenet.main(["-a", "shufflenet_v2_x0_5", "--norm", norm, "--ws" if ws else "--no-ws", "--epochs",
                   "1", "--train-batch", "3", "--manualSeed", "1", "-c", run] + options + common)
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert (saved["args"]["norm"], saved["args"]["ws"]) == (norm, ws)
    assert any("running_mean" in k for k in saved["state_dict"]) == (norm in ("bn", "bcn"))
    imagenet.main(["--resume", run, "--epochs", "2"] + common)
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 2
    imagenet.main(["-e", "--resume", run] + common)


def test_weights_that_do_not_fit_are_refused_before_the_images_are_listed(tree, tmp_path,
                                                                         capsys):
    run = str(tmp_path / "run")
    imagenet.main(["-a", "l_resnet18", "--data", tree, "--epochs", "1", "-j", "0",
                   "--train-batch", "6", "-c", run, "--no-progress"])
    capsys.readouterr()
    with pytest.raises(UsageError, match="does not fit the model"):
        imagenet.main(["-a", "resnet18", "--data", tree, "--epochs", "1", "-j", "0",
                       "--weights", os.path.join(run, "checkpoint.pth.tar"),
                       "-c", str(tmp_path / "other")])
    assert "Preparing" not in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "other")  # and no run folder left behind


def test_evaluating_a_resumed_run_decodes_as_the_run_did(tree, tmp_path, capsys):
    run = str(tmp_path / "run")
    imagenet.main(["-a", "shufflenet_v2_x0_5", "--data", tree, "--epochs", "1", "-j", "0",
                   "--train-batch", "6", "--decode", "pil", "-c", run, "--no-progress"])
    capsys.readouterr()
    imagenet.main(["-e", "--resume", run, "-j", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert "==> --resume: --decode pil, as the run did" in out
    assert "Loaders: --decode pil" in out
