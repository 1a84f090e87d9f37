"""Micro-batch normalisation without a Python loop over the micro-batches (``--ghost-batch``):
the statistics of every chunk of a batch at once, and the running estimates a sequence of
chunk updates leaves, in closed form. models.norms uses these for Ghost BN and for BCN's
micro-batch batch part; the definitions they reproduce (one chunk after another) are the
sequential loops in tests/test_norms.py.

A batch of B images in chunks of N is K = ceil(B / N) chunks: the first B // N as one
(K', N, C, H, W) view, and a shorter last chunk, if any, as a (1, B mod N, C, H, W) view of
its own; so a normalisation is two kernel calls at most, not K.

Both lay the K' chunks side by side as channels, (N, K'·C, H, W) (one copy each way), so that
one native ``F.batch_norm`` normalises each chunk's channels, and its backward is BatchNorm's
own fused one: Ghost BN by each chunk's own statistics (given zeroed running buffers and
momentum 1 that call also returns each chunk's mean and unbiased variance), BCN by its
estimates, as BatchNorm evaluates. BCN's statistics are plain sums over a view, no copy.

Running estimates updated once per chunk with rate r (m_k = (1 - r) m_{k-1} + r s_k) are a
linear recurrence: every m_k at once is

    m_k = (1 - r)^k m_0 + sum_{j <= k} r (1 - r)^(k - j) s_j,

a (K + 1) x K lower-triangular matrix of weights times the chunks' statistics (in float64).
"""
import functools
from typing import Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F

__all__ = ["ChunkMoments", "batch_norm_per_chunk", "chunk_moments", "estimate_path",
           "estimate_after"]


class ChunkMoments(NamedTuple):
    """Per chunk and channel: the mean and the variance over the chunk's images and pixels
    ((K, C) each; biased from ``chunk_moments``, unbiased from ``batch_norm_per_chunk``), and
    each chunk's number of images (K ints, known on the host)."""
    mean: torch.Tensor
    var: torch.Tensor
    images: tuple


