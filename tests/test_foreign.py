"""The BCN authors' ImageNet checkpoints (utils/train/foreign.py) load into
`-a resnet18 --norm bcn --ws --ws-form var` and score as their arithmetic does.

The checkpoint is written here from the form described in utils/train/foreign.py (their key
names and shapes: DataParallel's module., the batch part under pbn. with an
estbn_moving_speed buffer, the group affine (1, G, 1)), and their forward is written here
independently: WS as (W - mean) / sqrt(var + 1e-5), the batch part with its running
statistics, then per sample and group (x - mean) / sqrt(var + 1e-5) and the (1, G, 1) affine."""
import os
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import imagenet
from builders import make_image_folder, one_line_failure
from models.imagenet import TORCHVISION_MODELS
from models.norms import BatchChannelNorm2d
from utils.scripts import imagenet_flags
from utils.session.build import build_model, load_initial_weights
from utils.session.stages import read_settings

CLASSES = 3


class TheirConv(nn.Conv2d):
    def forward(self, x):
        w = self.weight
        flat = (w - w.mean(dim=(1, 2, 3), keepdim=True)).flatten(1)
        scale = torch.sqrt(flat.var(dim=1) + 1e-5).view(-1, 1, 1, 1)
        return F.conv2d(x, (w - w.mean(dim=(1, 2, 3), keepdim=True)) / scale, self.bias,
                        self.stride, self.padding, self.dilation, self.groups)


class TheirBCN(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(1, groups, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1))
        self.pbn = nn.BatchNorm2d(channels)
        self.pbn.register_buffer("estbn_moving_speed", torch.zeros(1))

    def forward(self, x):
        out = self.pbn(x).reshape(x.shape[0], self.groups, -1)
        mean = out.mean(dim=2, keepdim=True)
        var = out.var(dim=2, unbiased=False, keepdim=True)
        out = self.weight * ((out - mean) / torch.sqrt(var + 1e-5)) + self.bias
        return out.view_as(x)


