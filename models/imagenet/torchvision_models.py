"""torchvision's classification models as constructors of this project's kind: each takes
``num_classes`` and the pair options of models.twins (--norm, --ws, ...), which models.convert
puts into the network torchvision builds."""
import inspect
from typing import Callable

import torch.nn as nn
import torchvision

from ..convert import convert_pair
from ..layers import WS_FORMS
from ..norms import NormChoice
from ..twins import PAIR_OPTIONS

__all__ = ["torchvision_constructor", "torchvision_options", "TORCHVISION_MODELS", "with_pair",
           "has_residual_branches", "zero_residual_ends"]


NUM_CLASSES = inspect.Parameter("num_classes", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=1000)


def with_pair(model: nn.Module, name: str, ws: bool = False, ws_form: str = WS_FORMS[0],
              **norm: object) -> nn.Module:
    """``model`` with its BatchNorm2d replaced by the norm of NormChoice(**``norm``) and, with
    ``ws``, WS in ``ws_form`` on every conv that feeds a norm (models.convert); unchanged for bn
    without WS."""
    choice = NormChoice(**norm)
    if choice.norm != "bn" or ws:
        convert_pair(model, choice, ws_form if ws else None, name)
    return model


# Models whose training forward also returns auxiliary classifiers' logits (a namedtuple, not a
# tensor): built without them. Their losses are a recipe of the Inception papers, not this one.
AUXILIARY_HEADS = {"googlenet": dict(aux_logits=False, init_weights=True),
                   "inception_v3": dict(aux_logits=False, init_weights=True)}


def torchvision_options(arch: str) -> dict:
    """What this project asks of torchvision's builder of ``arch`` beyond the class count."""
    return dict(AUXILIARY_HEADS.get(arch, {}))


# torchvision's networks of residual blocks whose builders take zero_init_residual (its ResNet
# class): the last norm of each block's residual branch.
RESIDUAL_BRANCH_END = {torchvision.models.resnet.BasicBlock: "bn2",
                       torchvision.models.resnet.Bottleneck: "bn3"}
ZERO_INIT = inspect.Parameter("zero_init_residual", inspect.Parameter.KEYWORD_ONLY,
                              default=False)


def has_residual_branches(arch: str) -> bool:
    """Whether torchvision's ``arch`` is built of ResNet blocks (resnet*, resnext*,
    wide_resnet*), whose builders take zero_init_residual."""
    return arch.startswith(("resnet", "resnext", "wide_resnet"))


def zero_residual_ends(model: nn.Module) -> int:
    """Start each residual branch of a torchvision ResNet as the identity, torchvision's
    zero_init_residual: the weight of the branch's last norm set to 0, whichever norm the
    converter put there (GroupNorm's affine, BatchChannelNorm2d's channel part). Returns the
    number of norms zeroed."""
    zeroed = 0
    for block in model.modules():
        name = RESIDUAL_BRANCH_END.get(type(block))
        if name is not None:
            nn.init.zeros_(getattr(block, name).weight)
            zeroed += 1
    return zeroed


def torchvision_constructor(arch: str) -> Callable:
    """torchvision's ``arch`` as a constructor of ours: num_classes, the pair options and, for
    the networks of ResNet blocks, zero_init_residual (applied after the pair, so the fresh
    norms the converter puts in start at zero too)."""
    residual = has_residual_branches(arch)

    def constructor(num_classes=1000, zero_init_residual=False, **pair):
        if zero_init_residual and not residual:
            raise ValueError(f"{arch} has no residual branches of ResNet blocks to zero")
        model = torchvision.models.get_model(arch, num_classes=num_classes,
                                             **torchvision_options(arch))
        model = with_pair(model, arch, **pair)
        if zero_init_residual:
            zero_residual_ends(model)
        return model
    constructor.__name__ = arch
    constructor.__signature__ = inspect.Signature([NUM_CLASSES] + PAIR_OPTIONS +
                                                  ([ZERO_INIT] if residual else []))
    constructor.pair = ("bn", False)
    constructor.torchvision = True
    return constructor


TORCHVISION_MODELS = {name: torchvision_constructor(name)
                      for name in torchvision.models.list_models(module=torchvision.models)}
