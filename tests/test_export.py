"""Deployment: WS folded into plain convolutions gives the WS model's outputs; export.py writes
it with torch.export or as a state_dict that loads into the plain-conv twin."""
import json
import os

import pytest
import torch
import torch.nn as nn

import cifar
import export
import models
from builders import TINY_MODEL, make_cifar_pickles, one_line_failure, tiny_run
from models.deploy import fold_weight_standardization, plain_convs
from models.layers import WSConv2d
from utils.cli import run_main
from utils.train.checkpoint import load_weights


@pytest.mark.parametrize("arch, options", [("l_resnet", {"depth": 8}),
                                           ("l_resnext", {"depth": 11, "cardinality": 2,
                                                          "widen_factor": 1}),
                                           ("l_pyramidnet", {"depth": 20, "alpha": 24})])
def test_folding_keeps_the_outputs_and_drops_every_standardization(arch, options):
    torch.manual_seed(0)
    model = models.cifar.MODELS[arch](**options).eval()
    for p in model.parameters():  # trained-looking weights, not the init's
        p.data.add_(0.1 * torch.randn_like(p))
    folded = fold_weight_standardization(model)
    assert not any(isinstance(m, WSConv2d) for m in folded.modules())
    assert any(isinstance(m, WSConv2d) for m in model.modules())  # the original is untouched
    assert folded.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_cifar_pickles(str(root / "d"), n_train=16, n_test=8)
    run = str(root / "run")
    cifar.main(TINY_MODEL + tiny_run(seed=3, train_batch=8) + ["--data", data, "--epochs", "1",
                                                               "-c", run, "--ema", "0.9"])
    model = models.cifar.MODELS["l_resnet"](depth=8, gn_groups=8)  # cifar.py's default G
    load_weights(model, os.path.join(run, "checkpoint.pth.tar"))
    return run, model.eval()


def test_export_writes_a_program_with_the_ws_outputs(trained, tmp_path):
    run, model = trained
    path = str(tmp_path / "m.pt2")
    assert export.main(["--resume", run, "-o", path]) == 0
    program = torch.export.load(path).module()
    for batch in (1, 7):  # the batch dimension is dynamic
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), atol=1e-5, rtol=0)


def test_export_state_dict_loads_into_the_plain_conv_twin(trained, tmp_path):
    run, model = trained
    path = str(tmp_path / "m.pth")
    assert export.main(["--resume", run, "-o", path, "--format", "state_dict"]) == 0
    described = json.load(open(path + ".json"))
    assert described["options"] == {"depth": 8, "gn_groups": 8, "gn_narrow": "pairs",
                                    "ws_form": "std", "block_name": "BasicBlock",
                                    "zero_init_residual": False}
    # What the sidecar says rebuilds it: GroupNorm's groups leave no trace in the weights.
    twin = plain_convs(models.cifar.MODELS[described["arch"]](
        num_classes=described["num_classes"], **described["options"]))
    assert not any(isinstance(m, WSConv2d) for m in twin.modules())
    twin.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(x), model(x), atol=1e-5, rtol=0)


def test_export_of_the_ema_uses_the_averaged_weights(trained, tmp_path):
    run, model = trained
    path = str(tmp_path / "ema.pth")
    assert export.main(["--resume", run, "--ema", "-o", path, "--format", "state_dict"]) == 0
    ema = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["ema_state_dict"]
    raw = model.state_dict()
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved["fc.bias"], ema["module.fc.bias"])
    assert not torch.equal(saved["fc.bias"], raw["fc.bias"])


def test_export_failures_are_one_line(trained, tmp_path, capsys):
    run, _ = trained
    assert "no checkpoint found" in one_line_failure(
        export.main, ["--resume", str(tmp_path / "none"), "-o", str(tmp_path / "x.pt2")],
        capsys)[1]
    bare = str(tmp_path / "bare.pth")
    torch.save(nn.Linear(2, 2).state_dict(), bare)
    assert "records no architecture" in one_line_failure(
        export.main, ["--resume", bare, "-o", str(tmp_path / "x.pt2")], capsys)[1]
    assert "cannot write" in one_line_failure(
        export.main, ["--resume", run, "-o", str(tmp_path / "missing" / "x.pt2")], capsys)[1]