def _parts(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """The full chunks of ``x`` as one (K', N, C, H, W) view, then the shorter last chunk as a
    (1, B mod N, C, H, W) view; either is left out when it has no images."""
    full = x.shape[0] // size
    if full:  # not sliced when it is the whole batch: a slice's backward fills a zero batch
        yield (x if full * size == x.shape[0] else x[:full * size]).unflatten(0, (full, size))
    if x.shape[0] % size:
        yield x[full * size:][None]


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _images(x: torch.Tensor, size: int) -> tuple:
    return tuple(part.shape[1] for part in _parts(x, size) for _ in range(part.shape[0]))


def chunk_moments(x: torch.Tensor, size: int) -> ChunkMoments:
    """The ChunkMoments of ``x`` (B, C, H, W) in chunks of ``size`` images, the variance biased:
    two passes of plain sums (the mean, then the squares around it), several times faster on
    the CPU than ``torch.var_mean`` over the chunk's images and pixels."""
    means, variances = [], []
    for part in _parts(x, size):
        flat = part.flatten(3)  # (K, N, C, H·W): a view in either memory format
        count = flat.shape[1] * flat.shape[3]
        mean = flat.sum(dim=(1, 3)) / count
        means.append(mean)
        variances.append((flat - mean[:, None, :, None]).square().sum(dim=(1, 3)) / count)
    return ChunkMoments(_joined(means), _joined(variances), _images(x, size))


def _chunks_as_channels(part: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(K, N, C, H, W) -> (N, K·C, H, W), chunk k's channel c as channel k·C + c: one copy, in
    the batch's memory format."""
    k, n, c, h, w = part.shape
    if channels_last:
        return part.permute(1, 3, 4, 0, 2).contiguous().view(n, h, w, k * c).permute(0, 3, 1, 2)
    return part.transpose(0, 1).contiguous().view(n, k * c, h, w)


def _channels_as_chunks(y: torch.Tensor, k: int, channels_last: bool) -> torch.Tensor:
    """The inverse of _chunks_as_channels, flattened: (N, K·C, H, W) -> (K·N, C, H, W)."""
    n, kc, h, w = y.shape
    c = kc // k
    if channels_last:
        rows = y.permute(0, 2, 3, 1).unflatten(3, (k, c)).permute(3, 0, 1, 2, 4)
        return rows.reshape(k * n, h, w, c).permute(0, 3, 1, 2)
    # reshape, not a view: an in-place op after the norm (ReLU) would make autograd copy it
    return y.unflatten(1, (k, c)).transpose(0, 1).reshape(k * n, c, h, w)


def batch_norm_per_chunk(x: torch.Tensor, size: int, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float, given: Optional[ChunkMoments] = None) -> tuple:
    """Each chunk k of ``size`` images of ``x`` (B, C, H, W) batch-normalised, with the affine
    ``weight``, ``bias`` (C,):
        y = weight (x - mean_k) / sqrt(var_k + eps) + bias
    by the chunk's own statistics (var_k biased), or by ``given`` ones (constants: no gradient
    flows into them). Returns (y in ``x``'s memory format, the ChunkMoments normalised by, the
    own ones with unbiased variances, without gradient)."""
    channels_last = _is_channels_last(x)
    outs, means, variances, first = [], [], [], 0
    for part in _parts(x, size):
        k, c = part.shape[0], part.shape[2]
        if given is None:  # filled by the call (momentum 1) with the chunks' own statistics
            mean, var = x.new_zeros(2, k * c)
        else:
            mean, var = (v[first:first + k].reshape(k * c) for v in (given.mean, given.var))
        first += k
        y = F.batch_norm(_chunks_as_channels(part, channels_last), mean, var,
                         weight.repeat(k), bias.repeat(k), given is None, 1.0, eps)
        outs.append(_channels_as_chunks(y, k, channels_last))
        means.append(mean.view(k, c))
        variances.append(var.view(k, c))
    y = torch.cat(outs) if len(outs) > 1 else outs[0]
    return y, ChunkMoments(_joined(means), _joined(variances), _images(x, size))


def _joined(parts: list) -> torch.Tensor:
    return torch.cat(parts) if len(parts) > 1 else parts[0]


@functools.lru_cache(maxsize=64)
def _path_weights(k: int, rate: float, device: torch.device,
                  dtype: torch.dtype = torch.float64) -> tuple:
    """(keep^0 .. keep^K as a (K + 1, 1) column, the (K + 1) x K lower-triangular weights
    rate keep^(k - j)), computed in float64, as ``dtype`` on ``device``: made once per chunk
    count and rate, since a layer meets the same ones every step."""
    keep = 1.0 - rate
    steps = torch.arange(k + 1, dtype=torch.float64)
    lag = steps[:, None] - steps[None, 1:]  # k - j for rows k = 0..K, columns j = 1..K
    weights = torch.where(lag >= 0, rate * keep ** lag.clamp(min=0), 0.0)
    return (keep ** steps)[:, None].to(device, dtype), weights.to(device, dtype)


def estimate_after(estimate: torch.Tensor, values: torch.Tensor, rate: float) -> None:
    """``estimate`` (C,) after the recurrence m_k = (1 - rate) m_{k-1} + rate values_k over
    ``values`` (K, C), in place: the last row of ``estimate_path``, one matrix-vector product
    in the estimate's dtype."""
    k = values.shape[0]
    weights = _path_weights(k, rate, values.device, estimate.dtype)[1]
    estimate.addmv_(values.t().to(estimate.dtype), weights[-1], beta=(1.0 - rate) ** k)


def estimate_path(initial: torch.Tensor, values: torch.Tensor, rate: float) -> torch.Tensor:
    """Every estimate of the recurrence m_k = (1 - rate) m_{k-1} + rate values_k from
    m_0 = ``initial`` (C,) over ``values`` (K, C): the (K + 1, C) rows m_0 .. m_K, in float64."""
    powers, weights = _path_weights(values.shape[0], rate, values.device)
    return torch.addmm(powers * initial.double(), weights, values.double())