def their_resnet18(seed):
    """torchvision's resnet18 with their layers in place of conv and BatchNorm (their module
    names are torchvision's), random weights and statistics, conv weights of std 0.01."""
    torch.manual_seed(seed)
    model = TORCHVISION_MODELS["resnet18"](num_classes=CLASSES)
    for name, module in list(model.named_modules()):
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        leaf = name.rpartition(".")[2]
        if isinstance(module, nn.Conv2d):
            conv = TheirConv(module.in_channels, module.out_channels, module.kernel_size,
                             module.stride, module.padding, bias=False)
            nn.init.normal_(conv.weight, std=0.01)
            setattr(parent, leaf, conv)
        elif isinstance(module, nn.BatchNorm2d):
            norm = TheirBCN(module.num_features, 32)
            with torch.no_grad():
                for t in (norm.weight, norm.bias, norm.pbn.weight, norm.pbn.bias):
                    t.uniform_(0.5, 1.5) if t is not norm.bias else t.uniform_(-0.1, 0.1)
                norm.pbn.running_mean.uniform_(-0.01, 0.01)
                norm.pbn.running_var.uniform_(0.5, 2.0)
            setattr(parent, leaf, norm)
    return model.eval()


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("authors")
    model = their_resnet18(0)
    path = str(root / "model_best.pth.tar")
    # their imagenet.py's checkpoint: the DataParallel-wrapped state_dict and its fields
    torch.save({"epoch": 90, "arch": "l_resnet18", "best_acc1": 0.0, "optimizer": {},
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    data = make_image_folder(str(root / "data"), splits=(("train", 1), ("val", 2)),
                             classes=("a", "b", "c"), size=(64, 48), ext="jpg")
    return model, path, data


def their_loss(model, loader):
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += F.cross_entropy(model(x), y, reduction="sum").item()
            count += len(y)
    return total / count


ARGV = ["-a", "resnet18", "--norm", "bcn", "--ws"]


def test_the_authors_checkpoint_loads_and_scores_as_their_arithmetic(theirs, capsys):
    model, path, data = theirs
    settings = read_settings(imagenet_flags(), ARGV + ["--ws-form", "var", "--data", data, "-e",
                                                       "--weights", path, "-j", "0"]).settings
    _, loaders = imagenet.imagenet_loaders(settings.data, torch.device("cpu"), 0, False)
    expected = their_loss(model, loaders.test)
    imagenet.main(ARGV + ["--ws-form", "var", "--data", data, "-e", "--weights", path, "-j",
                          "0", "--no-progress", "-c", os.path.dirname(path) + "/eval"])
    out = capsys.readouterr().out
    assert "(the BCN authors' form: pbn. keys and (1, G, 1) affines mapped" in out
    loss = float(re.search(r"Test Loss:\s+([\d.]+)", out).group(1))
    assert loss == pytest.approx(expected, abs=1e-5)
    # Under the default WS form the same weights score measurably otherwise: the form matters.
    imagenet.main(ARGV + ["--data", data, "-e", "--weights", path, "-j", "0", "--no-progress",
                          "-c", os.path.dirname(path) + "/eval-std"])
    other = float(re.search(r"Test Loss:\s+([\d.]+)", capsys.readouterr().out).group(1))
    assert abs(other - expected) > 1e-3


def test_every_tensor_lands_where_it_belongs(theirs):
    model, path, _ = theirs
    settings = read_settings(imagenet_flags(), ARGV + ["--ws-form", "var", "--data",
                                                       "d"]).settings
    ours = build_model(TORCHVISION_MODELS, settings.model, CLASSES)
    loaded = load_initial_weights(ours, path, CLASSES)
    assert loaded.form.startswith("the BCN authors' form")
    theirs_state = model.state_dict()
    for name, module in ours.named_modules():
        if isinstance(module, BatchChannelNorm2d):
            assert torch.equal(module.weight, theirs_state[f"{name}.weight"].reshape(-1))
            assert torch.equal(module.bn.running_var, theirs_state[f"{name}.pbn.running_var"])


def test_their_estimate_speed_is_checked_where_micro_batches_use_it(theirs, tmp_path, capsys):
    model, path, data = theirs
    state = torch.load(path, weights_only=True)
    state["state_dict"] = {k: (torch.full((1,), 0.05) if k.endswith("estbn_moving_speed")
                               else v) for k, v in state["state_dict"].items()}
    fast = str(tmp_path / "fast.pth.tar")
    torch.save(state, fast)
    code, line = one_line_failure(imagenet.main, ARGV + [
        "--ws-form", "var", "--ghost-batch", "2", "--weights", fast, "--data", data, "-j", "0",
        "-c", str(tmp_path / "run")], capsys)
    assert code == 2 and "estimate speed of 0.05" in line and "--bcn-speed 0.05" in line
    settings = read_settings(imagenet_flags(), ARGV + ["--ws-form", "var", "--ghost-batch",
                                                       "2", "--bcn-speed", "0.05",
                                                       "--data", data]).settings
    ours = build_model(TORCHVISION_MODELS, settings.model, CLASSES)
    assert load_initial_weights(ours, fast, CLASSES).form.startswith("the BCN authors' form")


def test_the_two_ws_forms_are_their_formulas_and_differ_at_small_weights():
    from models.layers import standardize_weight
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64) * 0.01
    flat = w.flatten(1)
    centred = w - flat.mean(1).view(-1, 1, 1, 1)
    std_form = centred / (flat.std(1) + 1e-5).view(-1, 1, 1, 1)
    var_form = centred / torch.sqrt(flat.var(1) + 1e-5).view(-1, 1, 1, 1)
    torch.testing.assert_close(standardize_weight(w), std_form, rtol=0, atol=1e-12)
    torch.testing.assert_close(standardize_weight(w, form="var"), var_form, rtol=0, atol=1e-12)
    assert ((std_form - var_form).abs().max() / std_form.abs().max()) > 0.02


def test_the_ws_form_is_recorded_rebuilt_and_folded(tmp_path, capsys):
    import cifar
    import export
    from builders import make_cifar_pickles
    from models.deploy import fold_weight_standardization
    from models.layers import WSConv2d
    from utils.session.trained import load_trained
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    cifar.main(["-a", "resnet", "--depth", "8", "--norm", "bcn", "--ws", "--ws-form", "var",
                "--data", data, "--epochs", "1", "--train-batch", "8", "--no-progress", "-c",
                run])
    saved = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    assert saved["args"]["ws_form"] == "var"
    resumed = read_settings(cifar.cifar_flags(), ["--resume", run, "--data", data]).settings
    assert resumed.model.options["ws_form"] == "var"
    model = load_trained(run).model
    convs = [m for m in model.modules() if isinstance(m, WSConv2d)]
    assert convs and all(m.form == "var" for m in convs)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fold_weight_standardization(model)(x), model(x), atol=1e-5,
                                   rtol=0)
    assert export.main(["--resume", run, "-o", str(tmp_path / "m.pt2")]) == 0
    code, line = one_line_failure(cifar.main, ["-a", "resnet", "--depth", "8", "--ws-form",
                                               "var", "--data", data], capsys)
    assert code == 2 and "--ws-form applies to --ws" in line
