"""Weight Standardization of a whole network at once (models/standardization.py): the same
numbers as the per-conv definition (models.layers.standardize_weight) in every family's GN+WS
network, in a few kernels for the whole network, once per optimizer step over --iter-size
micro-batches and once over an evaluation."""
import copy

import pytest
import torch
import torch.nn as nn

import models.layers
from benchmarks.ops import OpCounter, count_step_ops
from models import cifar, create_model, imagenet
from models.layers import WSConv2d, standardize_weight
from models.standardization import SharedStandardization, held_over_step, standardize_weights
from utils.settings.values import RecipeSettings
from utils.train.engine import micro_step, optimizer_step
from utils.train.recipe import make_recipe

# One network of every family with GN+WS twins, small: (registry, arch, options, image side).
FAMILIES = [
    (cifar.MODELS, "l_resnet", dict(depth=8), 32),
    (cifar.MODELS, "l_preresnet", dict(depth=8), 32),
    (cifar.MODELS, "l_resnext", dict(depth=11, cardinality=2), 32),
    (cifar.MODELS, "l_wrn", dict(depth=10, widen_factor=1), 32),
    (cifar.MODELS, "l_pyramidnet", dict(depth=8), 32),
    (cifar.MODELS, "l_shake_shake", dict(depth=8, base_channels=16), 32),
    (cifar.MODELS, "l_se_resnet", dict(depth=8), 32),
    (cifar.MODELS, "l_se_resnext", dict(depth=11, cardinality=4, widen_factor=1), 32),
    (cifar.MODELS, "vgg11", dict(ws=True), 32),  # no norm: --ws alone
    (imagenet.ARCHS, "l_resnet18", {}, 32),
    (imagenet.ARCHS, "l_resnext50", {}, 32),
    (imagenet.ARCHS, "l_se_resnet50", {}, 32),
    (imagenet.ARCHS, "mobilenet_v2", dict(norm="gn", ws=True), 32),  # torchvision's, converted
]


