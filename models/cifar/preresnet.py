"""Pre-activation ResNet for CIFAR (He et al., 2016, "Identity Mappings in Deep Residual
Networks"): norm -> ReLU -> conv inside each block, one final norm before pooling, and shortcut
convs without a norm. Same depth rules and stage widths as the CIFAR ResNet."""
from typing import Optional

import torch
import torch.nn as nn

from ..blocks import block_by_name, make_stage
from ..layers import ConvLayer, NormLayer, init_weights
from ..norms import batch_norm
from ..twins import twins
from .resnet import stage_depth

__all__ = ["PreResNet", "PreActBasicBlock", "PreActBottleneck", "preresnet", "l_preresnet"]


class PreActBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv_layer(inplanes, planes, kernel_size=3, stride=stride, padding=1,
                                bias=False)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv_layer(planes, planes, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The reference projects the raw input, not the pre-activated one, onto the shortcut.
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv_layer(inplanes, planes, kernel_size=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv_layer(planes, planes, kernel_size=3, stride=stride, padding=1,
                                bias=False)
        self.bn3 = norm_layer(planes)
        self.conv3 = conv_layer(planes, planes * 4, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity


PREACT_BLOCKS = {"BasicBlock": PreActBasicBlock, "Bottleneck": PreActBottleneck}


class PreResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, block_name: str = "BasicBlock",
                 conv_layer: ConvLayer = nn.Conv2d, norm_layer: NormLayer = batch_norm):
        super().__init__()
        block = PREACT_BLOCKS[block_by_name(block_name).__name__]
        n = stage_depth(depth, block, family="preresnet")
        self.conv1 = conv_layer(3, 16, kernel_size=3, padding=1, bias=False)
        channels = 16
        stages = []
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            stage, channels = make_stage(block, channels, planes, n, stride, conv_layer,
                                         norm_layer, shortcut_norm=False)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(self.avgpool(x).flatten(1))


preresnet, l_preresnet = twins(PreResNet, "preresnet")
