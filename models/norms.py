"""The normalisation layers a network can be built with (``--norm``), and micro-batches.

Every family takes a ``norm_layer(num_channels)`` factory (models.layers says why); ``norm_layer``
below makes one of these, by name:

    bn   BatchNorm2d: per channel, over the batch and the pixels (Ioffe & Szegedy, 2015)
    gn   GroupNorm(G): per sample, over groups of channels and the pixels (Wu & He, 2018), with
         the group rule of ``group_count``
    ln   LayerNorm as GroupNorm with one group: per sample, over all channels and pixels
    in   InstanceNorm as GroupNorm with one group per channel: per sample and channel
    bcn  BatchChannelNorm2d: a batch part, then a channel (group) part per sample (Qiao et al.,
         arXiv:1903.10520 v2+, "Micro-Batch Training with Batch-Channel Normalization and
         Weight Standardization")

ln and in are GroupNorm modules (GroupNorm(1, C) is LayerNorm over (C, H, W) with a per-channel
affine, GroupNorm(C, C) InstanceNorm2d with a per-channel affine), so every channel norm has
GroupNorm's state_dict and the GN+WS twins keep the reference's keys.

Micro-batches (``--ghost-batch N``, ``use_micro_batches``): a training batch normalised as
independent chunks of N images. BN takes each chunk's own statistics (Ghost BN); BCN's batch part
normalises each chunk with running estimates updated from it, the paper's micro-batch BCN.
"""
import dataclasses
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .micro_batches import (ChunkMoments, batch_norm_per_chunk, chunk_moments, estimate_after,
                            estimate_path)

__all__ = ["NORMS", "BATCH_NORMS", "GROUP_NORMS", "GN_NARROW_RULES", "NORM_DEFAULTS", "batch_norm",
           "group_count", "group_norm", "layer_norm",
           "instance_norm", "BatchChannelNorm2d", "GhostBatchNorm2d", "NormChoice",
           "use_micro_batches", "NORM_TYPES"]

NORMS = ("bn", "gn", "ln", "in", "bcn")
BATCH_NORMS = ("bn", "bcn")  # the norms with batch statistics
GROUP_NORMS = ("gn", "bcn")  # the norms that take --gn-groups
GN_NARROW_RULES = ("pairs", "channels")


@dataclasses.dataclass(frozen=True)
class NormChoice:
    """Which normalisation a network is built with (--norm and its options): ``norm`` one of
    NORMS; ``gn_groups`` and ``gn_narrow`` the group count and rule of gn and of bcn's channel
    part (``group_count``); ``bcn_speed`` the speed of bcn's micro-batch estimates.

    Its field defaults are the project's norm defaults, written nowhere else: the pair options of
    every constructor (models.twins), the flags' defaults and help (utils.settings.table) and the
    layers' own defaults read them from here (``NORM_DEFAULTS``). One script changes one:
    cifar.py's --gn-groups default is 8 (its 16-64-channel layers), declared once among its
    script defaults (utils.scripts); imagenet.py takes this one."""
    norm: str = "bn"
    gn_groups: int = 32
    gn_narrow: str = "pairs"
    bcn_speed: float = 0.01

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        group_count(2 * self.gn_groups, self.gn_groups, self.gn_narrow)  # checks both

    def layer(self, num_channels: int) -> nn.Module:
        """The norm layer of ``num_channels`` channels: the ``norm_layer`` of a family."""
        if self.norm == "bn":
            return batch_norm(num_channels)
        if self.norm == "ln":
            return layer_norm(num_channels)
        if self.norm == "in":
            return instance_norm(num_channels)
        groups = group_count(num_channels, self.gn_groups, self.gn_narrow)
        if self.norm == "gn":
            return nn.GroupNorm(groups, num_channels)
        return BatchChannelNorm2d(num_channels, groups, self.bcn_speed)


# The options of a norm pair and their defaults, from NormChoice's fields.
NORM_DEFAULTS = {f.name: f.default for f in dataclasses.fields(NormChoice)}


def _float32_at_least(dtype: torch.dtype) -> torch.dtype:
    # torch.promote_types(dtype, float32) for floating dtypes, decided on the host (as an op
    # it would be dispatched, and counted, on every call)
    return torch.float64 if dtype == torch.float64 else torch.float32


