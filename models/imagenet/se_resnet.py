"""Squeeze-and-Excitation ResNets and ResNeXts for ImageNet (Hu et al., 2018): the ResNet class
with ``se_reduction`` (r = 16 in the paper) on every bottleneck; ``l_`` with GN+WS."""
import torch.nn as nn

from ..layers import WSConv2d, batch_norm, group_norm_factory
from .resnet import ResNet

__all__ = ["se_resnet50", "se_resnet101", "l_se_resnet50", "l_se_resnet101", "se_resnext50",
           "l_se_resnext50"]


def _se(depth, gn_ws, grouped):
    def constructor(num_classes=1000, se_reduction=16, baseWidth=4, cardinality=32,
                    gn_groups=32, zero_init_residual=False):
        groups, width = (cardinality, baseWidth) if grouped else (1, 64)
        conv, norm = ((WSConv2d, group_norm_factory(gn_groups)) if gn_ws else
                      (nn.Conv2d, batch_norm))
        return ResNet(depth, num_classes, groups, width, conv, norm, zero_init_residual,
                      se_reduction)
    family = "resnext" if grouped else "resnet"
    constructor.__name__ = ("l_" if gn_ws else "") + f"se_{family}{depth}"
    constructor.__doc__ = (f"SE-{family}-{depth}" + (", GN+WS." if gn_ws else ", BatchNorm."))
    return constructor


se_resnet50, se_resnet101 = _se(50, False, False), _se(101, False, False)
l_se_resnet50, l_se_resnet101 = _se(50, True, False), _se(101, True, False)
se_resnext50, l_se_resnext50 = _se(50, False, True), _se(50, True, True)
