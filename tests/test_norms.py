"""Specification of the normalisation layers (models/norms.py): the group rule, LN and IN as
GroupNorms, Batch-Channel Normalization's two forms against hand computations, and micro-batches."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.norms import (BatchChannelNorm2d, GhostBatchNorm2d, NormChoice, group_count,
                          use_micro_batches)


@pytest.mark.parametrize("channels, groups, rule, expected", [
    (64, 32, "pairs", 32), (2048, 32, "pairs", 32),  # C >= 2G: the reference's G groups
    (32, 32, "pairs", 16), (16, 32, "pairs", 8),     # narrower: groups of two channels
    (48, 32, "pairs", 24), (9, 32, "pairs", 3),      # the largest divisor leaving >= 2 each
    (7, 32, "pairs", 1), (1, 32, "pairs", 1),        # a prime width: one group (LN there)
    (16, 4, "pairs", 4), (96, 16, "pairs", 16),
    (16, 32, "channels", 16), (32, 32, "channels", 32), (64, 32, "channels", 32),
    # widths G does not divide: the largest divisor at most G (torchvision's mobile networks)
    (80, 32, "pairs", 20), (40, 32, "pairs", 20), (56, 32, "pairs", 28), (58, 32, "pairs", 29),
    (72, 32, "pairs", 24), (88, 32, "pairs", 22), (104, 32, "pairs", 26),
    (120, 32, "pairs", 30), (122, 32, "pairs", 2), (72, 16, "pairs", 12),
])
def test_group_count_rule(channels, groups, rule, expected):
    assert group_count(channels, groups, rule) == expected
    assert channels % expected == 0


def test_group_count_takes_every_width_and_refuses_no_groups():
    for channels in range(1, 2049):
        groups = group_count(channels, 32)
        assert channels % groups == 0 and groups <= 32
        assert channels // groups >= 2 or channels == 1
    with pytest.raises(ValueError, match="at least one group"):
        group_count(16, 0)


def test_layer_and_instance_norm_are_the_group_norms_of_their_definitions():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64)
    ln = NormChoice("ln").layer(8).double()
    inorm = NormChoice("in").layer(8).double()
    assert isinstance(ln, nn.GroupNorm) and ln.num_groups == 1
    assert isinstance(inorm, nn.GroupNorm) and inorm.num_groups == 8
    torch.testing.assert_close(ln(x), F.layer_norm(x, x.shape[1:], eps=1e-5))
    torch.testing.assert_close(inorm(x), F.instance_norm(x, eps=1e-5))
    gn = NormChoice("gn", gn_groups=4).layer(8)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 4
    assert isinstance(NormChoice("bn").layer(8), nn.BatchNorm2d)
    bcn = NormChoice("bcn", gn_groups=4, bcn_speed=0.5).layer(8)
    assert isinstance(bcn, BatchChannelNorm2d) and bcn.num_groups == 4 and bcn.speed == 0.5


def channel_part(x, groups, w, b, eps=1e-5):
    """Per sample and group of channels: (x - mean) / sqrt(var + eps), then w_g, b_g per group."""
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(dim=2, keepdim=True)
    var = ((g - mean) ** 2).mean(dim=2, keepdim=True)
    out = (g - mean) / (var + eps).sqrt() * w.view(1, -1, 1) + b.view(1, -1, 1)
    return out.reshape(x.shape)


def batch_part(x, mean, var, gamma, beta, eps=1e-5):
    shape = (1, -1, 1, 1)
    return (x - mean.view(shape)) / (var.view(shape) + eps).sqrt() * gamma.view(shape) + \
        beta.view(shape)


def randomised_bcn(channels=6, groups=3, speed=0.3):
    torch.manual_seed(1)
    bcn = BatchChannelNorm2d(channels, groups, speed).double()
    with torch.no_grad():
        for p in bcn.parameters():
            p.uniform_(0.5, 1.5)
        bcn.bn.running_mean.uniform_(-1, 1)
        bcn.bn.running_var.uniform_(0.5, 2)
    return bcn


def test_bcn_large_batch_is_batch_norm_with_batch_statistics_then_channel_norm():
    bcn = randomised_bcn()
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64) * 3 + 1
    mean = x.mean(dim=(0, 2, 3))
    var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))  # biased, as BN normalises
    expected = channel_part(batch_part(x, mean, var, bcn.bn.weight, bcn.bn.bias), 3,
                            bcn.weight, bcn.bias)
    torch.testing.assert_close(bcn.train()(x), expected)


def test_bcn_micro_batches_update_the_estimates_then_normalise_with_them():
    """Each chunk, in order: the chunk's mean, its spread around the estimate *before* the
    update, both estimates moved by r, then the chunk normalised with the updated ones."""
    bcn = randomised_bcn(speed=0.3)
    r = 0.3
    mean, var = bcn.bn.running_mean.clone(), bcn.bn.running_var.clone()
    x = torch.randn(6, 6, 3, 3, dtype=torch.float64) * 2 + 0.5
    assert use_micro_batches(bcn, 2) == 1 and bcn.micro_batch == 2
    out = bcn.train()(x)
    expected = []
    for chunk in x.split(2):
        chunk_mean = chunk.mean(dim=(0, 2, 3))
        spread = ((chunk - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
        mean = (1 - r) * mean + r * chunk_mean
        var = (1 - r) * var + r * spread
        expected.append(channel_part(batch_part(chunk, mean, var, bcn.bn.weight, bcn.bn.bias),
                                     3, bcn.weight, bcn.bias))
    torch.testing.assert_close(out, torch.cat(expected))
    torch.testing.assert_close(bcn.bn.running_mean, mean)
    torch.testing.assert_close(bcn.bn.running_var, var)
    assert int(bcn.bn.num_batches_tracked) == 3
    # The order matters: normalising the first chunk before the update, or with its spread
    # taken around the updated mean, gives other numbers.
    first, start = x[:2], randomised_bcn(speed=0.3).bn
    chunk_mean = first.mean(dim=(0, 2, 3))
    moved = (1 - r) * start.running_mean + r * chunk_mean
    around_new = (1 - r) * start.running_var + r * (
        (first - moved.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    for m, v in ((start.running_mean, start.running_var), (moved, around_new)):
        other = channel_part(batch_part(first, m, v, bcn.bn.weight, bcn.bn.bias), 3,
                             bcn.weight, bcn.bias)
        assert not torch.allclose(other, out[:2], atol=1e-3)


def test_bcn_estimates_are_constants_for_the_gradient():
    bcn = randomised_bcn()
    use_micro_batches(bcn, 2)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    before = copy.deepcopy(bcn)
    bcn.train()(x).sum().backward()
    # The same function with the updated estimates frozen: equal gradients.
    bn = before.bn
    with torch.no_grad():  # the one chunk's estimate update, by its definition
        flat = x.detach().transpose(0, 1).flatten(1)
        spread = (flat - bn.running_mean[:, None]).square().mean(dim=1)
        bn.running_mean.lerp_(flat.mean(dim=1), before.speed)
        bn.running_var.lerp_(spread, before.speed)
    frozen = x.detach().clone().requires_grad_()
    channel_part(batch_part(frozen, bn.running_mean.clone(), bn.running_var.clone(), bn.weight,
                            bn.bias), 3, before.weight, before.bias).sum().backward()
    torch.testing.assert_close(x.grad, frozen.grad)


def test_bcn_evaluates_with_its_estimates_and_round_trips_its_state():
    bcn = randomised_bcn()
    use_micro_batches(bcn, 2)
    bcn.train()(torch.randn(4, 6, 3, 3, dtype=torch.float64))
    x = torch.randn(3, 6, 3, 3, dtype=torch.float64)
    bn = bcn.bn
    expected = channel_part(batch_part(x, bn.running_mean, bn.running_var, bn.weight, bn.bias),
                            3, bcn.weight, bcn.bias)
    torch.testing.assert_close(bcn.eval()(x), expected)
    assert set(bcn.state_dict()) == {"weight", "bias", "bn.weight", "bn.bias", "bn.running_mean",
                                     "bn.running_var", "bn.num_batches_tracked"}
    assert bcn.weight.shape == (3,)  # the channel part's affine is per group
    twin = BatchChannelNorm2d(6, 3, 0.3).double()
    twin.load_state_dict(bcn.state_dict())
    torch.testing.assert_close(twin.eval()(x), bcn(x))


def test_bcn_refuses_a_speed_outside_zero_to_one():
    with pytest.raises(ValueError, match=r"speed must be in \(0, 1\]"):
        BatchChannelNorm2d(8, 4, speed=0.0)


def test_micro_batches_change_batch_norms_only():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.GroupNorm(4, 8),
                          nn.Sequential(BatchChannelNorm2d(8, 4)))
    assert use_micro_batches(model, 4) == 2
    assert isinstance(model[1], GhostBatchNorm2d) and model[1].ghost_batch == 4
    assert model[3][0].micro_batch == 4
    assert use_micro_batches(nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(4, 8)), 4) == 0


def test_norm_choice_refuses_unknown_names_and_rules():
    with pytest.raises(ValueError, match="norm must be one of bn, gn, ln, in, bcn"):
        NormChoice("batch")
    with pytest.raises(ValueError, match="gn_narrow must be one of pairs, channels"):
        NormChoice("gn", gn_narrow="wide")


# --- Micro-batches at once (models/micro_batches.py) against their sequential definitions ---

def sequential_ghost(module, x):
    """Ghost BN's definition: each chunk a BatchNorm batch of its own, one after another."""
    return torch.cat([nn.BatchNorm2d.forward(module, chunk)
                      for chunk in x.split(module.ghost_batch)])


