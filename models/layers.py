"""Building blocks shared by every model family: the convolution and normalisation factories.

Each network class takes a ``conv_layer`` and a ``norm_layer`` argument (the way torchvision's
ResNet takes ``norm_layer``). The plain models pass ``nn.Conv2d`` / ``batch_norm``; the GN+WS
``l_*`` models pass ``WSConv2d`` / ``group_norm_factory(G)``. Nothing else differs.

Factory signatures, which every family relies on:
    conv_layer(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=False)
    norm_layer(num_channels) -> nn.Module
"""
import functools

import torch
import torch.nn as nn

WS_EPS = 1e-5


def standardize_weight(weight, eps=WS_EPS):
    """Weight Standardization (Qiao et al., 2019, arXiv:1903.10520), as in the reference code.

    For every output channel o, over all its elements (in_channels/groups x kH x kW):

        W_hat[o] = (W[o] - mean(W[o])) / (std(W[o]) + eps)

    with the unbiased standard deviation (divisor n - 1) and eps added to the std, not to the
    variance. The computation runs in float32 at least (float64 stays float64) and outside autocast,
    so bf16/fp16 training never standardizes in low precision.
    """
    dtype = torch.promote_types(weight.dtype, torch.float32)
    with torch.autocast(device_type=weight.device.type, enabled=False):
        w = weight.to(dtype)
        flat = w.flatten(1)
        mean = flat.mean(dim=1)
        std = flat.std(dim=1, correction=1)
        shape = (-1,) + (1,) * (w.dim() - 1)
        return (w - mean.view(shape)) / (std.view(shape) + eps)


class WSConv2d(nn.Conv2d):
    """A Conv2d whose weight is standardized (see ``standardize_weight``) on every forward.

    The stored parameter is the raw weight, so the state_dict equals a plain ``nn.Conv2d``'s and
    reference checkpoints load unchanged.
    """

    def standardized_weight(self):
        return standardize_weight(self.weight)

    def forward(self, x):
        weight = self.standardized_weight()
        if not torch.is_autocast_enabled(x.device.type):
            # Outside autocast the conv runs in the input's dtype (fp32 model, or fp64 in tests).
            weight = weight.to(x.dtype)
        return self._conv_forward(x, weight, self.bias)


def batch_norm(num_channels):
    return nn.BatchNorm2d(num_channels)


def group_norm(num_channels, num_groups=32, fit_width=False):
    """GroupNorm with at most ``num_groups`` groups.

    The rule: a layer with C >= G channels gets G groups and C must be divisible by G; a layer
    narrower than G (the 16-channel stage of a CIFAR ResNet with G = 32) gets one group per channel.
    So G = 32 reproduces the reference's GroupNorm(32, C) on every ImageNet layer.
    With ``fit_width`` (networks of irregular widths, PyramidNet) a layer gets instead the
    largest divisor of C that is at most G.
    """
    groups = min(num_groups, num_channels)
    if fit_width:
        groups = max(d for d in range(1, groups + 1) if num_channels % d == 0)
    if num_channels % groups:
        raise ValueError(
            f"GroupNorm: {num_channels} channels cannot be split into {groups} groups; "
            f"choose a group count that divides every layer width (e.g. --gn-groups 16)")
    return nn.GroupNorm(groups, num_channels)


def group_norm_factory(num_groups=32, fit_width=False):
    """A ``norm_layer`` for the model classes: GroupNorm with ``num_groups`` groups (rule above)."""
    if num_groups < 1:
        raise ValueError(f"GroupNorm needs at least one group, got {num_groups}")
    return functools.partial(group_norm, num_groups=num_groups, fit_width=fit_width)


NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm)


def init_weights(model):
    """The reference initialisation: convs kaiming normal (fan_out, ReLU gain), conv biases zero,
    norm weight 1 and bias 0. Linear layers keep PyTorch's default unless a family says otherwise."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORM_TYPES):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def zero_init_last_norms(model):
    """Zero the weight of the last norm in every residual branch, so each residual block starts
    as the identity (Goyal et al., 2017). Blocks name that norm through ``last_residual_norm()``."""
    for m in model.modules():
        if hasattr(m, "last_residual_norm"):
            nn.init.zeros_(m.last_residual_norm().weight)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from chunks of ``ghost_batch`` images (Ghost
    Batch Normalization, Hoffer et al., 2017, arXiv:1705.08741): a batch of B images is
    normalised as ceil(B / ghost_batch) independent batches, each also updating the running
    statistics once. Evaluation uses the running statistics as usual; the state_dict is a
    BatchNorm2d's."""

    def __init__(self, num_features, ghost_batch, **kwargs):
        super().__init__(num_features, **kwargs)
        self.ghost_batch = ghost_batch

    def forward(self, x):
        if not self.training or x.shape[0] <= self.ghost_batch:
            return super().forward(x)
        return torch.cat([super(GhostBatchNorm2d, self).forward(chunk)
                          for chunk in x.split(self.ghost_batch)])


def use_ghost_batch_norm(model, ghost_batch):
    """Replace every BatchNorm2d of ``model`` by a GhostBatchNorm2d with the same parameters and
    statistics, in place. Returns the number replaced."""
    replaced = 0
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            ghost = GhostBatchNorm2d(child.num_features, ghost_batch, eps=child.eps,
                                     momentum=child.momentum, affine=child.affine,
                                     track_running_stats=child.track_running_stats)
            ghost.load_state_dict(child.state_dict())
            setattr(model, name, ghost)
            replaced += 1
        else:
            replaced += use_ghost_batch_norm(child, ghost_batch)
    return replaced
