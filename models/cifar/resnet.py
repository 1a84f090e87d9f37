"""ResNet for CIFAR (He et al., 2016, section 4.2): a 3x3 16-channel stem and three stages of
16/32/64 planes on 32/16/8 pixels. Depth 6n+2 with BasicBlock, 9n+2 with Bottleneck."""
import torch
import torch.nn as nn

from ..blocks import block_by_name, make_stage
from ..layers import ConvLayer, NormLayer, init_weights, zero_init_last_norms
from ..norms import batch_norm
from ..twins import twins

__all__ = ["CifarResNet", "resnet", "stage_depth", "l_resnet", "se_resnet", "l_se_resnet"]


def stage_depth(depth: int, block: type[nn.Module], family: str = "resnet") -> int:
    """Blocks per stage for a 3-stage CIFAR net of ``depth`` layers (2 layers/block for
    BasicBlock, 3 for Bottleneck, plus the stem conv and the classifier)."""
    per_block = 2 if block.expansion == 1 else 3
    if depth < 2 + 3 * per_block or (depth - 2) % (3 * per_block):
        rule = "6n+2 (20, 32, 44, 56, 110, ...)" if per_block == 2 else "9n+2 (29, 47, 164, ...)"
        raise ValueError(f"{family} with {block.__name__} needs depth = {rule}, got {depth}")
    return (depth - 2) // (3 * per_block)


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, block_name: str = "BasicBlock",
                 conv_layer: ConvLayer = nn.Conv2d, norm_layer: NormLayer = batch_norm,
                 zero_init_residual: bool = False, se_reduction: int = 0):
        super().__init__()
        block = block_by_name(block_name)
        n = stage_depth(depth, block)
        self.conv1 = conv_layer(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = norm_layer(16)
        self.relu = nn.ReLU(inplace=True)
        channels = 16
        for i, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
            stage, channels = make_stage(block, channels, planes, n, stride, conv_layer,
                                         norm_layer, se_reduction=se_reduction)
            self.add_module(f"layer{i}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        if zero_init_residual:
            zero_init_last_norms(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


resnet, l_resnet = twins(CifarResNet, "resnet", fixed={"se_reduction": 0})
# SE-ResNet: every block rescales its residual by squeeze-and-excitation (reduction r).
se_resnet, l_se_resnet = twins(CifarResNet, "se_resnet", se_reduction=16)