def sequential_bcn(module, x):
    """Micro-batch BCN's definition, chunk by chunk: update the estimates from the chunk (its
    spread around the estimate before the update), normalise it with the updated ones."""
    bn, out = module.bn, []
    for chunk in x.split(module.micro_batch):
        with torch.no_grad():
            flat = chunk.detach().transpose(0, 1).flatten(1).to(bn.running_mean.dtype)
            spread = (flat - bn.running_mean[:, None]).square().mean(dim=1)
            bn.running_mean.lerp_(flat.mean(dim=1), module.speed)
            bn.running_var.lerp_(spread, module.speed)
            bn.num_batches_tracked += 1
        out.append(F.batch_norm(chunk, bn.running_mean.clone(), bn.running_var.clone(),
                                bn.weight, bn.bias, training=False, eps=bn.eps))
    per_channel = module.num_channels // module.num_groups
    return F.group_norm(torch.cat(out), module.num_groups,
                        module.weight.repeat_interleave(per_channel),
                        module.bias.repeat_interleave(per_channel), module.eps)


def ghost_layer(size):
    layer = GhostBatchNorm2d(6, size)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
        layer.running_mean.uniform_(-1, 1)
    return layer


def bcn_layer(size):
    layer = BatchChannelNorm2d(6, 3, 0.3)
    layer.micro_batch = size
    with torch.no_grad():
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.uniform_(-0.5, 0.5)
        layer.bn.running_mean.uniform_(-1, 1)
        layer.weight.uniform_(0.5, 1.5)
    return layer


