"""torchvision's classification models as constructors of this project's kind: each takes
``num_classes`` and the pair options of models.twins (--norm, --ws, ...), which models.convert
puts into the network torchvision builds."""
import inspect
from typing import Callable

import torch.nn as nn
import torchvision

from ..convert import convert_pair
from ..norms import BCN_SPEED, NormChoice
from ..twins import PAIR_OPTIONS

__all__ = ["torchvision_constructor", "TORCHVISION_MODELS", "with_pair"]


NUM_CLASSES = inspect.Parameter("num_classes", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=1000)


def with_pair(model: nn.Module, name: str, norm: str = "bn", ws: bool = False,
              gn_groups: int = 32, gn_narrow: str = "pairs",
              bcn_speed: float = BCN_SPEED) -> nn.Module:
    """``model`` with its BatchNorm2d replaced by ``norm`` and, with ``ws``, WS on every conv
    that feeds a norm (models.convert); unchanged for bn without WS."""
    if norm != "bn" or ws:
        convert_pair(model, NormChoice(norm, gn_groups, gn_narrow, bcn_speed), ws, name)
    return model


def torchvision_constructor(arch: str) -> Callable:
    """torchvision's ``arch`` as a constructor of ours: num_classes and the pair options."""
    def constructor(num_classes=1000, **pair):
        model = torchvision.models.get_model(arch, num_classes=num_classes)
        return with_pair(model, arch, **pair)
    constructor.__name__ = arch
    constructor.__signature__ = inspect.Signature([NUM_CLASSES] + PAIR_OPTIONS)
    constructor.pair = ("bn", False)
    return constructor


TORCHVISION_MODELS = {name: torchvision_constructor(name)
                      for name in torchvision.models.list_models(module=torchvision.models)}
