"""Specification of the model zoo: reference-compatible state_dicts, the exact WS formula,
batch independence of GN+WS, and that every model trains a step."""
import copy

import pytest
import torch
import torch.nn as nn
from torchvision.ops import SqueezeExcitation

import models.layers
from models import cifar, create_model, imagenet, model_options
from models.layers import WSConv2d, standardize_weight
from models.norms import NORM_TYPES, BatchChannelNorm2d, group_norm
from utils.train.checkpoint import CheckpointError, load_weights

from builders import load_reference_models

REFERENCE = load_reference_models()
REFERENCE_ENTRIES = [] if REFERENCE is None else [
    (section, name) for section in ("cifar", "imagenet") for name in REFERENCE[section]]
REGISTRIES = {"cifar": cifar.MODELS, "imagenet": imagenet.MODELS}


def build_reference_config(section, name, device="meta"):
    entry = REFERENCE[section][name]
    with torch.device(device):
        return create_model(REGISTRIES[section], entry["arch"], num_classes=entry["num_classes"],
                            **entry["kwargs"]), entry


@pytest.mark.skipif(REFERENCE is None, reason="../shared/reference/models.json not found")
@pytest.mark.parametrize("section,name", REFERENCE_ENTRIES)
def test_state_dict_matches_reference(section, name):
    model, entry = build_reference_config(section, name)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == entry["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == entry["params"]


def test_ws_conv_matches_formula_in_float64():
    torch.manual_seed(0)
    conv = WSConv2d(6, 4, kernel_size=3, padding=1, groups=2, bias=True).double()
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    w = conv.weight.detach()
    expected_w = torch.empty_like(w)
    for o in range(w.shape[0]):  # the formula, written out per output channel
        flat = w[o].flatten()
        n = flat.numel()
        mean = flat.sum() / n
        std = ((flat - mean) ** 2).sum().div(n - 1).sqrt()
        expected_w[o] = (w[o] - mean) / (std + 1e-5)
    torch.testing.assert_close(conv.standardized_weight(), expected_w, rtol=0, atol=1e-12)
    expected = nn.functional.conv2d(x, expected_w, conv.bias, padding=1, groups=2)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-10)
    # The parameter itself stays raw: a plain Conv2d's state_dict.
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert not torch.allclose(conv.weight, conv.standardized_weight())


def test_ws_eps_is_added_to_std_not_variance():
    w = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    w[0, 0, 0, 1] = 2e-5  # std (unbiased) = sqrt(2) * 1e-5
    std = 2 ** 0.5 * 1e-5
    expected = (w - 1e-5) / (std + 1e-5)
    torch.testing.assert_close(standardize_weight(w), expected)


def test_group_norm_rule_and_error():
    assert group_norm(64, 32).num_groups == 32
    assert group_norm(16, 32).num_groups == 8  # narrower than 2G: groups of two channels
    assert group_norm(32, 32).num_groups == 16  # not 32 groups of one channel (that is IN)
    assert group_norm(160, 32).num_groups == 32
    assert group_norm(16, 32, narrow="channels").num_groups == 16  # the rule before --norm
    assert group_norm(80, 32).num_groups == 20  # a width 32 does not divide: 20 groups of 4
    widths = {m.num_channels: m.num_groups for m in cifar.l_wrn(depth=10, widen_factor=5).modules()
              if isinstance(m, nn.GroupNorm)}
    assert widths == {16: 8, 80: 20, 160: 32, 320: 32}


# Every l_* model, at a size that keeps CPU time small (the layer types are what matter).
L_MODELS = [
    ("cifar", "l_resnet", dict(depth=20), 32),
    ("cifar", "l_resnet", dict(depth=29, block_name="Bottleneck"), 32),
    ("cifar", "l_preresnet", dict(depth=20), 32),
    ("cifar", "l_preresnet", dict(depth=29, block_name="Bottleneck"), 32),
    ("cifar", "l_resnext", dict(depth=11, cardinality=4, widen_factor=1), 32),
    ("cifar", "l_wrn", dict(depth=10, widen_factor=2), 32),
    ("imagenet", "l_resnet18", {}, 64),
    ("imagenet", "l_resnet34", {}, 64),
    ("imagenet", "l_resnet50", {}, 64),
    ("imagenet", "l_resnet101", {}, 64),
    ("imagenet", "l_resnet152", {}, 64),
    ("imagenet", "l_resnext50", {}, 64),
    ("imagenet", "l_resnext101", {}, 64),
    ("imagenet", "l_resnext152", {}, 64),
    ("cifar", "l_pyramidnet", dict(depth=20, alpha=48), 32),
    ("cifar", "l_shake_shake", dict(depth=8, base_channels=32), 32),
    ("cifar", "l_se_resnet", dict(depth=20), 32),
    ("cifar", "l_se_resnext", dict(depth=11, cardinality=4, widen_factor=1), 32),
    ("imagenet", "l_se_resnet50", {}, 64),
    ("imagenet", "l_se_resnet101", {}, 64),
    ("imagenet", "l_se_resnext50", {}, 64),
]


