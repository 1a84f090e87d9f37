"""Wide ResNet for CIFAR (Zagoruyko & Komodakis, 2016): pre-activation blocks, stages of
16k/32k/64k channels (k = widen_factor), depth 6n+4, dropout between the two convs of a block."""
import torch
import torch.nn as nn

from ..layers import ConvLayer, NormLayer, init_weights
from ..norms import batch_norm
from ..twins import twins

__all__ = ["WideResNet", "WideBasicBlock", "wrn", "l_wrn"]


class WideBasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropRate: float = 0.0,
                 conv_layer: ConvLayer = nn.Conv2d, norm_layer: NormLayer = batch_norm):
        super().__init__()
        self.bn1 = norm_layer(in_planes)
        self.conv1 = conv_layer(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                                bias=False)
        self.bn2 = norm_layer(out_planes)
        self.conv2 = conv_layer(out_planes, out_planes, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropRate)
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut = None if self.equal_in_out else conv_layer(
            in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.relu(self.bn1(x))
        out = self.conv1(preact)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        # As in the reference: a projection shortcut takes the pre-activated input.
        return out + (x if self.equal_in_out else self.convShortcut(preact))


class NetworkBlock(nn.Module):
    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int,
                 dropRate: float, conv_layer: ConvLayer, norm_layer: NormLayer):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                           stride if i == 0 else 1, dropRate, conv_layer, norm_layer)
            for i in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, num_classes: int = 10, widen_factor: int = 10,
                 dropRate: float = 0.0, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"wrn needs depth = 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = conv_layer(3, widths[0], kernel_size=3, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, dropRate, conv_layer, norm_layer)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, dropRate, conv_layer, norm_layer)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, dropRate, conv_layer, norm_layer)
        self.bn1 = norm_layer(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.relu(self.bn1(x))
        return self.fc(self.avgpool(x).flatten(1))


wrn, l_wrn = twins(WideResNet, "wrn")
