"""VGG for 32x32 inputs, as in pytorch-classification: 3x3 convs, five max-pools, one linear."""
import torch.nn as nn

from ..layers import batch_norm, init_weights

__all__ = ["VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, depth=16, num_classes=10, conv_layer=nn.Conv2d, norm_layer=None):
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

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _vgg(depth, with_norm):
    if with_norm:
        def constructor(num_classes=10, conv_layer=nn.Conv2d, norm_layer=batch_norm):
            return VGG(depth, num_classes, conv_layer, norm_layer)
    else:
        def constructor(num_classes=10, conv_layer=nn.Conv2d):
            return VGG(depth, num_classes, conv_layer, None)
    constructor.__name__ = f"vgg{depth}" + ("_bn" if with_norm else "")
    constructor.__doc__ = f"VGG-{depth}" + (" with a norm after every conv." if with_norm else ".")
    return constructor


vgg11, vgg11_bn = _vgg(11, False), _vgg(11, True)
vgg13, vgg13_bn = _vgg(13, False), _vgg(13, True)
vgg16, vgg16_bn = _vgg(16, False), _vgg(16, True)
vgg19, vgg19_bn = _vgg(19, False), _vgg(19, True)
