"""The convolution of Weight Standardization, and the initialisation every family shares.

Each network class takes a ``conv_layer`` and a ``norm_layer`` argument (the way torchvision's
ResNet takes ``norm_layer``): ``nn.Conv2d`` or ``WSConv2d``, and a norm of models.norms
(``NormChoice.layer``). The GN+WS ``l_*`` models pass ``WSConv2d`` and GroupNorm; nothing else
differs between a family's variants (models.twins builds them).

Factory signatures, which every family relies on:
    conv_layer(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=False)
    norm_layer(num_channels) -> nn.Module
"""
import functools
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from .norms import NORM_TYPES

__all__ = ["WS_EPS", "WS_FORMS", "ConvLayer", "NormLayer", "standardize_weight", "WSConv2d",
           "ws_conv", "init_weights", "zero_init_last_norms"]

# What every family is built from, injected (torchvision's norm_layer idea, for conv too):
ConvLayer = Callable[..., nn.Conv2d]  # nn.Conv2d's signature: nn.Conv2d, WSConv2d, a partial
NormLayer = Callable[[int], nn.Module]  # channels -> a norm layer: batch_norm, group_norm, ...

WS_EPS = 1e-5
# The two forms of WS (``standardize_weight``); the first is the default.
WS_FORMS = ("std", "var")


def standardize_weight(weight: torch.Tensor, eps: float = WS_EPS,
                       form: str = WS_FORMS[0]) -> torch.Tensor:
    """Weight Standardization (Qiao et al., 2019, arXiv:1903.10520). For every output channel o,
    over all its elements (in_channels/groups x kH x kW), with the unbiased statistics (divisor
    n - 1), in one of two forms:

        std  W_hat[o] = (W[o] - mean(W[o])) / (std(W[o]) + eps)
             the Weight Standardization repository's code (and the reference's): eps added to
             the std; the default
        var  W_hat[o] = (W[o] - mean(W[o])) / sqrt(var(W[o]) + eps)
             the Batch-Channel Normalization authors' ImageNet models (their
             imagenet/models/layers.py): eps added to the variance

    At small weights the two differ by several percent (eps is then not small beside the
    variance). The computation runs in float32 at least (float64 stays float64) and outside
    autocast, so bf16/fp16 training never standardizes in low precision.
    """
    if form not in WS_FORMS:
        raise ValueError(f"the WS form is one of {', '.join(WS_FORMS)}, got {form!r}")
    dtype = torch.promote_types(weight.dtype, torch.float32)
    with torch.autocast(device_type=weight.device.type, enabled=False):
        w = weight.to(dtype)
        flat = w.flatten(1)
        mean = flat.mean(dim=1)
        shape = (-1,) + (1,) * (w.dim() - 1)
        if form == "var":
            scale = torch.sqrt(flat.var(dim=1, correction=1) + eps)
        else:
            scale = flat.std(dim=1, correction=1) + eps
        return (w - mean.view(shape)) / scale.view(shape)


class WSConv2d(nn.Conv2d):
    """A Conv2d whose weight is standardized (see ``standardize_weight``, in its ``form``) on
    every forward.

    The stored parameter is the raw weight, so the state_dict equals a plain ``nn.Conv2d``'s and
    reference checkpoints load unchanged. A conv with one weight per output channel (a 1x1
    depthwise conv) is refused: the unbiased std of one number is undefined (NaN).
    """

    def __init__(self, *args: Any, form: str = WS_FORMS[0], **kwargs: Any):
        super().__init__(*args, **kwargs)
        if form not in WS_FORMS:
            raise ValueError(f"the WS form is one of {', '.join(WS_FORMS)}, got {form!r}")
        self.form = form
        self._given: Optional[torch.Tensor] = None
        fan_in = self.weight[0].numel()
        if fan_in < 2:
            raise ValueError(
                f"Weight Standardization needs at least 2 weights per output channel; this "
                f"conv ({self.in_channels} -> {self.out_channels}, kernel {self.kernel_size}, "
                f"groups {self.groups}) has {fan_in}, whose unbiased std is undefined")

    def standardized_weight(self) -> torch.Tensor:
        return standardize_weight(self.weight, form=self.form)

    def use_standardized(self, weight: Optional[torch.Tensor]) -> None:
        """Take ``weight``, this conv's standardized weight computed together with the rest of
        its network's (models.standardization), for the forwards until it is taken back with
        None; without one the conv standardizes its own weight."""
        self._given = weight

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", form={self.form}" if self.form != WS_FORMS[0] else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._given if self._given is not None else self.standardized_weight()
        if not torch.is_autocast_enabled(x.device.type):
            # Outside autocast the conv runs in the input's dtype (fp32 model, or fp64 in tests).
            weight = weight.to(x.dtype)
        return self._conv_forward(x, weight, self.bias)


def ws_conv(form: str = WS_FORMS[0]) -> ConvLayer:
    """The conv_layer of WS in ``form``: WSConv2d itself for the default form."""
    return WSConv2d if form == WS_FORMS[0] else functools.partial(WSConv2d, form=form)


def init_weights(model: nn.Module) -> None:
    """The reference initialisation: convs kaiming normal (fan_out, ReLU gain), conv biases zero,
    norm weights 1 and biases 0. Linear layers keep PyTorch's default unless a family says
    otherwise."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORM_TYPES):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def zero_init_last_norms(model: nn.Module) -> None:
    """Zero the weight of the last norm in every residual branch, so each residual block starts
    as the identity (Goyal et al., 2017). Blocks name that norm through ``last_residual_norm()``
    (a module, or a tuple of them for a block with several branches)."""
    for m in model.modules():
        if hasattr(m, "last_residual_norm"):
            norms = m.last_residual_norm()
            for norm in norms if isinstance(norms, tuple) else (norms,):
                nn.init.zeros_(norm.weight)