@pytest.mark.parametrize("norm", ["bn", "gn", "ln", "in", "bcn"])
def test_export_folds_ws_for_every_pair_that_has_it(tmp_path, norm):
    """A run of any norm with --ws exports with WS folded; the program gives its outputs."""
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    micro = ["--ghost-batch", "4"] if norm == "bcn" else []
    cifar.main(["-a", "resnet", "--depth", "8", "--norm", norm, "--ws", "--data", data,
                "--epochs", "1", "-c", run] + micro + tiny_run(seed=3, train_batch=8))
    path = str(tmp_path / "m.pt2")
    assert export.main(["--resume", run, "-o", path]) == 0
    model = models.cifar.resnet(depth=8, norm=norm, ws=True, gn_groups=8)  # cifar.py's G
    load_weights(model, os.path.join(run, "checkpoint.pth.tar"))
    program = torch.export.load(path).module()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model.eval()(x), atol=1e-5, rtol=0)
    assert not any(isinstance(m, WSConv2d) for m in program.modules())


def test_an_export_says_what_the_model_is_and_names_its_classes(trained, tmp_path):
    run, _ = trained
    path = str(tmp_path / "m.pt2")
    assert export.main(["--resume", run, "-o", path]) == 0
    files = {"metadata.json": ""}
    torch.export.load(path, extra_files=files)
    metadata = json.loads(files["metadata.json"])
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert metadata["classes"] == saved["classes"] and len(metadata["classes"]) == 10
    assert metadata["input"] == [3, 32, 32] and metadata["arch"] == "l_resnet"
    weights = str(tmp_path / "m.pth")
    assert export.main(["--resume", run, "-o", weights, "--format", "state_dict"]) == 0
    with open(weights + ".json") as f:
        assert json.load(f) == metadata
    with pytest.raises(SystemExit) as exit_info:  # the file beside it is not replaced unasked
        run_main(export.main, ["--resume", run, "-o", weights, "--format",
                                      "state_dict"])
    assert exit_info.value.code == 2


def test_a_checkpoint_from_before_class_names_exports_them_as_unknown(trained, tmp_path):
    run, _ = trained
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    del saved["classes"]
    old = str(tmp_path / "old.pth.tar")
    torch.save(saved, old)
    weights = str(tmp_path / "m.pth")
    assert export.main(["--resume", old, "-o", weights, "--format", "state_dict"]) == 0
    with open(weights + ".json") as f:
        assert json.load(f)["classes"] is None


def documented_snippet() -> str:
    """The python block of docs/deployment.md that runs an exported program."""
    import re
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "deployment.md")).read()
    section = text.split("### Running an exported program yourself", 1)[1].split("\n### ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return snippet


@pytest.mark.parametrize("size", [(32, 32), (50, 37)], ids=["32x32", "other-size"])
def test_the_documented_snippet_runs_an_export_and_agrees_with_predict(trained, tmp_path, size,
                                                                      capsys):
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    import predict
    run, _ = trained
    program = str(tmp_path / "m.pt2")
    export.main(["--resume", run, "-o", program])
    photo = str(tmp_path / "cat.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (*size[::-1], 3), np.uint8)).save(
        photo)
    snippet = documented_snippet().replace("checkpoints/cifar10/l_resnet-20.pt2", program)
    snippet = snippet.replace("photos/cat.jpg", photo)
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    name, probability = done.stdout.split()
    capsys.readouterr()
    predict.main(["--model", program, photo, "--topk", "1"])
    expected = capsys.readouterr().out.strip()  # PATH: CLASS P
    top_class, top_probability = expected.rsplit(": ", 1)[1].split()
    assert name == top_class and abs(float(probability) - float(top_probability)) < 2e-3, (
        done.stdout, expected)
    with pytest.raises(NotImplementedError):  # as the page says: torch refuses .eval() on it
        torch.export.load(program).module().eval()
