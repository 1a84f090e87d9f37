"""Micro-batch normalisation without a Python loop over the micro-batches (``--ghost-batch``):
the statistics of every chunk of a batch at once, and the running estimates a sequence of
chunk updates leaves, in closed form. models.norms uses these for Ghost BN and for BCN's
micro-batch batch part; the definitions they reproduce (one chunk after another) are the
sequential loops in tests/test_norms.py.

A batch of B images in chunks of N is K = ceil(B / N) chunks: the first B // N as one
(K', N, C, H, W) view, and a shorter last chunk, if any, on its own; so a normalisation is two
kernel calls at most, not K.

Running estimates updated once per chunk with rate r (m_k = (1 - r) m_{k-1} + r s_k) are a
linear recurrence: every m_k at once is

    m_k = (1 - r)^k m_0 + sum_{j <= k} r (1 - r)^(k - j) s_j,

a (K + 1) x K lower-triangular matrix of weights times the chunks' statistics (in float64).
"""
from typing import NamedTuple

import torch

__all__ = ["ChunkMoments", "chunk_moments", "estimate_path", "per_chunk"]


class ChunkMoments(NamedTuple):
    """Per chunk and channel: the mean and the biased variance over the chunk's images and
    pixels ((K, C) each), and each chunk's number of images (K,)."""
    mean: torch.Tensor
    var: torch.Tensor
    images: torch.Tensor


def _parts(x: torch.Tensor, size: int) -> tuple:
    """(the full chunks as a (K', N, C, H, W) view or None, the shorter last chunk or None)."""
    full = x.shape[0] // size
    head = x[:full * size].view(full, size, *x.shape[1:]) if full else None
    tail = x[full * size:] if x.shape[0] % size else None
    return head, tail


def chunk_moments(x: torch.Tensor, size: int) -> ChunkMoments:
    """The ChunkMoments of ``x`` (B, C, H, W) in chunks of ``size`` images."""
    head, tail = _parts(x, size)
    means, variances, images = [], [], []
    if head is not None:
        var, mean = torch.var_mean(head, dim=(1, 3, 4), correction=0)
        means.append(mean)
        variances.append(var)
        images += [size] * head.shape[0]
    if tail is not None:
        var, mean = torch.var_mean(tail, dim=(0, 2, 3), correction=0)
        means.append(mean[None])
        variances.append(var[None])
        images.append(tail.shape[0])
    return ChunkMoments(torch.cat(means), torch.cat(variances),
                        torch.tensor(images, device=x.device))


def estimate_path(initial: torch.Tensor, values: torch.Tensor, rate: float) -> torch.Tensor:
    """Every estimate of the recurrence m_k = (1 - rate) m_{k-1} + rate values_k from
    m_0 = ``initial`` (C,) over ``values`` (K, C): the (K + 1, C) rows m_0 .. m_K, in float64."""
    k = values.shape[0]
    keep = 1.0 - rate
    steps = torch.arange(k + 1, device=values.device, dtype=torch.float64)
    lag = steps[:, None] - steps[None, 1:]  # k - j for rows k = 0..K, columns j = 1..K
    weights = torch.where(lag >= 0, rate * keep ** lag.clamp(min=0), 0.0)
    return (keep ** steps)[:, None] * initial.double()[None] + weights @ values.double()


def per_chunk(x: torch.Tensor, size: int, scale: torch.Tensor,
              shift: torch.Tensor) -> torch.Tensor:
    """x * scale_k + shift_k with chunk k's per-channel ``scale`` and ``shift`` ((K, C) each),
    for ``x`` (B, C, H, W) in chunks of ``size`` images; the result in ``x``'s memory format."""
    head, tail = _parts(x, size)
    out = []
    if head is not None:
        k = head.shape[0]
        out.append((head * scale[:k, None, :, None, None] + shift[:k, None, :, None, None])
                   .flatten(0, 1))
    if tail is not None:
        out.append(tail * scale[-1, None, :, None, None] + shift[-1, None, :, None, None])
    y = torch.cat(out) if len(out) > 1 else out[0]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last)
    return y
