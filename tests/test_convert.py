"""Specification of the converter (models/convert.py): torchvision's networks with a chosen
(conv, norm) pair, the pairs read from the traced graph."""
import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.ops import SqueezeExcitation
from torchvision.ops.misc import Conv2dNormActivation

from models import imagenet
from models.convert import ConversionError, convert_pair, ws_pairs
from models.layers import WSConv2d
from models.norms import BatchChannelNorm2d, NormChoice


def conv_then_norm_count(model):
    """The convs a norm follows, counted from torchvision's own building blocks (independently
    of the graph): a ResNet block's conv_i/bn_i and downsample.0/.1, or Conv2dNormActivation."""
    count = 0
    for m in model.modules():
        if isinstance(m, Conv2dNormActivation) and isinstance(m[1], nn.BatchNorm2d):
            count += 1
        elif isinstance(m, (torchvision.models.resnet.Bottleneck,)):
            count += 3 + (m.downsample is not None)
    if isinstance(model, torchvision.models.ResNet):
        count += 1  # conv1 -> bn1
    return count


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d", "mobilenet_v3_large",
                                  "regnet_y_400mf", "efficientnet_b0"])
def test_ws_goes_on_every_conv_a_norm_follows_and_nowhere_else(arch):
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, num_classes=10)
    keys = set(model.state_dict())
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    se_convs = {f"{n}.{c}" for n, m in model.named_modules() if isinstance(m, SqueezeExcitation)
                for c in ("fc1", "fc2")}
    bns = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    done = convert_pair(model, NormChoice("gn"), ws=True, name=arch)  # the default groups
    assert len(done.ws_convs) == conv_then_norm_count(torchvision.models.get_model(
        arch, num_classes=10)) and len(done.norms) == bns
    # Squeeze-and-excitation convs feed an activation, not a norm: left plain.
    standardized = {n for n, m in model.named_modules() if isinstance(m, WSConv2d)}
    assert standardized == set(done.ws_convs) and not standardized & se_convs
    if arch.startswith("res"):
        assert standardized == convs  # every ResNet conv is followed by its norm
    else:
        assert se_convs and standardized == convs - se_convs
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    # torchvision's module names, so its checkpoints' keys (less BN's statistics).
    assert set(model.state_dict()) == {k for k in keys if "running_" not in k
                                       and "num_batches_tracked" not in k}
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_resnet50_with_gn_and_ws_is_our_l_resnet50():
    torch.manual_seed(0)
    converted = imagenet.ARCHS["resnet50"](norm="gn", ws=True)
    ours = imagenet.l_resnet50()
    assert {k: v.shape for k, v in converted.state_dict().items()} == \
        {k: v.shape for k, v in ours.state_dict().items()}
    ours.load_state_dict(converted.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), ours(x), rtol=1e-4, atol=1e-4)


def test_norm_only_and_ws_only():
    model = torchvision.models.resnet18(num_classes=10)
    done = convert_pair(model, NormChoice("bcn"), ws=False)
    assert done.ws_convs == () and len(done.norms) == 20
    assert sum(isinstance(m, BatchChannelNorm2d) for m in model.modules()) == 20
    assert not any(isinstance(m, WSConv2d) for m in model.modules())
    model = torchvision.models.resnet18(num_classes=10)
    convert_pair(model, NormChoice("bn"), ws=True)  # BN+WS: the norms stay
    assert sum(isinstance(m, WSConv2d) for m in model.modules()) == 20
    assert sum(type(m) is nn.BatchNorm2d for m in model.modules()) == 20


def test_a_conv_reused_without_a_norm_after_one_call_stays_plain():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)) + self.conv(x).relu()

    assert ws_pairs(Shared()) == []


def test_refusals_name_the_model():
    with pytest.raises(ConversionError, match="squeezenet1_0 has no BatchNorm2d layer for --norm "
                                              "gn to replace"):
        imagenet.ARCHS["squeezenet1_0"](norm="gn")
    with pytest.raises(ConversionError, match="vit_b_16 has no conv directly followed by a norm"):
        imagenet.ARCHS["vit_b_16"](ws=True)

    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:  # control flow on a value: fx cannot trace it
                return self.bn(self.conv(x))
            return self.conv(x)

    with pytest.raises(ConversionError, match="toy cannot be traced by torch.fx"):
        convert_pair(Untraceable(), NormChoice("gn", gn_groups=2), ws=True, name="toy")


def test_a_torchvision_model_keeps_its_own_layers_without_the_flags():
    model = imagenet.ARCHS["resnet18"](num_classes=10)
    assert sum(type(m) is nn.BatchNorm2d for m in model.modules()) == 20
    assert not any(isinstance(m, WSConv2d) for m in model.modules())


