"""Batch regularisers applied on the training device to a normalised float batch (B, C, H, W)
and its targets, after the loader: Cutout, Random Erasing, mixup, CutMix, RICAP, Dual-Cutout.

Every draw comes from the ``torch.Generator`` passed in (the engine seeds one per batch from
(seed, epoch, batch, rank)), so a resumed run replays the same draws. Per-image choices (a
cutout's centre, an erased rectangle) are drawn per image in one call; the mixing methods pair
image i with image ``perm[i]`` of the same batch and return the permutation so the pairing can be
checked. Targets come in as class indices (B,) or probabilities (B, K) and leave as probabilities
(B, K) once images are mixed; nn.CrossEntropyLoss takes either.

torchvision.transforms.v2 ships MixUp, CutMix and RandomErasing, but they draw from the global
RNG, pair each image with its neighbour (a roll of the batch) and erase one rectangle shared by
the whole batch; we need seeded, per-image draws and no host round trip per image.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..settings.values import Regularisers
from ..data.transfer import to_device

__all__ = ["one_hot", "cutout", "random_erasing", "mixup", "cutmix", "ricap", "dual_cutout",
           "DualCutoutLoss", "BatchAugment"]


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return y if y.dim() == 2 else F.one_hot(y, num_classes).to(torch.float32)


def _uniform(n, generator, device):
    return to_device(torch.rand(n, generator=generator), device)


def _child_seed(generator):
    """A seed drawn from ``generator``, for a generator it cannot be itself."""
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator))


def _on_device(generator, device):
    """A generator on ``device`` seeded from ``generator``: image-sized noise is drawn where the
    images are, not on the host and copied."""
    return torch.Generator(device=device).manual_seed(_child_seed(generator))


def _beta(alpha, generator):
    """One draw of Beta(alpha, alpha) driven by ``generator`` (torch's Beta sampler takes no
    generator, so numpy's draws it, seeded from the torch generator)."""
    return float(np.random.default_rng(_child_seed(generator)).beta(alpha, alpha))


def _boxes_mask(top, left, height, width, h, w):
    """(B, 1, h, w) bool mask, True inside each image's box [top, top+height) x
    [left, left+width)."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, p: float = 1.0) -> torch.Tensor:
    """Cutout (DeVries & Taylor, 2017): with probability ``p`` per image, a ``size`` x ``size``
    square centred on a uniformly drawn pixel (clipped at the border) is set to 0, the dataset
    mean after normalisation."""
    b, _, h, w = x.shape
    cy = (_uniform(b, generator, x.device) * h).long()
    cx = (_uniform(b, generator, x.device) * w).long()
    apply = _uniform(b, generator, x.device) < p
    top, left = (cy - size // 2).clamp(min=0), (cx - size // 2).clamp(min=0)
    bottom, right = (cy - size // 2 + size).clamp(max=h), (cx - size // 2 + size).clamp(max=w)
    mask = _boxes_mask(top, left, bottom - top, right - left, h, w) & apply[:, None, None, None]
    return x.masked_fill(mask, 0.0)


def random_erasing(x: torch.Tensor, generator: torch.Generator, p: float = 0.5,
                   scale: tuple[float, float] = (0.02, 0.4),
                   ratio: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """Random Erasing (Zhong et al., 2017): with probability ``p`` per image, a rectangle of
    area fraction s ~ U(scale) and aspect ratio r (log-uniform in ``ratio``), h = sqrt(s*H*W*r),
    w = sqrt(s*H*W/r) clipped to the image, at a uniform position, is filled with N(0, 1) noise
    (random values in normalised units, as in the paper)."""
    b, c, h, w = x.shape
    area = h * w * (scale[0] + (scale[1] - scale[0]) * _uniform(b, generator, x.device))
    log_r = [math.log(r) for r in ratio]
    r = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * _uniform(b, generator, x.device))
    eh = torch.sqrt(area * r).round().long().clamp(1, h)
    ew = torch.sqrt(area / r).round().long().clamp(1, w)
    top = (_uniform(b, generator, x.device) * (h - eh + 1)).long()
    left = (_uniform(b, generator, x.device) * (w - ew + 1)).long()
    apply = _uniform(b, generator, x.device) < p
    mask = _boxes_mask(top, left, eh, ew, h, w) & apply[:, None, None, None]
    noise = torch.randn(x.shape, generator=_on_device(generator, x.device), device=x.device,
                        dtype=x.dtype)
    return torch.where(mask, noise, x)


def _permutation(b, generator, device):
    return to_device(torch.randperm(b, generator=generator), device)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """mixup (Zhang et al., 2018): lam ~ Beta(alpha, alpha) once per batch,
    x' = lam x + (1 - lam) x[perm], y' = lam y + (1 - lam) y[perm]. Returns (x', y', perm, lam)."""
    lam = _beta(alpha, generator)
    perm = _permutation(x.shape[0], generator, x.device)
    return x * lam + x[perm] * (1 - lam), y * lam + y[perm] * (1 - lam), perm, lam


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al., 2019): lam ~ Beta(alpha, alpha); one box of side (H, W) x sqrt(1 - lam)
    centred uniformly (clipped) is pasted from x[perm]; the targets mix by the box's actual
    area: lam' = 1 - box area / (H W). Returns (x', y', perm, lam')."""
    b, _, h, w = x.shape
    lam = _beta(alpha, generator)
    perm = _permutation(b, generator, x.device)
    cut = (1.0 - lam) ** 0.5
    cy, cx = (torch.rand(2, generator=generator) * torch.tensor([h, w])).long().tolist()
    top, bottom = max(cy - int(h * cut) // 2, 0), min(cy + int(h * cut) // 2, h)
    left, right = max(cx - int(w * cut) // 2, 0), min(cx + int(w * cut) // 2, w)
    x = x.clone()
    x[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return x, y * lam + y[perm] * (1 - lam), perm, lam


def ricap(x: Tensor, y: Tensor, beta: float,
          generator: torch.Generator) -> tuple[Tensor, Tensor, list[Tensor], list[float]]:
    """RICAP (Takahashi et al., 2018): the image is cut at a point (w0, h0) with
    w0 = round(W Beta(beta, beta)), h0 = round(H Beta(beta, beta)) into four areas, each filled by
    a random crop of its size from a differently permuted batch; targets are weighted by area.
    Returns (x', y', perms, weights)."""
    b, _, h, w = x.shape
    w0 = int(round(w * _beta(beta, generator)))
    h0 = int(round(h * _beta(beta, generator)))
    sizes = [(h0, w0), (h0, w - w0), (h - h0, w0), (h - h0, w - w0)]
    places = [(0, 0), (0, w0), (h0, 0), (h0, w0)]
    out = torch.empty_like(x)
    target = torch.zeros_like(y)
    perms, weights = [], []
    for (ph, pw), (top, left) in zip(sizes, places):
        perm = _permutation(b, generator, x.device)
        sy = int(torch.randint(0, h - ph + 1, (1,), generator=generator))
        sx = int(torch.randint(0, w - pw + 1, (1,), generator=generator))
        out[:, :, top:top + ph, left:left + pw] = x[perm, :, sy:sy + ph, sx:sx + pw]
        weight = ph * pw / (h * w)
        target += weight * y[perm]
        perms.append(perm)
        weights.append(weight)
    return out, target, perms, weights


def dual_cutout(x: torch.Tensor, y: torch.Tensor, size: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual-Cutout, as hysts/pytorch_image_classification trains it: two independent cutouts of
    every image, stacked as [view 1; view 2], with the targets repeated to match (the loss is
    ``DualCutoutLoss``)."""
    return torch.cat([cutout(x, size, generator), cutout(x, size, generator)]), torch.cat([y, y])


class DualCutoutLoss(nn.Module):
    """For a batch built by ``dual_cutout``: the mean of the two views' cross-entropies plus
    ``alpha`` x the mean squared difference of their softmax outputs."""

    def __init__(self, alpha: float, label_smoothing: float = 0.0):
        super().__init__()
        self.alpha = alpha
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out1, out2 = output.float().chunk(2)
        y = target.chunk(2)[0]
        ce = 0.5 * (self.cross_entropy(out1, y) + self.cross_entropy(out2, y))
        return ce + self.alpha * F.mse_loss(out1.softmax(1), out2.softmax(1))


class BatchAugment:
    """Applies ``regularisers`` in order: cutout, random erasing, then the one mixing method.
    ``enabled`` is False when nothing was asked for."""

    def __init__(self, num_classes: int, regularisers: Regularisers = Regularisers()):
        self.num_classes, self.regs = num_classes, regularisers
        self.enabled = regularisers.enabled

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(the regularised batch, its targets: one-hot mixtures after a mixing method)."""
        regs = self.regs
        if regs.dual_cutout:
            return dual_cutout(x, y, regs.cutout, generator)
        if regs.cutout:
            x = cutout(x, regs.cutout, generator)
        if regs.random_erasing:
            x = random_erasing(x, generator, regs.random_erasing)
        if regs.mixup:
            x, y, _, _ = mixup(x, one_hot(y, self.num_classes), regs.mixup, generator)
        elif regs.cutmix:
            x, y, _, _ = cutmix(x, one_hot(y, self.num_classes), regs.cutmix, generator)
        elif regs.ricap:
            x, y, _, _ = ricap(x, one_hot(y, self.num_classes), regs.ricap, generator)
        return x, y
