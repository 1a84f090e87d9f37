"""ResNeXt for ImageNet (Xie et al., 2017, type C): the ResNet class with grouped bottlenecks.
Inner width of a stage of ``planes`` planes: floor(planes * baseWidth / 64) * cardinality."""
from ..twins import twins
from .resnet import ResNet

__all__ = ["resnext50", "resnext101", "resnext152", "l_resnext50", "l_resnext101", "l_resnext152"]


def _resnext_twins(depth):
    return twins(ResNet, f"resnext{depth}", fixed=dict(depth=depth, se_reduction=0),
                 cardinality=32, baseWidth=4)


(resnext50, l_resnext50), (resnext101, l_resnext101), (resnext152, l_resnext152) = (
    _resnext_twins(d) for d in (50, 101, 152))