def test_every_l_model_is_listed_here():
    named = {name for _, name, _, _ in L_MODELS}
    assert named == {n for reg in REGISTRIES.values() for n in reg if n.startswith("l_")}


@pytest.mark.parametrize("section,arch,kwargs,size", L_MODELS,
                         ids=[f"{a}-{i}" for i, (_, a, _, _) in enumerate(L_MODELS)])
def test_gn_ws_output_of_a_sample_does_not_depend_on_the_batch(section, arch, kwargs, size):
    torch.manual_seed(0)
    # float64: float32 kernels block differently per batch size, which alone moves deep-net
    # logits by ~2e-5; the question here is dependence on other samples, not rounding.
    model = create_model(REGISTRIES[section], arch, num_classes=10, **kwargs).double()
    model.train()  # no batch statistics in train mode either
    if "shake" in arch:
        model.eval()  # training draws a random mix per image: compare the deterministic one
    batch = torch.randn(8, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        alone = model(batch[3:4])
        inside = model(batch)[3:4]
    torch.testing.assert_close(alone, inside, rtol=0, atol=1e-5)


def test_bn_output_does_depend_on_the_batch():
    # The contrast that makes the previous test meaningful.
    torch.manual_seed(0)
    model = cifar.resnet(depth=20).train()
    batch = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert (model(batch[3:4]) - model(batch)[3:4]).abs().max() > 1e-3


CIFAR_SMOKE = sorted(cifar.MODELS)
IMAGENET_SMOKE = sorted(imagenet.MODELS)


def forward_backward(model, size, num_classes):
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, num_classes)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# Small members of the CIFAR families whose default configuration is slow to test.
CIFAR_SMALL = {"resnext": dict(depth=11), "l_resnext": dict(depth=11),
               "wrn": dict(depth=16, widen_factor=4), "l_wrn": dict(depth=16, widen_factor=4),
               "densenet": dict(depth=40), "pyramidnet": dict(depth=20),
               "l_pyramidnet": dict(depth=20), "shake_shake": dict(depth=8, base_channels=16),
               "l_shake_shake": dict(depth=8, base_channels=16),
               "se_resnext": dict(depth=11, cardinality=4, widen_factor=1),
               "l_se_resnext": dict(depth=11, cardinality=4, widen_factor=1)}


@pytest.mark.parametrize("arch", CIFAR_SMOKE)
def test_cifar_model_forward_backward(arch):
    torch.manual_seed(0)
    model = create_model(cifar.MODELS, arch, num_classes=100, **CIFAR_SMALL.get(arch, {}))
    forward_backward(model, 32, 100)


@pytest.mark.parametrize("section, arch", [("cifar", a) for a in CIFAR_SMOKE] + [
    ("imagenet", a) for a in ("l_resnet50", "l_resnext50", "l_se_resnext50")])
def test_torch_compile_traces_the_training_forward_as_one_graph(section, arch):
    """No graph break (a .item(), a Python branch on a tensor value, an untraceable call) splits
    the model under --compile: each break costs a GPU step a host round trip and a launch gap."""
    torch._dynamo.reset()
    kwargs = CIFAR_SMALL.get(arch, {}) if section == "cifar" else {}
    model = create_model(REGISTRIES[section], arch, num_classes=10, **kwargs).train()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("arch", IMAGENET_SMOKE)
def test_imagenet_model_forward_backward(arch):
    torch.manual_seed(0)
    model = create_model(imagenet.MODELS, arch, num_classes=1000)
    forward_backward(model, 224 if arch == "l_resnet18" else 64, 1000)