def per_conv(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every WSConv2d standardizes its own weight: today's
    definition, the reference the fused path must equal."""
    twin = copy.deepcopy(model)
    for hooks in (twin._forward_pre_hooks, twin._forward_hooks):
        hooks.clear()
    return twin


def build(registry, arch, options, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return create_model(registry, arch, num_classes=10, **options).to(dtype)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def available(families):
    return [pytest.param(*f, id=f[1]) for f in families]


@pytest.mark.parametrize("registry,arch,options,size", available(FAMILIES))
def test_every_family_computes_todays_numbers_in_float64(registry, arch, options, size):
    model = build(registry, arch, options, torch.float64)
    reference = per_conv(model)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    results = []
    for network in (model, reference):
        torch.manual_seed(1)  # the same draws (shake-shake's, dropout's) in both
        out = network(x)
        out.square().sum().backward()
        results.append(out)
    assert relative(*results) < 1e-12
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert relative(p.grad, q.grad) < 1e-12, name


@pytest.mark.parametrize("registry,arch,options,size,form", [
    pytest.param(*f, "std", id=f[1]) for f in FAMILIES] + [
    pytest.param(*f, "var", id=f[1] + "-var") for f in FAMILIES[:1] + FAMILIES[-3:-2]])
def test_every_familys_standardized_weights_and_gradients_in_float32(registry, arch, options,
                                                                      size, form):
    """All the convs of a network at once against each conv by the definition: the weights and
    the gradient that reaches the raw weights, to 1e-6 relative. (A whole float32 network is not
    compared at 1e-6: at initialisation its output moves by more than that under any change of
    rounding, today's code against float64 included.)"""
    model = build(registry, arch, options)
    raw = [m.weight for m in model.modules() if isinstance(m, WSConv2d)]
    upstream = [torch.randn_like(w) for w in raw]
    fused = [w.detach().clone().requires_grad_() for w in raw]
    alone = [w.detach().clone().requires_grad_() for w in raw]
    ours = standardize_weights(fused, form)
    theirs = [standardize_weight(w, form=form) for w in alone]
    sum((a * g).sum() for a, g in zip(ours, upstream)).backward()
    sum((a * g).sum() for a, g in zip(theirs, upstream)).backward()
    for a, b, wa, wb in zip(ours, theirs, fused, alone):
        assert relative(a, b) < 1e-6 and relative(wa.grad, wb.grad) < 1e-6


def test_channels_last_weights_are_read_in_place_and_keep_their_layout():
    model = build(cifar.MODELS, "l_resnet", dict(depth=8)).to(memory_format=torch.channels_last)
    raw = [m.weight for m in model.modules() if isinstance(m, WSConv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in raw)
    ours = standardize_weights(raw)
    for a, w in zip(ours, raw):
        assert a.stride() == w.stride()
        assert relative(a, standardize_weight(w)) < 1e-6
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    model(x).sum().backward()
    assert all(w.grad.stride() == w.stride() for w in raw)


def test_a_model_moved_to_another_device_gets_a_plan_there():
    """The row plan (offsets, row index) is kept per network; after model.to(device) it must be
    made again on the weights' new device ("meta" stands in for a GPU here)."""
    model = build(cifar.MODELS, "l_resnet", dict(depth=8))
    hook = next(h.__self__ for h in model._forward_pre_hooks.values())
    convs = [m for m in model.modules() if isinstance(m, WSConv2d)]
    assert hook._groups(convs)[0].plan.offsets.device.type == "cpu"
    model.to("meta")
    assert hook._groups(convs)[0].plan.offsets.device.type == "meta"


def layout_of(model):
    return next(h.__self__ for h in model._forward_pre_hooks.values())._layout


def test_the_networks_convs_are_found_once_until_its_structure_or_storage_changes():
    """The hook keeps its network's convs and groups between forwards (no module walk in the
    hot path), and finds them again after a conv is replaced, a weight Parameter is given anew,
    or model.to() moves the storage; every forward still equals the per-conv definition."""
    model = build(cifar.MODELS, "l_resnet", dict(depth=8))
    x = torch.randn(2, 3, 32, 32)

    def same_as_definition():
        with torch.no_grad():
            torch.testing.assert_close(model(x), per_conv(model)(x), rtol=1e-5, atol=1e-6)

    same_as_definition()
    first = layout_of(model)
    model(x)
    assert layout_of(model) is first  # kept
    torch.manual_seed(3)
    model.layer1[0].conv1 = WSConv2d(16, 16, 3, padding=1, bias=False)  # a new conv
    same_as_definition()
    assert layout_of(model) is not first and model.layer1[0].conv1 in layout_of(model).convs
    second = layout_of(model)
    model.conv1.weight = nn.Parameter(torch.randn_like(model.conv1.weight))  # a new Parameter
    same_as_definition()
    assert layout_of(model) is not second
    third = layout_of(model)
    model.to(memory_format=torch.channels_last)  # the storage moves, the strides change
    same_as_definition()
    assert layout_of(model) is not third
    assert layout_of(model).groups[0].plan is not third.groups[0].plan


def test_a_zero_weight_row_gets_autograds_gradient():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    w[1] = 0.25  # one output channel with no spread: std 0
    for form in ("std", "var"):
        a, b = w.clone().requires_grad_(), w.clone().requires_grad_()
        g = torch.randn_like(w)
        (standardize_weights([a], form)[0] * g).sum().backward()
        (standardize_weight(b, form=form) * g).sum().backward()
        assert torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-9)


def test_the_network_standardizes_in_one_fused_pass(monkeypatch):
    """The per-conv definition is not called in a forward; the fused pass runs under bf16
    autocast in float32, and the convs get float32 weights."""
    model = build(cifar.MODELS, "l_resnet", dict(depth=8))

    def refused(*args, **kwargs):
        raise AssertionError("per-conv standardization in a network forward")

    monkeypatch.setattr(models.layers, "standardize_weight", refused)
    given = []
    original = WSConv2d.use_standardized
    monkeypatch.setattr(WSConv2d, "use_standardized",
                        lambda self, w: given.append(w) or original(self, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    weights = [w for w in given if w is not None]
    convs = [m for m in model.modules() if isinstance(m, WSConv2d)]
    assert len(weights) == len(convs) and all(w.dtype == torch.float32 for w in weights)
    assert all(m._given is None for m in convs)  # handed back after the forward


def segment_reductions(fn) -> int:
    with OpCounter() as counter:
        fn()
    return counter.counts["segment_reduce"]


def test_an_optimizer_step_of_16_micro_batches_standardizes_once():
    """Forward: two segmented sums (mean, variance); backward: two (the closed form). Once a
    step, not once a micro-batch."""
    model = build(cifar.MODELS, "l_resnet", dict(depth=8))
    recipe = make_recipe(model, RecipeSettings(iter_size=16), 10, batches_per_epoch=16)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))

    def step():
        for k in range(16):
            micro_step(model, x, y, recipe, 1 / 16, last_of_step=k == 15)

    assert segment_reductions(step) == 4
    one = make_recipe(model, RecipeSettings(), 10, batches_per_epoch=1)
    assert segment_reductions(lambda: micro_step(model, x, y, one, 1.0, True)) == 4


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_iter_size_steps_equal_standardizing_every_micro_batch(dtype, tolerance):
    """Three optimizer steps of four micro-batches each, with momentum and weight decay: the
    weights equal those of standardizing on every micro-batch (as before), and the earlier
    micro-batches' gradients are not lost."""
    model = build(cifar.MODELS, "l_resnet", dict(depth=8), dtype)
    reference = per_conv(model)
    settings = RecipeSettings(iter_size=4, momentum=0.9, weight_decay=5e-4, lr=0.1)
    recipes = [make_recipe(m, settings, 10, batches_per_epoch=12) for m in (model, reference)]
    torch.manual_seed(1)
    batches = [(torch.randn(3, 3, 32, 32, dtype=dtype), torch.randint(0, 10, (3,)))
               for _ in range(12)]
    for m, recipe in zip((model, reference), recipes):
        for i, (x, y) in enumerate(batches):
            micro_step(m, x, y, recipe, 1 / 4, last_of_step=i % 4 == 3)
            if i % 4 == 3:
                optimizer_step(m, recipe)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert relative(p.detach(), q.detach()) < tolerance, name


def test_evaluation_standardizes_once_until_the_weights_change():
    model = build(cifar.MODELS, "l_resnet", dict(depth=8)).eval()
    reference = per_conv(model).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert segment_reductions(lambda: model(x)) == 2
        assert segment_reductions(lambda: model(x)) == 0
        for changed in (lambda: model.layer1[0].conv1.weight.mul_(2),  # as an optimizer does
                        lambda: model.load_state_dict(reference.state_dict())):
            changed()
            assert segment_reductions(lambda: model(x)) == 2
    reference.layer1[0].conv1.weight.data.mul_(1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_a_copy_has_its_own_standardization():
    """deepcopy (EMA's averaged model, export's folding) gives the copy a hook of its own, with
    nothing cached from the original."""
    model = build(cifar.MODELS, "l_resnet", dict(depth=8)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        twin = copy.deepcopy(model)
        twin.conv1.weight.add_(1)
        hooks = [h.__self__ for h in twin._forward_pre_hooks.values()]
        original = [h.__self__ for h in model._forward_pre_hooks.values()]
        assert isinstance(hooks[0], SharedStandardization) and hooks[0] is not original[0]
        torch.testing.assert_close(twin(x), per_conv(twin)(x), rtol=0, atol=1e-5)


def test_a_data_parallel_replica_standardizes_its_own_weights_without_state():
    model = build(cifar.MODELS, "l_resnet", dict(depth=8))
    replica = copy.copy(model)  # DataParallel's replicas share the hooks of the original
    replica._is_replica = True
    hook = next(h.__self__ for h in model._forward_pre_hooks.values())
    x = torch.randn(2, 3, 32, 32)
    with held_over_step(model, last=False):
        torch.testing.assert_close(replica(x), per_conv(model)(x), rtol=0, atol=1e-5)
    assert hook._held is None  # a replica held nothing for the step


def test_a_failed_micro_batch_ends_the_hold_and_a_changed_weight_is_refused():
    model = build(cifar.MODELS, "l_resnet", dict(depth=8))
    hook = next(h.__self__ for h in model._forward_pre_hooks.values())
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ZeroDivisionError):
        with held_over_step(model, last=False):
            model(x).sum().backward()
            raise ZeroDivisionError
    assert hook._held is None
    with held_over_step(model, last=False):
        model(x).sum().backward()
    with torch.no_grad():
        model.conv1.weight.add_(1)
    with pytest.raises(RuntimeError, match="changed in the middle of an optimizer step"):
        with held_over_step(model, last=True):
            model(x)


@pytest.mark.parametrize("flags,most", [
    (dict(arch="l_resnet", depth=20), 1.3),
    (dict(arch="resnet", depth=20, norm="bcn", ws=True), 1.5),
])
def test_a_ws_step_launches_about_batchnorms_ops(flags, most):
    """bench.py ops' count: GN+WS at most 1.3x the BatchNorm network's aten ops, BCN+WS at most
    1.5x (the WS paper's micro-batch regime is launch-bound)."""
    arch = flags.pop("arch")
    torch.manual_seed(0)
    ws = create_model(cifar.MODELS, arch, num_classes=10, **flags)
    bn = create_model(cifar.MODELS, "resnet", num_classes=10, depth=20)
    counts = [sum(count_step_ops(m, 4, 32, 10).values()) for m in (ws, bn)]
    assert counts[0] <= most * counts[1], counts
