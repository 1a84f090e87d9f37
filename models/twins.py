"""The one way a family declares its variants: the (conv, norm) pair a network is built with.

A family is one class whose ``__init__`` takes ``conv_layer`` and ``norm_layer`` (as torchvision's
ResNet takes ``norm_layer``). ``twins`` turns it into two named constructors that differ only in
what they inject:

    name        the pair chosen by the options ``norm`` (models.norms.NORMS; default bn) and
                ``ws`` (WSConv2d for every conv; default off): -a resnet --norm gn --ws
    l_<name>    WSConv2d + GroupNorm(gn_groups), the reference's GN+WS: fixed, takes no norm/ws

Both take ``gn_groups`` and ``gn_narrow`` (the group rule, models.norms.group_count); the plain
name also ``bcn_speed``. Each constructor's signature lists exactly the options it takes (the
class's own arguments, less the injected ones and those the variant fixes), so the scripts can
refuse a flag an architecture does not take instead of dropping it silently.
"""
import inspect
from typing import Any, Callable, NamedTuple, Optional

import torch.nn as nn

from .layers import WS_FORMS, ws_conv
from .norms import NORM_DEFAULTS, NormChoice
from .standardization import standardize_together

__all__ = ["Pair", "Twins", "twins", "variant", "PAIR_OPTIONS", "GN_OPTIONS", "WS_OPTION",
           "layer_pair"]

INJECTED = ("self", "conv_layer", "norm_layer")


def _option(name, default):
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)


# The options that choose a pair, with their defaults: NormChoice's (the BatchNorm network's),
# and no WS.
WS_FORM_OPTION = _option("ws_form", WS_FORMS[0])
WS_OPTION = [_option("ws", False), WS_FORM_OPTION]
GN_OPTIONS = [_option(name, NORM_DEFAULTS[name]) for name in ("gn_groups", "gn_narrow")]
PAIR_OPTIONS = ([_option("norm", NORM_DEFAULTS["norm"])] + WS_OPTION + GN_OPTIONS
                + [_option("bcn_speed", NORM_DEFAULTS["bcn_speed"])])
PAIR_NAMES = tuple(p.name for p in PAIR_OPTIONS)


class Pair(NamedTuple):
    """The (conv, norm) pair a family is built with: the conv class and the norm factory."""
    conv_layer: Callable
    norm_layer: Callable


class Twins(NamedTuple):
    """A family's two named constructors: the pair chosen by options, and l_<name> (GN+WS)."""
    plain: Callable
    gn_ws: Callable


def layer_pair(options: dict, norm: Optional[str] = None, ws: Optional[bool] = None) -> Pair:
    """(conv_layer, norm_layer) of the pair options in ``options`` (removed from it);
    ``norm`` / ``ws`` given here are the variant's own and override."""
    picked = {name: options.pop(name) for name in PAIR_NAMES if name in options}
    ws = ws if ws is not None else picked.pop("ws", False)
    picked.pop("ws", None)
    form = picked.pop("ws_form", WS_FORMS[0])
    if norm is not None:
        picked["norm"] = norm
    return Pair(ws_conv(form) if ws else nn.Conv2d, NormChoice(**picked).layer)


def twins(network: type, name: str, fixed: Optional[dict] = None,
          **defaults: Any) -> Twins:
    """(``name``, ``l_<name>``) constructors of ``network``. ``fixed``: arguments this variant
    sets and does not offer (e.g. a depth in the name); ``defaults``: new defaults for offered
    arguments."""
    plain = variant(network, name, PAIR_OPTIONS, fixed=fixed,
                    doc=f"{name}: {network.__name__} with --norm (default BatchNorm2d) and, "
                        f"with ws, WSConv2d.", **defaults)
    gn_ws = variant(network, f"l_{name}", GN_OPTIONS + [WS_FORM_OPTION], fixed=fixed,
                    norm="gn", ws=True,
                    doc=f"l_{name}: {network.__name__} with WSConv2d and GroupNorm(gn_groups) "
                        f"(GN+WS).", **defaults)
    return Twins(plain, gn_ws)


def variant(network: Callable, name: str, pair_options: list, fixed: Optional[dict] = None,
            norm: Optional[str] = None, ws: Optional[bool] = None,
            doc: str = "", **defaults: Any) -> Callable:
    """A constructor ``name`` of ``network`` offering its own arguments (less ``fixed``, with
    new ``defaults``) and ``pair_options``; ``norm`` / ``ws`` fixed by the variant, if given.
    A network without ``norm_layer`` (VGG, AlexNet) gets only a conv."""
    fixed = dict(fixed or {})
    accepted = inspect.signature(network).parameters
    offered = []
    for p in accepted.values():
        if p.name in INJECTED or p.name in fixed:
            continue
        offered.append(p.replace(default=defaults.pop(p.name, p.default)))
    if defaults:
        raise TypeError(f"{network.__name__} has no argument(s) {sorted(defaults)}")
    signature = inspect.Signature(offered + list(pair_options))
    takes_norm = "norm_layer" in accepted and "norm_layer" not in fixed

    def constructor(*args, **kwargs):
        options = signature.bind(*args, **kwargs)
        options.apply_defaults()
        options = dict(options.arguments)
        conv_layer, norm_layer = layer_pair(options, norm, ws)
        if takes_norm:
            options["norm_layer"] = norm_layer
        model = network(**fixed, **options, conv_layer=conv_layer)
        return standardize_together(model) if conv_layer is not nn.Conv2d else model

    # The pair this constructor builds when its options leave it open (utils.settings.flags
    # shows it).
    constructor.pair = (norm or ("bn" if takes_norm else None), bool(ws))
    constructor.__signature__ = signature
    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = doc
    return constructor