def compare(make, reference, size, images, channels_last=False):
    """Outputs, input and parameter gradients, running statistics and their update count of
    ``make(size)`` against ``reference`` on one batch, in float32: the largest relative
    difference."""
    torch.manual_seed(size * 100 + images)
    layer = make(size).train()
    twin = copy.deepcopy(layer)
    x = torch.randn(images, 6, 5, 4) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = layer(a), reference(twin, b)
    grad = torch.randn_like(ya)
    (ya * grad).sum().backward()
    (yb * grad).sum().backward()
    assert layer.state_dict()["num_batches_tracked" if hasattr(layer, "ghost_batch")
                              else "bn.num_batches_tracked"] == -(-images // size)
    pairs = [(ya, yb), (a.grad, b.grad)]
    pairs += [(p.grad, q.grad) for p, q in zip(layer.parameters(), twin.parameters())]
    pairs += [(s, t) for s, t in zip(layer.buffers(), twin.buffers())]
    return max(((p.double() - q.double()).abs().max() / q.double().abs().max().clamp(min=1))
               .item() for p, q in pairs)


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("images", [6, 7, 8, 2])
def test_ghost_bn_at_once_is_its_sequential_definition(size, images):
    assert compare(ghost_layer, sequential_ghost, size, images) < 1e-5


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("images", [6, 7, 8, 2])
def test_micro_batch_bcn_at_once_is_its_sequential_definition(size, images):
    assert compare(bcn_layer, sequential_bcn, size, images) < 1e-5


@pytest.mark.parametrize("make, reference", [(ghost_layer, sequential_ghost),
                                             (bcn_layer, sequential_bcn)], ids=["ghost", "bcn"])
def test_micro_batches_keep_a_channels_last_batch_channels_last(make, reference):
    assert compare(make, reference, 2, 8, channels_last=True) < 1e-5
    assert compare(make, reference, 3, 7, channels_last=True) < 1e-5  # an uneven last chunk
    layer = make(2).train()
    y = layer(torch.randn(8, 6, 5, 4).contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("make", [ghost_layer, bcn_layer], ids=["ghost", "bcn"])
@pytest.mark.parametrize("images", [64, 63])
def test_a_micro_batch_layer_is_two_batch_norm_calls_at_most(make, images, monkeypatch):
    """No loop over the chunks: 32 chunks of 2 are one native batch norm, plus one for a
    shorter last chunk."""
    calls = []
    batch_norm = F.batch_norm
    monkeypatch.setattr(F, "batch_norm", lambda *a, **k: calls.append(1) or batch_norm(*a, **k))
    make(2).train()(torch.randn(images, 6, 5, 4))
    assert len(calls) == (1 if images % 2 == 0 else 2)


@pytest.mark.parametrize("make", [ghost_layer, bcn_layer], ids=["ghost", "bcn"])
def test_micro_batch_statistics_are_float32_under_autocast(make):
    """Under bf16 autocast the statistics and the output are float32, as BatchNorm's are."""
    torch.manual_seed(0)
    layer = make(2).train()
    twin = copy.deepcopy(layer)
    x = torch.randn(8, 6, 5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.to(torch.bfloat16))
    assert y.dtype == torch.float32
    twin(x.to(torch.bfloat16).float())  # the same bf16 values, in float32
    for s, t in zip(layer.buffers(), twin.buffers()):
        torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-6)
