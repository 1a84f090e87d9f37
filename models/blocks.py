"""Post-activation residual blocks (He et al., 2016) shared by the CIFAR and ImageNet ResNets.

Module names follow torchvision (conv1/bn1/..., downsample.0 conv + downsample.1 norm), which is
also the reference's layout, so checkpoints of either load. The conv and norm are injected.
With ``se_reduction`` r > 0 a block is a Squeeze-and-Excitation block (Hu et al., 2018): the
residual branch's output is rescaled per channel by sigmoid(W2 relu(W1 avgpool(out))) with a
C -> C/r -> C bottleneck (torchvision.ops.SqueezeExcitation, module ``se``) before the addition.
"""
from typing import Any, Optional

import torch
import torch.nn as nn
from torchvision.ops import SqueezeExcitation

from .layers import ConvLayer, NormLayer


def squeeze_excitation(channels: int, reduction: int) -> nn.Module:
    """An SE module for ``channels`` with reduction r (at least one squeezed channel), or
    nn.Identity for r = 0."""
    if not reduction:
        return nn.Identity()
    return SqueezeExcitation(channels, max(1, channels // reduction))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = nn.BatchNorm2d, groups: int = 1, base_width: int = 64,
                 se_reduction: int = 0):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        self.conv1 = conv_layer(inplanes, planes, kernel_size=3, stride=stride,
                                padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv_layer(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.se = squeeze_excitation(planes, se_reduction)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_residual_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride, optionally grouped: ResNeXt type C), 1x1 expand by 4.

    Width of the 3x3 conv: floor(planes * base_width / 64) * groups, so groups=32, base_width=4
    is ResNeXt 32x4d and groups=1, base_width=64 the plain ResNet bottleneck."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = nn.BatchNorm2d, groups: int = 1, base_width: int = 64,
                 se_reduction: int = 0):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = conv_layer(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = conv_layer(width, width, kernel_size=3, stride=stride, padding=1,
                                groups=groups, bias=False)
        self.bn2 = norm_layer(width)
        self.conv3 = conv_layer(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.se = squeeze_excitation(planes * self.expansion, se_reduction)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_residual_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


BLOCKS = {"basicblock": BasicBlock, "bottleneck": Bottleneck}


def block_by_name(name: str) -> type[nn.Module]:
    """'BasicBlock' or 'Bottleneck' (any case) -> the class."""
    try:
        return BLOCKS[name.lower()]
    except KeyError:
        raise ValueError(f"block_name must be BasicBlock or Bottleneck, got {name!r}") from None


def make_stage(block: type[nn.Module], inplanes: int, planes: int, num_blocks: int, stride: int,
               conv_layer: ConvLayer, norm_layer: NormLayer, shortcut_norm: bool = True,
               **block_kwargs: Any) -> nn.Sequential:
    """``num_blocks`` blocks; the first changes stride/width through a 1x1 conv (+ norm) shortcut.

    Returns (stage, out_channels)."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        layers = [conv_layer(inplanes, out_channels, kernel_size=1, stride=stride, bias=False)]
        if shortcut_norm:
            layers.append(norm_layer(out_channels))
        downsample = nn.Sequential(*layers)
    blocks = [block(inplanes, planes, stride, downsample, conv_layer=conv_layer,
                    norm_layer=norm_layer, **block_kwargs)]
    blocks += [block(out_channels, planes, conv_layer=conv_layer, norm_layer=norm_layer,
                     **block_kwargs) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks), out_channels
