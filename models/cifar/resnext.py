"""ResNeXt for CIFAR (Xie et al., 2017, section 5.3): a 64-channel 3x3 stem and three stages of
grouped bottlenecks with outputs 64w, 128w, 256w (w = widen_factor) on 32/16/8 pixels.
Depth 9n+2 (29 = 3 blocks per stage). Module names are the reference's
(stage_1.stage_1_bottleneck_0...)."""
import torch
import torch.nn as nn

from ..blocks import squeeze_excitation
from ..layers import ConvLayer, NormLayer, init_weights, zero_init_last_norms
from ..norms import batch_norm
from ..twins import twins

__all__ = ["CifarResNeXt", "ResNeXtBottleneck", "resnext", "l_resnext", "se_resnext",
           "l_se_resnext"]


class ResNeXtBottleneck(nn.Module):
    """reduce 1x1 -> grouped 3x3 (``cardinality`` groups) -> expand 1x1, plus a projection
    shortcut when the width or stride changes. Inner width D = cardinality * out / widen_factor
    (8x64d at widen_factor 4: 512 channels in stage 1)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, cardinality: int,
                 widen_factor: int, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm, se_reduction: int = 0):
        super().__init__()
        width = cardinality * out_channels // widen_factor
        self.conv_reduce = conv_layer(in_channels, width, kernel_size=1, bias=False)
        self.bn_reduce = norm_layer(width)
        self.conv_conv = conv_layer(width, width, kernel_size=3, stride=stride, padding=1,
                                    groups=cardinality, bias=False)
        self.bn = norm_layer(width)
        self.conv_expand = conv_layer(width, out_channels, kernel_size=1, bias=False)
        self.bn_expand = norm_layer(out_channels)
        self.se = squeeze_excitation(out_channels, se_reduction)
        self.shortcut = nn.Sequential()
        if in_channels != out_channels or stride != 1:
            self.shortcut.add_module("shortcut_conv", conv_layer(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=False))
            self.shortcut.add_module("shortcut_bn", norm_layer(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def last_residual_norm(self) -> nn.Module:
        return self.bn_expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn_reduce(self.conv_reduce(x)))
        out = self.relu(self.bn(self.conv_conv(out)))
        out = self.se(self.bn_expand(self.conv_expand(out)))
        return self.relu(out + self.shortcut(x))


class CifarResNeXt(nn.Module):
    def __init__(self, cardinality: int = 8, depth: int = 29, num_classes: int = 10,
                 widen_factor: int = 4, dropRate: float = 0.0, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm, zero_init_residual: bool = False,
                 se_reduction: int = 0):
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"resnext needs depth = 9n+2 (11, 20, 29, ...), got {depth}")
        n = (depth - 2) // 9
        stages = [64, 64 * widen_factor, 128 * widen_factor, 256 * widen_factor]
        self.conv_1_3x3 = conv_layer(3, 64, kernel_size=3, padding=1, bias=False)
        self.bn_1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        for i, stride in enumerate([1, 2, 2], start=1):
            stage = nn.Sequential()
            for j in range(n):
                stage.add_module(f"stage_{i}_bottleneck_{j}", ResNeXtBottleneck(
                    stages[i - 1] if j == 0 else stages[i], stages[i], stride if j == 0 else 1,
                    cardinality, widen_factor, conv_layer, norm_layer, se_reduction))
            self.add_module(f"stage_{i}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # The reference accepts dropRate without using it; here it drops before the classifier.
        self.dropout = nn.Dropout(dropRate)
        self.classifier = nn.Linear(stages[3], num_classes)
        init_weights(self)
        nn.init.kaiming_normal_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        if zero_init_residual:
            zero_init_last_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_1(self.conv_1_3x3(x)))
        x = self.stage_3(self.stage_2(self.stage_1(x)))
        return self.classifier(self.dropout(self.avgpool(x).flatten(1)))


resnext, l_resnext = twins(CifarResNeXt, "resnext", fixed={"se_reduction": 0})
# SE-ResNeXt: squeeze-and-excitation (reduction r) on every bottleneck's output.
se_resnext, l_se_resnext = twins(CifarResNeXt, "se_resnext", se_reduction=16)
