"""Shake-Shake regularised ResNet for CIFAR (Gastaldi, 2017, arXiv:1705.07485), as "26 2x96d":
depth 6n+2 (26: four blocks per stage), two residual branches per block, widths d, 2d, 4d after a
16-channel stem.

Each block returns x + a * b1(x) + (1 - a) * b2(x). In training ("Shake-Shake-Image", S-S-I) a is
drawn uniformly per image in the forward pass, and the backward pass mixes the two branches'
gradients with an independent uniform b per image; at evaluation a = b = 0.5. Branches are
ReLU -> conv3x3 -> norm -> ReLU -> conv3x3 -> norm. Where the width doubles, the shortcut is the
paper's: ReLU, then two 1x1 convs (d/2 channels each) on the input average-pooled with stride 2,
the second shifted by one pixel, concatenated and normalised.
"""
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..blocks import BasicBlock
from ..layers import ConvLayer, NormLayer, init_weights, zero_init_last_norms
from ..norms import batch_norm
from ..twins import twins
from .resnet import stage_depth

__all__ = ["ShakeShakeNet", "shake_shake", "l_shake_shake", "shake"]


class Shake(torch.autograd.Function):
    """a * x1 + (1 - a) * x2 forward; gradients b * g and (1 - b) * g backward."""

    @staticmethod
    def forward(ctx: Any, x1: torch.Tensor, x2: torch.Tensor, alpha: torch.Tensor,
                beta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(beta)
        return x1 * alpha + x2 * (1 - alpha)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        (beta,) = ctx.saved_tensors
        return grad * beta, grad * (1 - beta), None, None


def shake(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    """The S-S-I combination of two branch outputs (B, C, H, W)."""
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0], 1, 1, 1)
    alpha = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    beta = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    return Shake.apply(x1, x2, alpha, beta)


class Branch(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, stride: int, conv_layer: ConvLayer,
                 norm_layer: NormLayer):
        super().__init__(
            nn.ReLU(inplace=False),
            conv_layer(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                       bias=False),
            norm_layer(out_channels), nn.ReLU(inplace=True),
            conv_layer(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            norm_layer(out_channels))


class ShiftedShortcut(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, conv_layer: ConvLayer,
                 norm_layer: NormLayer):
        super().__init__()
        self.stride = stride
        self.conv1 = conv_layer(in_channels, out_channels // 2, kernel_size=1, bias=False)
        self.conv2 = conv_layer(in_channels, out_channels - out_channels // 2, kernel_size=1,
                                bias=False)
        self.norm = norm_layer(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        y1 = self.conv1(F.avg_pool2d(x, 1, self.stride))
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y2 = self.conv2(F.avg_pool2d(shifted, 1, self.stride))
        return self.norm(torch.cat([y1, y2], dim=1))


class ShakeBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, conv_layer: ConvLayer,
                 norm_layer: NormLayer):
        super().__init__()
        self.branch1 = Branch(in_channels, out_channels, stride, conv_layer, norm_layer)
        self.branch2 = Branch(in_channels, out_channels, stride, conv_layer, norm_layer)
        self.shortcut = (nn.Identity() if in_channels == out_channels and stride == 1 else
                         ShiftedShortcut(in_channels, out_channels, stride, conv_layer,
                                         norm_layer))

    def last_residual_norm(self) -> nn.Module:
        return self.branch1[-1], self.branch2[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake(self.branch1(x), self.branch2(x), self.training)


class ShakeShakeNet(nn.Module):
    def __init__(self, depth: int = 26, base_channels: int = 96, num_classes: int = 10,
                 in_channels: int = 3, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm, zero_init_residual: bool = False):
        super().__init__()
        n = stage_depth(depth, BasicBlock, family="shake_shake")
        if base_channels < 2:
            raise ValueError(f"shake_shake needs --base-channels >= 2 (a widening shortcut "
                             f"splits the width into two halves), got {base_channels}")
        self.conv1 = conv_layer(in_channels, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = norm_layer(16)
        channels = 16
        for i, (width, stride) in enumerate([(base_channels, 1), (2 * base_channels, 2),
                                             (4 * base_channels, 2)], start=1):
            blocks = []
            for j in range(n):
                blocks.append(ShakeBlock(channels, width, stride if j == 0 else 1, conv_layer,
                                         norm_layer))
                channels = width
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)
        if zero_init_residual:
            zero_init_last_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The stem is conv -> norm with no ReLU, as in Gastaldi's and hysts' networks: each
        # branch and shortcut starts with its own ReLU.
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(self.relu(x)).flatten(1))


shake_shake, l_shake_shake = twins(ShakeShakeNet, "shake_shake")