def test_ws_is_float32_under_bf16_autocast(monkeypatch):
    """A WSConv2d on its own standardizes in float32 under bf16 autocast (a network's convs are
    standardized together: tests/test_standardization.py checks the same there)."""
    seen = []

    def recording(weight, eps=1e-5, form="std"):
        out = standardize_weight(weight, eps, form)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(models.layers, "standardize_weight", recording)
    conv = WSConv2d(3, 8, kernel_size=3, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(torch.randn(2, 3, 8, 8))
    assert out.dtype == torch.bfloat16 and seen == [torch.float32]
    # The low-precision cast happens in the conv, after standardization, not before it.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = conv.standardized_weight()
    torch.testing.assert_close(inside, conv.standardized_weight(), rtol=0, atol=0)


@pytest.mark.parametrize("name,depth", [("resnet", 21), ("preresnet", 30), ("resnext", 30),
                                        ("wrn", 27), ("densenet", 99)])
def test_impossible_depth_is_a_clear_value_error(name, depth):
    with pytest.raises(ValueError, match=f"depth = .*got {depth}"):
        create_model(cifar.MODELS, name, depth=depth)


def test_bottleneck_depth_rule():
    with pytest.raises(ValueError, match="9n\\+2"):
        cifar.resnet(depth=32, block_name="Bottleneck")
    with pytest.raises(ValueError, match="BasicBlock or Bottleneck"):
        cifar.resnet(depth=20, block_name="Basic")


def test_initialisation_and_zero_init_residual():
    model = imagenet.l_resnet50(zero_init_residual=True)
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert all(torch.all(m.bias == 0) for m in gns)
    last = [blk.bn3 for blk in model.modules() if hasattr(blk, "last_residual_norm")]
    assert len(last) == 16 and all(torch.all(n.weight == 0) for n in last)
    assert torch.all(model.bn1.weight == 1)
    # kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k)) = sqrt(2 / (64*49))
    std = model.conv1.weight.std().item()
    assert abs(std - (2 / (64 * 49)) ** 0.5) / std < 0.05
    # A zero-initialised bottleneck is the identity followed by ReLU.
    block = model.layer1[1].eval()
    x = torch.randn(1, 256, 8, 8).relu()
    torch.testing.assert_close(block(x), x)


def test_load_reference_style_checkpoint_with_module_prefix(tmp_path):
    source = cifar.l_resnet(depth=20)
    wrapped = {"module." + k: v for k, v in source.state_dict().items()}
    path = tmp_path / "ref.pth.tar"
    torch.save({"epoch": 3, "state_dict": wrapped, "acc": torch.tensor(50.0),
                "best_acc": torch.tensor(51.0), "optimizer": {}}, path)
    target = cifar.l_resnet(depth=20)
    load_weights(target, str(path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))
    # A bare state_dict with no prefix loads too.
    load_weights(target, source.state_dict())


def test_load_names_missing_and_unexpected_keys():
    state = cifar.resnet(depth=20).state_dict()  # BN keys into a GN model
    with pytest.raises(CheckpointError, match="unexpected keys: .*running_mean"):
        load_weights(cifar.l_resnet(depth=20), state)
    state = cifar.l_resnet(depth=20).state_dict()
    del state["fc.bias"]
    with pytest.raises(CheckpointError, match="missing keys: fc.bias"):
        load_weights(cifar.l_resnet(depth=20), state)
    with pytest.raises(CheckpointError, match="shape mismatches: fc.weight"):
        load_weights(cifar.l_resnet(depth=20, num_classes=100), cifar.l_resnet(depth=20).state_dict())


def test_ghost_batch_norm_normalises_each_chunk_on_its_own():
    from models.norms import GhostBatchNorm2d, use_micro_batches
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    reference = copy.deepcopy(model[1])
    assert use_micro_batches(model, 4) == 1 and isinstance(model[1], GhostBatchNorm2d)
    x = torch.randn(12, 4, 5, 5)
    out = model[1](x)
    chunks = torch.cat([reference(c) for c in x.split(4)])  # plain BN on each chunk
    assert torch.allclose(out, chunks, atol=1e-6)
    assert torch.allclose(model[1].running_mean, reference.running_mean)
    assert not torch.allclose(out, nn.BatchNorm2d(4)(x), atol=1e-3)  # not whole-batch BN
    model.eval()
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias",
                                       "1.running_mean", "1.running_var", "1.num_batches_tracked"}


