"""Squeeze-and-Excitation ResNets and ResNeXts for ImageNet (Hu et al., 2018): the ResNet class
with ``se_reduction`` (r = 16 in the paper) on every bottleneck; ``l_`` with GN+WS."""
from ..twins import twins
from .resnet import ResNet

__all__ = ["se_resnet50", "se_resnet101", "l_se_resnet50", "l_se_resnet101", "se_resnext50",
           "l_se_resnext50"]

se_resnet50, l_se_resnet50 = twins(ResNet, "se_resnet50",
                                   fixed=dict(depth=50, cardinality=1, baseWidth=64),
                                   se_reduction=16)
se_resnet101, l_se_resnet101 = twins(ResNet, "se_resnet101",
                                     fixed=dict(depth=101, cardinality=1, baseWidth=64),
                                     se_reduction=16)
se_resnext50, l_se_resnext50 = twins(ResNet, "se_resnext50", fixed=dict(depth=50),
                                     cardinality=32, baseWidth=4, se_reduction=16)
