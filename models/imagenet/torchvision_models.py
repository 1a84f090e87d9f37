"""torchvision's classification models as constructors of this project's kind: each takes
``num_classes`` and the pair options of models.twins (--norm, --ws, ...), which models.convert
puts into the network torchvision builds."""
import inspect
from typing import Callable

import torch.nn as nn
import torchvision

from ..convert import convert_pair
from ..norms import NormChoice
from ..twins import PAIR_OPTIONS

__all__ = ["torchvision_constructor", "torchvision_options", "TORCHVISION_MODELS", "with_pair"]


NUM_CLASSES = inspect.Parameter("num_classes", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=1000)


def with_pair(model: nn.Module, name: str, ws: bool = False, **norm: object) -> nn.Module:
    """``model`` with its BatchNorm2d replaced by the norm of NormChoice(**``norm``) and, with
    ``ws``, WS on every conv that feeds a norm (models.convert); unchanged for bn without WS."""
    choice = NormChoice(**norm)
    if choice.norm != "bn" or ws:
        convert_pair(model, choice, ws, name)
    return model


# Models whose training forward also returns auxiliary classifiers' logits (a namedtuple, not a
# tensor): built without them. Their losses are a recipe of the Inception papers, not this one.
AUXILIARY_HEADS = {"googlenet": dict(aux_logits=False, init_weights=True),
                   "inception_v3": dict(aux_logits=False, init_weights=True)}


def torchvision_options(arch: str) -> dict:
    """What this project asks of torchvision's builder of ``arch`` beyond the class count."""
    return dict(AUXILIARY_HEADS.get(arch, {}))


def torchvision_constructor(arch: str) -> Callable:
    """torchvision's ``arch`` as a constructor of ours: num_classes and the pair options."""
    def constructor(num_classes=1000, **pair):
        model = torchvision.models.get_model(arch, num_classes=num_classes,
                                             **torchvision_options(arch))
        return with_pair(model, arch, **pair)
    constructor.__name__ = arch
    constructor.__signature__ = inspect.Signature([NUM_CLASSES] + PAIR_OPTIONS)
    constructor.pair = ("bn", False)
    constructor.torchvision = True
    return constructor


TORCHVISION_MODELS = {name: torchvision_constructor(name)
                      for name in torchvision.models.list_models(module=torchvision.models)}