def param_count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("section, arch, kwargs, exact, published", [
    # PyramidNet (Han et al., 2017, table 4), built as the authors' released code builds it
    # (widths rounded to the nearest channel): 1.77M and 28.49M against 1.7M and 28.3M printed.
    ("cifar", "pyramidnet", dict(depth=110, alpha=48), 1_772_706, 1.7e6),
    ("cifar", "pyramidnet", dict(depth=110, alpha=270), 28_485_477, 28.3e6),
    # Shake-Shake (Gastaldi, 2017, table 1): 26 2x32d 2.9M, 26 2x96d 26.2M.
    ("cifar", "shake_shake", dict(depth=26, base_channels=32), 2_923_162, 2.9e6),
    ("cifar", "shake_shake", dict(depth=26, base_channels=96), 26_192_922, 26.2e6),
    # SE-Net (Hu et al., 2018, table 2): SE-ResNet-50 28.09M, SE-ResNeXt-50 (32x4d) 27.56M.
    ("imagenet", "se_resnet50", {}, 28_088_024, 28.09e6),
    ("imagenet", "se_resnext50", {}, 27_559_896, 27.56e6),
])
def test_new_architectures_have_their_papers_parameter_counts(section, arch, kwargs, exact,
                                                              published):
    num_classes = 10 if section == "cifar" else 1000
    with torch.device("meta"):
        model = create_model(REGISTRIES[section], arch, num_classes=num_classes, **kwargs)
    assert param_count(model) == exact
    assert abs(exact - published) / published < 0.045
    gn_ws = create_model(REGISTRIES[section], "l_" + arch, num_classes=num_classes, **kwargs)
    assert param_count(gn_ws) == exact  # GN has BN's affine parameters; WS adds none


def test_shake_mixes_forward_and_backward_with_independent_per_image_draws():
    from models.cifar.shake_shake import Shake, shake
    x1 = torch.randn(4, 2, 3, 3, requires_grad=True)
    x2 = torch.randn(4, 2, 3, 3, requires_grad=True)
    alpha, beta = torch.rand(4, 1, 1, 1), torch.rand(4, 1, 1, 1)
    out = Shake.apply(x1, x2, alpha, beta)
    assert torch.allclose(out, alpha * x1 + (1 - alpha) * x2)
    out.sum().backward()
    assert torch.allclose(x1.grad, beta.expand_as(x1))
    assert torch.allclose(x2.grad, (1 - beta).expand_as(x2))
    assert torch.equal(shake(x1, x2, training=False), 0.5 * (x1 + x2))


def test_squeeze_excitation_rescales_the_residual_per_channel():
    from models.blocks import BasicBlock
    torch.manual_seed(0)
    plain, se = BasicBlock(8, 8).eval(), BasicBlock(8, 8, se_reduction=4).eval()
    se.load_state_dict({**plain.state_dict(), **{k: v for k, v in se.state_dict().items()
                                                 if k.startswith("se.")}})
    for p in se.se.parameters():
        torch.nn.init.zeros_(p)  # excitation sigmoid(0) = 0.5 on every channel
    x = torch.randn(2, 8, 6, 6)
    residual = plain.bn2(plain.conv2(plain.relu(plain.bn1(plain.conv1(x)))))
    assert torch.allclose(se(x), torch.relu(0.5 * residual + x), atol=1e-6)
    assert set(plain.state_dict()) < set(se.state_dict())  # no SE: the reference's keys


NORM_CLASSES = {"bn": nn.BatchNorm2d, "gn": nn.GroupNorm, "ln": nn.GroupNorm,
                "in": nn.GroupNorm, "bcn": BatchChannelNorm2d}


@pytest.mark.parametrize("arch", sorted(a for a in cifar.MODELS if "norm" in model_options(
    cifar.MODELS[a])))
def test_every_cifar_family_takes_every_norm_with_and_without_ws(arch):
    kwargs = CIFAR_SMALL.get(arch, {})
    # Each norm once, WS on and off in turn (the training tests run all ten pairs).
    for norm, ws in zip(NORM_CLASSES, (True, False, True, False, True)):
        model = create_model(cifar.MODELS, arch, num_classes=10, norm=norm, ws=ws, gn_groups=4,
                             **kwargs)
        inner = {id(m.bn) for m in model.modules() if isinstance(m, BatchChannelNorm2d)}
        norms = [m for m in model.modules() if isinstance(m, NORM_TYPES) and id(m) not in inner]
        assert norms and all(type(m) is NORM_CLASSES[norm] for m in norms)
        if norm in ("ln", "in"):
            assert {m.num_groups == (1 if norm == "ln" else m.num_channels)
                    for m in norms} == {True}
        se = {id(c) for m in model.modules() if isinstance(m, SqueezeExcitation)
              for c in m.modules()}  # SE's own 1x1 convs feed a sigmoid, not a norm
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in se]
        assert {isinstance(m, WSConv2d) for m in convs} == {ws}
    forward_backward(model, 32, 10)  # the last pair, bcn + ws


