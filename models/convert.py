"""A (conv, norm) pair put into a network built elsewhere: torchvision's models (imagenet.py -a
resnet50 --norm gn --ws).

The network is traced with torch.fx, and the pairs are read from its graph, not from the order of
its modules (a module's place in ``__init__`` says nothing about what it is applied to):

- every BatchNorm2d is replaced by the chosen norm (models.norms.NormChoice), freshly
  initialised (weight 1, bias 0);
- a conv becomes a WSConv2d (same weight and bias) only where its output goes directly into a
  normalisation layer: WS relies on the norm after it to restore the scale it removes, so a conv
  feeding an activation or a sum (a squeeze-and-excitation conv, a classifier conv) is left as
  it is.

Module names do not change, so state_dicts keep torchvision's keys (the WS conv's are a conv's).
"""
import dataclasses
from typing import Optional, Union

import torch.fx
import torch.nn as nn

from .layers import WS_FORMS, WSConv2d
from .norms import NormChoice
from .standardization import standardize_together

__all__ = ["ConversionError", "Converted", "convert_pair", "ws_pairs"]

# What counts as the normalisation after a conv.
FOLLOWING_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class ConversionError(ValueError):
    """A network the converter cannot change as asked; the message says why."""


@dataclasses.dataclass(frozen=True)
class Converted:
    """What a conversion changed: the norms replaced and the convs standardized, by name."""
    norms: tuple
    ws_convs: tuple


def _trace(model: nn.Module, name: str) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, AttributeError...)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConversionError(f"{name} cannot be traced by torch.fx ({type(e).__name__}: "
                              f"{reason}), so its conv -> norm pairs are unknown; --norm and "
                              f"--ws need a traceable network") from e


def ws_pairs(model: nn.Module, name: str = "the model") -> list:
    """The names of the convs whose every call feeds its output directly into a norm layer,
    read from the traced graph."""
    graph = _trace(model, name).graph
    modules = dict(model.named_modules())
    followed, called = {}, {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Conv2d):
            continue
        into_norm = any(user.op == "call_module" and user.args and user.args[0] is node
                        and isinstance(modules.get(user.target), FOLLOWING_NORMS)
                        for user in node.users)
        called[node.target] = called.get(node.target, 0) + 1
        followed[node.target] = followed.get(node.target, 0) + int(into_norm)
    return [t for t in called if followed[t] == called[t]]


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _ws_conv(conv: nn.Conv2d, form: str) -> WSConv2d:
    ws = WSConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                  conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
                  form=form)
    ws.load_state_dict(conv.state_dict())
    return ws


def convert_pair(model: nn.Module, norm: Optional[NormChoice], ws: Union[bool, str, None],
                 name: str = "the model") -> Converted:
    """Put the pair into ``model`` in place: its BatchNorm2d layers become ``norm``'s (None or
    bn: left as they are), and with ``ws`` (True or a WS form of models.layers.WS_FORMS: "std",
    "var"; False or None: none) the convs directly followed by a norm become WSConv2d.
    ConversionError when asked for a change the model has no place for, or it cannot be
    traced."""
    replaced, standardized = [], []
    form = ws if isinstance(ws, str) else WS_FORMS[0]
    if ws:
        standardized = ws_pairs(model, name)
        if not standardized:
            raise ConversionError(f"{name} has no conv directly followed by a norm layer: "
                                  f"--ws has nothing to standardize")
    if norm is not None and norm.norm != "bn":
        replaced = [n for n, m in model.named_modules() if type(m) is nn.BatchNorm2d]
        if not replaced:
            raise ConversionError(f"{name} has no BatchNorm2d layer for --norm {norm.norm} to "
                                  f"replace")
        for path in replaced:
            _replace(model, path, norm.layer(model.get_submodule(path).num_features))
    for path in standardized:
        try:
            _replace(model, path, _ws_conv(model.get_submodule(path), form))
        except ValueError as e:  # WSConv2d refuses a single weight per output channel
            raise ConversionError(f"{name}: {path}: {e}") from e
    if standardized:
        standardize_together(model)
    return Converted(tuple(replaced), tuple(standardized))
