"""GN+WS models for deployment: Weight Standardization folded into plain convolutions.

WS standardizes every conv weight on every forward (models.layers.standardize_weight; a
network computes all of them together, models.standardization):

    W_hat[o] = (W[o] - mean(W[o])) / (std(W[o]) + eps)

At inference W is fixed, so W_hat is a constant: computing it once and storing it in a plain
``nn.Conv2d`` gives the same outputs without the per-forward standardization, and a model that
runs and exports like any CNN (GroupNorm stays as it is). A folded state_dict has the same keys
as the WS model's, since WSConv2d keeps nn.Conv2d's parameters.
"""
import copy

import torch
import torch.nn as nn

from .layers import WSConv2d
from .standardization import standardize_convs

__all__ = ["plain_convs", "fold_weight_standardization"]


def _as_conv2d(ws, weight):
    conv = nn.Conv2d(ws.in_channels, ws.out_channels, ws.kernel_size, ws.stride, ws.padding,
                     ws.dilation, ws.groups, ws.bias is not None, ws.padding_mode,
                     device=ws.weight.device, dtype=ws.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if ws.bias is not None:
            conv.bias.copy_(ws.bias)
    return conv


def _replace_ws(model, weight_of):
    for name, child in model.named_children():
        if isinstance(child, WSConv2d):
            setattr(model, name, _as_conv2d(child, weight_of(child)))
        else:
            _replace_ws(child, weight_of)
    return model


def plain_convs(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every WSConv2d a plain nn.Conv2d holding the same raw weight:
    the BN-free twin built with plain convs, into which a folded state_dict loads."""
    return _replace_ws(copy.deepcopy(model), lambda ws: ws.weight)


@torch.no_grad()
def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every WSConv2d replaced by an nn.Conv2d holding its standardized
    weight, computed once as the network computes it (models.standardization: all convs
    together, in float32 at least): the same function at inference, no WS cost."""
    folded = copy.deepcopy(model)
    convs = [m for m in folded.modules() if isinstance(m, WSConv2d)]
    standardized = {conv: weight.to(conv.weight.dtype)
                    for conv, weight in zip(convs, standardize_convs(convs))}
    return _replace_ws(folded, standardized.__getitem__).eval()