def batch_norm(num_channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(num_channels)


def group_count(num_channels: int, num_groups: int, narrow: str = NormChoice.gn_narrow) -> int:
    """The number of groups GroupNorm(``num_groups``) gets on a layer of ``num_channels``: one
    rule for every network, so any width takes the default G.

    pairs (the default rule): the largest divisor d of C with d <= G and C / d >= 2, i.e. G
    groups where G divides C and C >= 2G (every ImageNet layer of the reference: GroupNorm(32,
    C)); on a width G does not divide, the largest divisor below G (80 channels at G = 32: 20
    groups of 4; torchvision's mobile widths 40, 56, 58, 72, 88, 104, 120, 122: 20, 28, 29, 24,
    22, 26, 30, 2); on a narrow layer C / 2 groups of 2 channels for even C (the 16- and
    32-channel stages of a CIFAR ResNet at G = 32: 8 and 16 groups), so GN never silently
    becomes IN (``--norm in`` is that). A prime width gets one group (LN there); a single
    channel is one group. This is the usual practice for GN on such widths (the largest
    divisor at most G).

    channels (the rule of checkpoints from before --norm existed): the largest divisor of C at
    most min(G, C), so a layer narrower than G has one group per channel.
    """
    if num_groups < 1:
        raise ValueError(f"GroupNorm needs at least one group, got {num_groups}")
    if narrow not in GN_NARROW_RULES:
        raise ValueError(f"gn_narrow must be one of {', '.join(GN_NARROW_RULES)}, got {narrow!r}")
    c = num_channels
    most = min(num_groups, c) if narrow == "channels" else min(num_groups, c // 2)
    return max([d for d in range(1, most + 1) if c % d == 0] or [1])


def group_norm(num_channels: int, num_groups: int,
               narrow: str = NormChoice.gn_narrow) -> nn.GroupNorm:
    """GroupNorm with the groups of ``group_count``: per sample, each group of channels is
    normalised over its channels and pixels, y = (x - mean) / sqrt(var + 1e-5) * w + b with a
    per-channel affine (w, b)."""
    return nn.GroupNorm(group_count(num_channels, num_groups, narrow), num_channels)


def layer_norm(num_channels: int) -> nn.GroupNorm:
    """LayerNorm of a conv feature map: GroupNorm with one group, per sample over (C, H, W)."""
    return nn.GroupNorm(1, num_channels)


def instance_norm(num_channels: int) -> nn.GroupNorm:
    """InstanceNorm: GroupNorm with one group per channel, per sample and channel over (H, W)."""
    return nn.GroupNorm(num_channels, num_channels)


class BatchChannelNorm2d(nn.Module):
    """Batch-Channel Normalization (Qiao et al., arXiv:1903.10520 v2+; arithmetic of the authors'
    released code): a batch part, then a channel part.

    Batch part, ``bn`` (a BatchNorm2d, whose state_dict it keeps): per channel c,
        x' = gamma_c (x - m_c) / sqrt(v_c + eps) + beta_c
    In large-batch training (m, v) are the batch's own statistics, exactly BatchNorm. In
    micro-batch training (``micro_batch`` N > 0, set by ``use_micro_batches``) each chunk of N
    images is normalised with running estimates, updated from the chunk before it is
    normalised, at ``speed`` r:
        mu_c  = mean of the chunk's x_c                   (over images and pixels)
        s2_c  = mean of (x_c - m_c)^2, around the estimate m_c before this update
        m_c  <- (1 - r) m_c + r mu_c
        v_c  <- (1 - r) v_c + r s2_c
        x'    = gamma_c (x - m_c) / sqrt(v_c + eps) + beta_c    with the updated m, v
    No gradient flows through the estimates (they are statistics, not functions of this
    chunk's weights). Evaluation uses (m, v) as BatchNorm does.

    Channel part: per sample, GroupNorm without affine over ``num_groups`` groups, then an
    affine per group (``weight``, ``bias`` of G values, as in the authors' code):
        y = w_g (x' - mean_g) / sqrt(var_g + eps) + b_g
    """

    def __init__(self, num_channels: int, num_groups: int = NormChoice.gn_groups,
                 speed: float = NormChoice.bcn_speed,
                 eps: float = 1e-5):
        super().__init__()
        if not 0.0 < speed <= 1.0:
            raise ValueError(f"BCN's estimate speed must be in (0, 1], got {speed}")
        self.num_channels, self.num_groups, self.speed, self.eps = (
            num_channels, num_groups, speed, eps)
        self.micro_batch = 0
        self.bn = nn.BatchNorm2d(num_channels, eps=eps)
        self.weight = nn.Parameter(torch.ones(num_groups))
        self.bias = nn.Parameter(torch.zeros(num_groups))

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, groups={self.num_groups}, speed={self.speed}, "
                f"micro_batch={self.micro_batch}")

    def reset_parameters(self) -> None:
        self.bn.reset_parameters()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def _with_estimates(self, x: torch.Tensor) -> torch.Tensor:
        """The batch part on micro-batches: every chunk's estimate update and normalisation at
        once (models.micro_batches), in float32 at least (under autocast too). The spread
        around the previous estimate is the chunk's variance plus (mean - m_{k-1})^2."""
        bn, n = self.bn, self.micro_batch
        dtype = _float32_at_least(x.dtype)
        with torch.no_grad():
            moments = chunk_moments(x.detach().to(bn.running_mean.dtype), n)
            chunk_means = moments.mean.double()
            means = estimate_path(bn.running_mean, chunk_means, self.speed)
            spreads = (chunk_means - means[:-1]).square_().add_(moments.var)
            variances = estimate_path(bn.running_var, spreads, self.speed)
            bn.running_mean.copy_(means[-1])
            bn.running_var.copy_(variances[-1])
            bn.num_batches_tracked += len(moments.images)
            given = ChunkMoments(means[1:].to(dtype), variances[1:].to(dtype), moments.images)
        # No gradient through the estimates: they are statistics, constants of this step.
        return batch_norm_per_chunk(x.to(dtype), n, bn.weight.to(dtype), bn.bias.to(dtype),
                                    bn.eps, given)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.micro_batch:
            x = self._with_estimates(x)
        else:
            x = self.bn(x)
        return self._channel_part(x)

    def _channel_part(self, x: torch.Tensor) -> torch.Tensor:
        """GroupNorm with one affine per group. On an NCHW input the G groups are read as G
        channels of (C/G) x H x W elements each (the same memory, the same statistics), so
        GroupNorm's native kernel takes the G affine values as they are: one kernel each way,
        where a per-channel copy of them costs four more. Under autocast it runs in float32, as
        autocast runs group_norm. A channels-last input keeps its layout and its per-channel
        affine, and so does a traced one (torch.compile, torch.export: their shape checks want
        C affine values for C channels)."""
        if x.is_contiguous() and not torch.compiler.is_compiling():  # compilers check shapes
            if torch.is_autocast_enabled(x.device.type):
                x = x.float()
            n, g = x.shape[0], self.num_groups
            return torch.native_group_norm(x, self.weight.to(x.dtype), self.bias.to(x.dtype), n,
                                           g, x[0].numel() // g, g, self.eps)[0]
        per_channel = self.num_channels // self.num_groups
        return F.group_norm(x, self.num_groups, self.weight.repeat_interleave(per_channel),
                            self.bias.repeat_interleave(per_channel), self.eps)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from chunks of ``ghost_batch`` images (Ghost
    Batch Normalization, Hoffer et al., 2017, arXiv:1705.08741): a batch of B images is
    normalised as ceil(B / ghost_batch) independent batches, each also updating the running
    statistics once. Evaluation uses the running statistics as usual; the state_dict is a
    BatchNorm2d's."""

    def __init__(self, num_features: int, ghost_batch: int, **kwargs: Any):
        super().__init__(num_features, **kwargs)
        self.ghost_batch = ghost_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.ghost_batch:
            return super().forward(x)
        if self.momentum is None or not self.track_running_stats or not self.affine:
            # A cumulative average or no affine: the definition, one chunk after another.
            return torch.cat([super(GhostBatchNorm2d, self).forward(chunk)
                              for chunk in x.split(self.ghost_batch)])
        return self._chunks_at_once(x)

    def _chunks_at_once(self, x: torch.Tensor) -> torch.Tensor:
        """Every chunk normalised by its own statistics in one native batch norm, and the
        running statistics its K updates leave, at once (models.micro_batches); in float32 at
        least, as BatchNorm is under autocast. The running variance takes each chunk's
        unbiased variance."""
        n, dtype = self.ghost_batch, _float32_at_least(x.dtype)
        if min(n, x.shape[0] % n or n) * x[0, 0].numel() < 2:  # on the host: no device sync
            raise ValueError("Expected more than 1 value per channel when training")
        y, moments = batch_norm_per_chunk(x.to(dtype), n, self.weight.to(dtype),
                                          self.bias.to(dtype), self.eps)
        with torch.no_grad():
            estimate_after(self.running_mean, moments.mean, self.momentum)
            estimate_after(self.running_var, moments.var, self.momentum)
            self.num_batches_tracked += len(moments.images)
        return y


def use_micro_batches(model: nn.Module, size: int) -> int:
    """Train ``model``'s batch norms on micro-batches of ``size`` images, in place: every plain
    BatchNorm2d becomes a GhostBatchNorm2d with the same parameters and statistics, and every
    BatchChannelNorm2d normalises its batch part with running estimates (its micro-batch
    form). Returns the number of layers changed (0: the model has no batch statistics)."""
    changed = 0
    if isinstance(model, BatchChannelNorm2d):
        model.micro_batch = size
        return 1
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            ghost = GhostBatchNorm2d(child.num_features, size, eps=child.eps,
                                     momentum=child.momentum, affine=child.affine,
                                     track_running_stats=child.track_running_stats)
            ghost.load_state_dict(child.state_dict())
            setattr(model, name, ghost)
            changed += 1
        else:
            changed += use_micro_batches(child, size)
    return changed


NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, BatchChannelNorm2d)
