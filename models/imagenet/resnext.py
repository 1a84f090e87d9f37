"""ResNeXt for ImageNet (Xie et al., 2017, type C): the ResNet class with grouped bottlenecks.
Inner width of a stage of ``planes`` planes: floor(planes * baseWidth / 64) * cardinality."""
from ..layers import WSConv2d, batch_norm, group_norm_factory
from .resnet import ResNet

__all__ = ["resnext50", "resnext101", "resnext152", "l_resnext50", "l_resnext101", "l_resnext152"]


def _resnext(depth, gn_ws):
    if gn_ws:
        def constructor(num_classes=1000, baseWidth=4, cardinality=32, gn_groups=32,
                        zero_init_residual=False):
            return ResNet(depth, num_classes, cardinality, baseWidth, WSConv2d,
                          group_norm_factory(gn_groups), zero_init_residual)
    else:
        def constructor(num_classes=1000, baseWidth=4, cardinality=32, zero_init_residual=False):
            return ResNet(depth, num_classes, cardinality, baseWidth, norm_layer=batch_norm,
                          zero_init_residual=zero_init_residual)
    constructor.__name__ = ("l_" if gn_ws else "") + f"resnext{depth}"
    constructor.__doc__ = (f"ResNeXt-{depth} (cardinality x baseWidth d)"
                           + (", GN+WS." if gn_ws else ", BatchNorm."))
    return constructor


resnext50, resnext101, resnext152 = (_resnext(d, False) for d in (50, 101, 152))
l_resnext50, l_resnext101, l_resnext152 = (_resnext(d, True) for d in (50, 101, 152))
