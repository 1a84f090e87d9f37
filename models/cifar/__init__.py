"""CIFAR models (32x32 inputs), by the reference's names. The GN+WS ``l_*`` constructors build the
same classes as their BN twins with ``WSConv2d`` and GroupNorm injected."""
from .alexnet import alexnet
from .densenet import densenet
from .preresnet import l_preresnet, preresnet
from .pyramidnet import l_pyramidnet, pyramidnet
from .resnet import l_resnet, l_se_resnet, resnet, se_resnet
from .resnext import l_resnext, l_se_resnext, resnext, se_resnext
from .shake_shake import l_shake_shake, shake_shake
from .vgg import vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from .wrn import l_wrn, wrn

MODELS = {fn.__name__: fn for fn in [
    alexnet, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn,
    resnet, preresnet, resnext, wrn, densenet,
    l_resnet, l_preresnet, l_resnext, l_wrn,
    # beyond the reference
    pyramidnet, l_pyramidnet, shake_shake, l_shake_shake, se_resnet, l_se_resnet, se_resnext,
    l_se_resnext,
]}
