"""ResNet and ResNeXt for ImageNet, in torchvision's layout (conv1/bn1/layer1..4/fc): a 7x7/2 stem
with max-pool, four stages of 64/128/256/512 planes. ResNeXt is the same network with grouped
bottlenecks (``groups`` = cardinality, ``width_per_group`` = baseWidth), so there is one class."""
import torch.nn as nn

from ..blocks import BasicBlock, Bottleneck, make_stage
from ..layers import WSConv2d, batch_norm, group_norm_factory, init_weights, zero_init_last_norms

__all__ = ["ResNet", "l_resnet18", "l_resnet34", "l_resnet50", "l_resnet101", "l_resnet152"]

STAGE_BLOCKS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
                152: (Bottleneck, [3, 8, 36, 3])}


class ResNet(nn.Module):
    def __init__(self, depth=50, num_classes=1000, groups=1, width_per_group=64,
                 conv_layer=nn.Conv2d, norm_layer=batch_norm, zero_init_residual=False,
                 se_reduction=0):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ImageNet ResNet depth must be one of {sorted(STAGE_BLOCKS)}, "
                             f"got {depth}")
        block, counts = STAGE_BLOCKS[depth]
        block_kwargs = {"groups": groups, "base_width": width_per_group,
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

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _l_resnet(depth):
    def constructor(num_classes=1000, gn_groups=32, zero_init_residual=False):
        return ResNet(depth, num_classes, conv_layer=WSConv2d,
                      norm_layer=group_norm_factory(gn_groups),
                      zero_init_residual=zero_init_residual)
    constructor.__name__ = f"l_resnet{depth}"
    constructor.__doc__ = f"GN+WS ResNet-{depth}: WSConv2d everywhere, GroupNorm(gn_groups)."
    return constructor


l_resnet18, l_resnet34, l_resnet50, l_resnet101, l_resnet152 = (
    _l_resnet(d) for d in (18, 34, 50, 101, 152))
