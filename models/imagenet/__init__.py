"""ImageNet models (224x224 inputs): this project's (``MODELS``: the GN+WS ResNets and ResNeXts of
the Weight Standardization paper, the BN ResNeXts of pytorch-classification, and SE variants),
and ``ARCHS``, what imagenet.py's -a offers: those, and every torchvision classification model by
its torchvision name (with the pair options put in by models.convert)."""
from .resnet import ResNet, l_resnet18, l_resnet34, l_resnet50, l_resnet101, l_resnet152
from .resnext import l_resnext50, l_resnext101, l_resnext152, resnext50, resnext101, resnext152
from .se_resnet import (l_se_resnet50, l_se_resnet101, l_se_resnext50, se_resnet50, se_resnet101,
                        se_resnext50)
from .torchvision_models import TORCHVISION_MODELS

MODELS = {fn.__name__: fn for fn in [
    l_resnet18, l_resnet34, l_resnet50, l_resnet101, l_resnet152,
    resnext50, resnext101, resnext152, l_resnext50, l_resnext101, l_resnext152,
    se_resnet50, se_resnet101, l_se_resnet50, l_se_resnet101, se_resnext50, l_se_resnext50,
]}

# This project's models by name, otherwise torchvision's classification models.
ARCHS = {**TORCHVISION_MODELS, **MODELS}