@pytest.mark.parametrize("arch", sorted(a for a in cifar.MODELS if f"l_{a}" in cifar.MODELS))
def test_gn_ws_by_flags_is_the_l_model(arch):
    kwargs = CIFAR_SMALL.get(arch, {})
    torch.manual_seed(0)
    by_flags = create_model(cifar.MODELS, arch, norm="gn", ws=True, **kwargs)
    torch.manual_seed(0)
    by_name = create_model(cifar.MODELS, f"l_{arch}", **kwargs)
    assert repr(by_flags) == repr(by_name)
    for (k, a), (_, b) in zip(by_flags.state_dict().items(), by_name.state_dict().items()):
        assert torch.equal(a, b), k


def test_models_without_norm_layers_take_ws_only():
    for arch in ("alexnet", "vgg11", "vgg19"):
        assert model_options(cifar.MODELS[arch]) & {"norm", "ws"} == {"ws"}
        convs = [m for m in create_model(cifar.MODELS, arch, ws=True).modules()
                 if isinstance(m, nn.Conv2d)]
        assert convs and all(isinstance(m, WSConv2d) for m in convs)


def test_alexnet_keeps_pytorchs_default_initialisation_as_the_reference():
    torch.manual_seed(0)
    model = cifar.alexnet()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1 / m.weight[0].numel() ** 0.5  # kaiming_uniform(a=sqrt(5)) and its bias
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
            assert m.bias.abs().max() <= bound and m.bias.abs().max() > 0  # not zeroed


def test_shake_shake_stem_has_no_relu():
    model = cifar.shake_shake(depth=8, base_channels=16).eval()
    seen = []
    model.layer1.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert (seen[0] < 0).any()  # conv -> BN, not rectified
    stem = model.bn1(model.conv1(torch.randn(1, 3, 32, 32)))
    assert stem.shape[1] == 16


def test_shake_shake_needs_two_channels_to_split():
    with pytest.raises(ValueError, match="--base-channels >= 2"):
        cifar.shake_shake(depth=8, base_channels=1)
    forward_backward(cifar.shake_shake(depth=8, base_channels=2), 32, 10)


def test_ws_refuses_a_single_weight_per_output_channel():
    with pytest.raises(ValueError, match="at least 2 weights per output channel"):
        WSConv2d(8, 8, kernel_size=1, groups=8)
    WSConv2d(8, 8, kernel_size=3, groups=8)  # a depthwise 3x3 has 9


@pytest.mark.parametrize("arch, kwargs", [("pyramidnet", dict(depth=20)),
                                          ("pyramidnet", dict(depth=29, block_name="Bottleneck")),
                                          ("shake_shake", dict(depth=14, base_channels=16))])
def test_zero_init_residual_makes_pyramidnet_and_shake_shake_blocks_start_as_shortcuts(arch,
                                                                                      kwargs):
    torch.manual_seed(0)
    model = create_model(cifar.MODELS, arch, zero_init_residual=True, **kwargs).eval()
    block = model.layer2[1]
    x = torch.randn(2, block.block.bn1.num_features if arch == "pyramidnet" else 32, 16, 16)
    with torch.no_grad():
        out = block(x)
    # The shortcut alone: x, and PyramidNet's zero channels for the extra width.
    torch.testing.assert_close(out[:, :x.shape[1]], x)
    assert torch.all(out[:, x.shape[1]:] == 0)
    trained = create_model(cifar.MODELS, arch, **kwargs).eval()
    with torch.no_grad():
        assert not torch.allclose(trained.layer2[1](x)[:, :x.shape[1]], x)


def test_every_torchvision_model_imagenet_py_offers_trains_on_a_tensor_of_logits():
    """A training forward that returns auxiliary outputs (GoogLeNet, Inception v3) would fail in
    the loss: those are built without their auxiliary heads. Shapes on the meta device (real
    ones where an initialisation reads values)."""
    from models.imagenet.torchvision_models import TORCHVISION_MODELS
    failing = []
    for name, constructor in TORCHVISION_MODELS.items():
        if name.startswith("regnet") and name not in ("regnet_x_400mf", "regnet_y_400mf"):
            continue  # the small RegNets stand for the family: its init needs real tensors
        device = "cpu" if name.startswith("regnet") else "meta"
        with torch.device(device):
            model = constructor(num_classes=10).train()
            out = model(torch.empty(2, 3, 224, 224))
        if not isinstance(out, torch.Tensor) or out.shape != (2, 10):
            failing.append((name, type(out).__name__))
    assert failing == []
