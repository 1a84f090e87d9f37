"""AlexNet for 32x32 inputs, as in pytorch-classification (an 11x11/4 stem, five convs, one linear)."""
import torch.nn as nn

from ..layers import init_weights

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    def __init__(self, num_classes=10, conv_layer=nn.Conv2d, norm_layer=None):
        super().__init__()
        layers = []
        in_channels = 3
        # (out_channels, kernel, stride, padding, max-pool after)
        for out_channels, k, s, p, pool in [(64, 11, 4, 5, True), (192, 5, 1, 2, True),
                                            (384, 3, 1, 1, False), (256, 3, 1, 1, False),
                                            (256, 3, 1, 1, True)]:
            layers.append(conv_layer(in_channels, out_channels, kernel_size=k, stride=s,
                                     padding=p, bias=True))
            if norm_layer is not None:
                layers.append(norm_layer(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(256, num_classes)
        init_weights(self)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def alexnet(num_classes=10, **kwargs):
    return AlexNet(num_classes=num_classes, **kwargs)
