"""AlexNet for 32x32 inputs, as in pytorch-classification (an 11x11/4 stem, five convs, one linear).

It has no normalisation layers (``--ws`` gives it WSConv2d) and, as the reference, keeps PyTorch's
default initialisation of its convs and linear layer."""
import torch
import torch.nn as nn

from ..layers import ConvLayer
from ..twins import WS_OPTION, variant

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, conv_layer: ConvLayer = nn.Conv2d):
        super().__init__()
        layers = []
        in_channels = 3
        # (out_channels, kernel, stride, padding, max-pool after)
        for out_channels, k, s, p, pool in [(64, 11, 4, 5, True), (192, 5, 1, 2, True),
                                            (384, 3, 1, 1, False), (256, 3, 1, 1, False),
                                            (256, 3, 1, 1, True)]:
            layers.append(conv_layer(in_channels, out_channels, kernel_size=k, stride=s,
                                     padding=p, bias=True))
            layers.append(nn.ReLU(inplace=True))
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


alexnet = variant(AlexNet, "alexnet", WS_OPTION,
                  doc="alexnet: AlexNet for CIFAR (no norm layers; ws: WSConv2d).")
