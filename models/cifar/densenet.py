"""DenseNet-BC for CIFAR (Huang et al., 2017): three dense blocks of bottleneck layers
(norm-ReLU-1x1 conv to 4k, norm-ReLU-3x3 conv to k, concatenated), joined by transitions that
compress channels by ``compressionRate`` and halve the resolution. Depth 6n+4."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import ConvLayer, NormLayer, init_weights
from ..norms import batch_norm
from ..twins import twins

__all__ = ["DenseNet", "densenet"]


class DenseBottleneck(nn.Module):
    def __init__(self, inplanes: int, growthRate: int, dropRate: float, conv_layer: ConvLayer,
                 norm_layer: NormLayer, expansion: int = 4):
        super().__init__()
        planes = expansion * growthRate
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv_layer(inplanes, planes, kernel_size=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv_layer(planes, growthRate, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropRate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.dropout(self.conv2(self.relu(self.bn2(out))))
        return torch.cat((x, out), 1)


class Transition(nn.Module):
    def __init__(self, inplanes: int, outplanes: int, conv_layer: ConvLayer, norm_layer: NormLayer):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv_layer(inplanes, outplanes, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv1(self.relu(self.bn1(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, depth: int = 100, num_classes: int = 10, growthRate: int = 12,
                 compressionRate: float = 2, dropRate: float = 0.0,
                 conv_layer: ConvLayer = nn.Conv2d, norm_layer: NormLayer = batch_norm):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"densenet (BC) needs depth = 6n+4 (40, 100, 190, ...), got {depth}")
        n = (depth - 4) // 6
        channels = 2 * growthRate
        self.conv1 = conv_layer(3, channels, kernel_size=3, padding=1, bias=False)
        for i in (1, 2, 3):
            layers = []
            for _ in range(n):
                layers.append(DenseBottleneck(channels, growthRate, dropRate, conv_layer,
                                              norm_layer))
                channels += growthRate
            self.add_module(f"dense{i}", nn.Sequential(*layers))
            if i < 3:
                out = channels // compressionRate
                self.add_module(f"trans{i}", Transition(channels, out, conv_layer, norm_layer))
                channels = out
        self.bn = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.dense1(self.conv1(x)))
        x = self.trans2(self.dense2(x))
        x = self.relu(self.bn(self.dense3(x)))
        return self.fc(self.avgpool(x).flatten(1))


# The reference has no GN+WS DenseNet, so no l_densenet: -a densenet --norm gn --ws builds one.
densenet = twins(DenseNet, "densenet")[0]
