"""Batch regularisers: what each does to pixels and targets, seeded and per image."""
import pytest
import torch
import torch.nn.functional as F

from utils.settings.values import Regularisers
from utils.train.regularisers import (BatchAugment, DualCutoutLoss, cutmix, cutout,
                                dual_cutout, mixup, one_hot, random_erasing, ricap)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(b=8, c=3, h=16, w=16, k=10):
    torch.manual_seed(1)
    return torch.randn(b, c, h, w) + 5.0, torch.randint(0, k, (b,))  # +5: no pixel is 0


def test_mixup_targets_sum_to_one_and_mix_the_permuted_pair():
    x, y = batch()
    t = one_hot(y, 10)
    x2, t2, perm, lam = mixup(x, t, 0.4, gen())
    assert torch.allclose(t2.sum(1), torch.ones(8))
    assert torch.allclose(x2, lam * x + (1 - lam) * x[perm])
    assert torch.allclose(t2, lam * t + (1 - lam) * t[perm])
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(8))


def test_cutmix_pastes_one_box_and_weights_targets_by_its_area():
    x, y = batch()
    t = one_hot(y, 10)
    x2, t2, perm, lam = cutmix(x, t, 1.0, gen(3))
    from_other = (x2 != x).any(1)  # (B, H, W): pixels that came from x[perm]
    same_pair = perm != torch.arange(8)
    area = from_other[same_pair.nonzero()[0, 0]].float().mean().item()
    assert area == pytest.approx(1 - lam)
    assert torch.equal(x2[from_other.unsqueeze(1).expand_as(x)],
                       x[perm][from_other.unsqueeze(1).expand_as(x)])
    assert torch.allclose(t2, lam * t + (1 - lam) * t[perm])
    assert torch.allclose(t2.sum(1), torch.ones(8))


def test_ricap_assembles_four_patches_with_area_weighted_targets():
    x, y = batch()
    t = one_hot(y, 10)
    x2, t2, perms, weights = ricap(x, t, 0.3, gen(5))
    assert len(perms) == 4 and sum(weights) == pytest.approx(1.0)
    assert torch.allclose(t2, sum(w * t[p] for w, p in zip(weights, perms)))
    assert torch.allclose(t2.sum(1), torch.ones(8))
    # Every output pixel is some pixel of the input batch (a crop, not a blend).
    assert torch.isin(x2, x).all()


def test_cutout_zeroes_one_square_per_image_each_at_its_own_place():
    x, _ = batch(b=32, h=32, w=32)
    out = cutout(x, 8, gen())
    zeroed = (out == 0).all(1)  # (B, H, W)
    for i in range(32):
        rows, cols = zeroed[i].any(1).nonzero(), zeroed[i].any(0).nonzero()
        # A square of side 8, smaller where it crosses the border.
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert zeroed[i].sum() == len(rows) * len(cols)
    assert len({tuple(zeroed[i].nonzero()[0].tolist()) for i in range(32)}) > 10
    assert torch.equal(out[~zeroed.unsqueeze(1).expand_as(x)], x[~zeroed.unsqueeze(1).expand_as(x)])


def test_random_erasing_erases_rectangles_in_about_p_of_the_images():
    x, _ = batch(b=400, h=16, w=16)
    out = random_erasing(x, gen(), p=0.5)
    changed = (out != x).flatten(1).any(1)
    assert 0.4 < changed.float().mean().item() < 0.6
    i = changed.nonzero()[0, 0]
    region = (out[i] != x[i]).any(0)
    rows, cols = region.any(1).nonzero(), region.any(0).nonzero()
    assert region.sum() == len(rows) * len(cols)  # one rectangle
    assert 0.02 * 256 * 0.5 <= region.sum() <= 0.4 * 256 * 1.5


def test_dual_cutout_gives_two_views_and_its_loss_adds_their_disagreement():
    x, y = batch()
    x2, y2 = dual_cutout(x, y, 8, gen())
    assert x2.shape[0] == 16 and torch.equal(y2, torch.cat([y, y]))
    assert not torch.equal(x2[:8], x2[8:])
    out = torch.randn(16, 10)
    loss = DualCutoutLoss(alpha=0.5)(out, y2)
    ce = 0.5 * (F.cross_entropy(out[:8], y) + F.cross_entropy(out[8:], y))
    assert loss.item() == pytest.approx((ce + 0.5 * F.mse_loss(out[:8].softmax(1),
                                                                out[8:].softmax(1))).item())


def test_same_generator_seed_same_draws():
    x, y = batch()
    aug = BatchAugment(10, Regularisers(cutout=4, random_erasing=0.5, cutmix=1.0))
    a, ta = aug(x, y, gen(7))
    b, tb = aug(x, y, gen(7))
    assert torch.equal(a, b) and torch.equal(ta, tb)


def test_only_one_mixing_method_and_dual_cutout_needs_a_size():
    with pytest.raises(ValueError, match="choose one"):
        Regularisers(mixup=0.2, cutmix=1.0)
    with pytest.raises(ValueError, match="--cutout"):
        Regularisers(dual_cutout=0.1)
    assert not BatchAugment(10).enabled