# Too big for the CPU suite (their conversion is the same code as their family's).
GIANTS = {"vit_h_14", "regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "regnet_y_16gf"}
# torchvision's networks with no BatchNorm2d for --norm to replace and no conv a norm follows for
# --ws: their norms are LayerNorms (transformers, ConvNeXt) or there are none (AlexNet, VGG
# without _bn, SqueezeNet). docs/models.md ("How GN+WS is built") lists them.
WITHOUT_BATCH_NORM = ({"alexnet", "squeezenet1_0", "squeezenet1_1", "vgg11", "vgg13", "vgg16",
                       "vgg19"} | {n for n in imagenet.TORCHVISION_MODELS
                                  if n.startswith(("convnext", "swin", "vit"))})


def built(arch, norm):
    """torchvision's ``arch`` converted to ``norm`` + WS at the default --gn-groups: on the meta
    device (shapes only), but for RegNets, whose initialisation reads values."""
    constructor = imagenet.TORCHVISION_MODELS[arch]
    if arch.startswith("regnet"):
        return constructor(num_classes=10, norm=norm, ws=True)
    with torch.device("meta"):
        return constructor(num_classes=10, norm=norm, ws=True)


@pytest.mark.parametrize("norm", ["gn", "bcn"])
def test_every_torchvision_model_converts_at_the_default_groups(norm):
    """What `imagenet.py -a ARCH --norm gn --ws` (and bcn) builds at the default --gn-groups 32:
    every BatchNorm2d replaced, every width accepted; the networks without batch norms refused
    in one line saying why."""
    refused = {}
    for arch in sorted(set(imagenet.TORCHVISION_MODELS) - GIANTS):
        try:
            model = built(arch, norm)
        except ConversionError as e:
            refused[arch] = str(e)
            continue
        kind = nn.GroupNorm if norm == "gn" else BatchChannelNorm2d
        new = sum(isinstance(m, kind) for m in model.modules())
        left = sum(type(m) is nn.BatchNorm2d for m in model.modules())
        assert new and left == (new if norm == "bcn" else 0), arch  # bcn's batch part is a BN
        assert any(isinstance(m, WSConv2d) for m in model.modules()), arch
    assert set(refused) == WITHOUT_BATCH_NORM - GIANTS, sorted(refused)
    for arch, line in refused.items():
        assert line.startswith(arch) and ("no conv directly followed by a norm" in line
                                          or "no BatchNorm2d layer" in line), line


FAMILIES = ["resnet18", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2",
            "mobilenet_v3_small", "efficientnet_b0", "mnasnet0_5", "regnet_y_400mf",
            "shufflenet_v2_x0_5", "densenet121", "maxvit_t"]


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("norm", ["gn", "bcn"])
def test_one_network_of_each_family_trains_a_step_converted_at_the_defaults(arch, norm):
    torch.manual_seed(0)
    model = imagenet.TORCHVISION_MODELS[arch](num_classes=10, norm=norm, ws=True).train()
    size = 224 if arch == "maxvit_t" else 64  # MaxViT's windows need 224
    x, y = torch.randn(2, 3, size, size), torch.tensor([1, 7])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("arch", ["resnet18", "resnext50_32x4d"])
@pytest.mark.parametrize("pair", [("bn", False), ("gn", True), ("bcn", True)])
def test_zero_init_residual_zeroes_each_branchs_last_norm_converted_or_not(arch, pair):
    """torchvision's meaning: the last norm of every residual branch starts with weight 0, also
    the fresh norm the converter puts there; every other norm starts at 1."""
    from utils.scripts import imagenet_flags
    from utils.session.build import build_model
    from utils.session.stages import read_settings
    norm, ws = pair
    argv = ["-a", arch, "--norm", norm, "--ws" if ws else "--no-ws", "--zero-init-residual",
            "--data", "d"]
    settings = read_settings(imagenet_flags(), argv).settings
    model = build_model(imagenet.ARCHS, settings.model, 10)
    last = "bn3" if "resnext" in arch else "bn2"
    blocks = [m for m in model.modules() if hasattr(m, last) and hasattr(m, "conv1")]
    assert blocks
    for block in blocks:
        assert torch.all(getattr(block, last).weight == 0)
        assert torch.all(block.bn1.weight == 1)
    assert torch.all(model.bn1.weight == 1)


def test_zero_init_residual_is_refused_where_there_is_no_residual_branch(capsys):
    from builders import one_line_failure
    import imagenet as script
    code, line = one_line_failure(script.main, ["-a", "mobilenet_v2", "--zero-init-residual",
                                                "--data", "nowhere"], capsys)
    assert code == 2 and "--zero-init-residual does not apply to mobilenet_v2" in line
