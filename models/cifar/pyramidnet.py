"""PyramidNet for CIFAR (Han et al., 2017, "Deep Pyramidal Residual Networks", arXiv:1610.02915).

Instead of doubling the width at each of three stages, every block widens by alpha / N channels
(N blocks in all), from 16 to 16 + alpha. Blocks are pre-activation without the first ReLU
(norm -> conv -> norm -> ReLU -> conv -> norm); the shortcut is the identity, average-pooled where
the stride is 2, with zero channels appended for the extra width, so it has no parameters.
Depth 6n+2 with basic blocks, 9n+2 with bottlenecks (output 4 x width).
"""
import torch
import torch.nn as nn

from ..blocks import block_by_name
from ..layers import ConvLayer, NormLayer, init_weights, zero_init_last_norms
from ..norms import batch_norm
from ..twins import twins
from .preresnet import PreActBasicBlock, PreActBottleneck
from .resnet import stage_depth

__all__ = ["PyramidNet", "pyramidnet", "l_pyramidnet"]


class PyramidBasicBlock(PreActBasicBlock):
    """The pre-activation block without its first ReLU and with a norm after its last conv."""

    def __init__(self, inplanes: int, planes: int, stride: int, conv_layer: ConvLayer,
                 norm_layer: NormLayer):
        super().__init__(inplanes, planes, stride, None, conv_layer, norm_layer)
        self.bn3 = norm_layer(planes)

    def last_residual_norm(self) -> nn.Module:
        return self.bn3

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        return self.bn3(self.conv2(self.relu(self.bn2(out))))


class PyramidBottleneck(PreActBottleneck):
    """The pre-activation bottleneck without its first ReLU and with a norm after its last conv."""

    def __init__(self, inplanes: int, planes: int, stride: int, conv_layer: ConvLayer,
                 norm_layer: NormLayer):
        super().__init__(inplanes, planes, stride, None, conv_layer, norm_layer)
        self.bn4 = norm_layer(planes * self.expansion)

    def last_residual_norm(self) -> nn.Module:
        return self.bn4

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        return self.bn4(self.conv3(self.relu(self.bn3(out))))


class PyramidUnit(nn.Module):
    """A block plus its parameter-free shortcut: x (pooled when strided), zero-padded to the
    block's width."""

    def __init__(self, block: type[nn.Module], inplanes: int, planes: int, stride: int,
                 conv_layer: ConvLayer, norm_layer: NormLayer):
        super().__init__()
        self.block = block(inplanes, planes, stride, conv_layer, norm_layer)
        self.pool = nn.AvgPool2d(2, stride=2, ceil_mode=True) if stride != 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block.residual(x)
        shortcut = self.pool(x)
        extra = out.shape[1] - shortcut.shape[1]
        if extra:
            shortcut = torch.cat([shortcut, shortcut.new_zeros(
                shortcut.shape[0], extra, *shortcut.shape[2:])], dim=1)
        return out + shortcut


class PyramidNet(nn.Module):
    def __init__(self, depth: int = 110, alpha: int = 48, num_classes: int = 10,
                 block_name: str = "BasicBlock", in_channels: int = 3,
                 conv_layer: ConvLayer = nn.Conv2d, norm_layer: NormLayer = batch_norm,
                 zero_init_residual: bool = False):
        super().__init__()
        kind = block_by_name(block_name)
        block = PyramidBasicBlock if kind.expansion == 1 else PyramidBottleneck
        n = stage_depth(depth, kind, family="pyramidnet")
        step = alpha / (3 * n)
        self.conv1 = conv_layer(in_channels, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = norm_layer(16)
        width, channels, units = 16.0, 16, []
        for i in range(3 * n):
            width += step
            planes = int(round(width))
            stride = 2 if i in (n, 2 * n) else 1
            units.append(PyramidUnit(block, channels, planes, stride, conv_layer, norm_layer))
            channels = planes * block.expansion
        self.layer1, self.layer2, self.layer3 = (nn.Sequential(*units[k * n:(k + 1) * n])
                                                 for k in range(3))
        self.bn_final = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        if zero_init_residual:
            zero_init_last_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(self.relu(self.bn_final(x))).flatten(1))


# PyramidNet's widths grow by fractions of a channel: GroupNorm takes the largest group count
# at most G that divides each width (models.norms.group_count, the rule of every network).
pyramidnet, l_pyramidnet = twins(PyramidNet, "pyramidnet")
