"""ResNet and ResNeXt for ImageNet, in torchvision's layout (conv1/bn1/layer1..4/fc): a 7x7/2 stem
with max-pool, four stages of 64/128/256/512 planes. ResNeXt is the same network with grouped
bottlenecks (``cardinality`` groups of ``baseWidth`` channels per 64 planes), and SE-ResNet(X)t
adds ``se_reduction``, so there is one class."""
import torch
import torch.nn as nn

from ..blocks import BasicBlock, Bottleneck, make_stage
from ..layers import ConvLayer, NormLayer, init_weights, zero_init_last_norms
from ..norms import batch_norm
from ..twins import twins

__all__ = ["ResNet", "l_resnet18", "l_resnet34", "l_resnet50", "l_resnet101", "l_resnet152"]

STAGE_BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
                152: (Bottleneck, [3, 8, 36, 3])}


class ResNet(nn.Module):
    def __init__(self, depth: int = 50, num_classes: int = 1000, cardinality: int = 1,
                 baseWidth: int = 64, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: NormLayer = batch_norm, zero_init_residual: bool = False,
                 se_reduction: int = 0):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ImageNet ResNet depth must be one of {sorted(STAGE_BLOCKS)}, "
                             f"got {depth}")
        block, counts = STAGE_BLOCKS[depth]
        block_kwargs = {"groups": cardinality, "base_width": baseWidth,
                        "se_reduction": se_reduction}
        self.conv1 = conv_layer(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for i, (planes, n) in enumerate(zip([64, 128, 256, 512], counts), start=1):
            stage, channels = make_stage(block, channels, planes, n, 1 if i == 1 else 2,
                                         conv_layer, norm_layer, **block_kwargs)
            self.add_module(f"layer{i}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        if zero_init_residual:
            zero_init_last_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _resnet_twins(depth):
    """BN ResNet-``depth`` (torchvision has it; imagenet.py offers torchvision's) and its GN+WS
    twin: the depth is in the name, the bottleneck is not grouped."""
    return twins(ResNet, f"resnet{depth}", fixed=dict(depth=depth, cardinality=1, baseWidth=64,
                                                      se_reduction=0))[1]


l_resnet18, l_resnet34, l_resnet50, l_resnet101, l_resnet152 = (
    _resnet_twins(d) for d in (18, 34, 50, 101, 152))
