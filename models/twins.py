"""The one way a family declares its BatchNorm network and its GN+WS twin.

A family is one class whose ``__init__`` takes ``conv_layer`` and ``norm_layer`` (as torchvision's
ResNet takes ``norm_layer``). ``twins`` turns it into two named constructors that differ only in
what they inject:

    name        nn.Conv2d + BatchNorm2d
    l_<name>    WSConv2d + GroupNorm(gn_groups)   (models.layers: standardize_weight, group_norm)

Each constructor's signature lists exactly the options it takes (the class's own arguments, less
the injected ones and those the variant fixes, plus ``gn_groups`` for the twin), so the scripts
can refuse a flag an architecture does not take instead of dropping it silently.
"""
import inspect

from .layers import WSConv2d, batch_norm, group_norm_factory

__all__ = ["twins"]

INJECTED = ("self", "conv_layer", "norm_layer")


def twins(network, name, fixed=None, fit_width=False, **defaults):
    """(``name``, ``l_<name>``) constructors of ``network``. ``fixed``: arguments this variant
    sets and does not offer (e.g. a depth in the name); ``defaults``: new defaults for offered
    arguments; ``fit_width``: the GroupNorm rule for irregular widths (group_norm)."""
    fixed = dict(fixed or {})
    offered = []
    for p in inspect.signature(network.__init__).parameters.values():
        if p.name in INJECTED or p.name in fixed:
            continue
        offered.append(p.replace(default=defaults.pop(p.name, p.default)))
    if defaults:
        raise TypeError(f"{network.__name__} has no argument(s) {sorted(defaults)}")
    plain = _constructor(network, name, offered, fixed, lambda _: (None, batch_norm),
                         f"{name}: {network.__name__} with nn.Conv2d and BatchNorm2d.")
    gn_groups = inspect.Parameter("gn_groups", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=32)
    gn_ws = _constructor(
        network, f"l_{name}", offered + [gn_groups], fixed,
        lambda groups: (WSConv2d, group_norm_factory(groups, fit_width=fit_width)),
        f"l_{name}: {network.__name__} with WSConv2d and GroupNorm(gn_groups) (GN+WS).")
    return plain, gn_ws


def _constructor(network, name, parameters, fixed, layers, doc):
    signature = inspect.Signature(parameters)

    def constructor(*args, **kwargs):
        options = signature.bind(*args, **kwargs)
        options.apply_defaults()
        options = dict(options.arguments)
        conv_layer, norm_layer = layers(options.pop("gn_groups", None))
        if conv_layer is not None:
            options["conv_layer"] = conv_layer
        return network(**fixed, **options, norm_layer=norm_layer)

    constructor.__signature__ = signature
    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = doc
    return constructor
