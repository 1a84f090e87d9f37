"""VGG for 32x32 inputs, as in pytorch-classification: 3x3 convs, five max-pools, one linear."""
from typing import Optional

import torch
import torch.nn as nn

from ..layers import ConvLayer, NormLayer, init_weights
from ..twins import PAIR_OPTIONS, WS_OPTION, variant

__all__ = ["VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
           "vgg19_bn"]

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, depth: int = 16, num_classes: int = 10, conv_layer: ConvLayer = nn.Conv2d,
                 norm_layer: Optional[NormLayer] = None):
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        layers = []
        in_channels = 3
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(conv_layer(in_channels, v, kernel_size=3, padding=1, bias=True))
            if norm_layer is not None:
                layers.append(norm_layer(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)
        init_weights(self)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _vgg(depth: int, with_norm: bool):
    """VGG-``depth``: ``_bn`` with a norm after every conv (``--norm``, default BatchNorm2d), or
    without norms (``ws`` only)."""
    if with_norm:
        return variant(VGG, f"vgg{depth}_bn", PAIR_OPTIONS, fixed={"depth": depth},
                       doc=f"VGG-{depth} with a norm after every conv.")
    return variant(VGG, f"vgg{depth}", WS_OPTION, fixed={"depth": depth, "norm_layer": None},
                   doc=f"VGG-{depth}, no norm layers.")


vgg11, vgg11_bn = _vgg(11, False), _vgg(11, True)
vgg13, vgg13_bn = _vgg(13, False), _vgg(13, True)
vgg16, vgg16_bn = _vgg(16, False), _vgg(16, True)
vgg19, vgg19_bn = _vgg(19, False), _vgg(19, True)
