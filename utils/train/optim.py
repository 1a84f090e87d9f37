"""Optimisers: SGD (optionally Nesterov), AdamW, and LARS for large batches, with the option of
no weight decay on norm weights and biases."""
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn

__all__ = ["LARS", "parameter_groups", "create_optimizer", "ADAMW_BETAS"]

ADAMW_BETAS = (0.9, 0.999)  # torch's defaults, the AdamW paper's


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017, arXiv:1708.03888).

    For each parameter tensor w with gradient g and weight decay wd:

        local_lr = eta * ||w|| / (||g|| + wd * ||w||)     (1 when ||w|| or ||g|| is 0)
        v <- momentum * v + local_lr * (g + wd * w)
        w <- w - lr * v

    Tensors of a group with ``lars=False`` (norm weights and biases, by the usual practice) take
    the plain momentum-SGD step, local_lr = 1."""

    def __init__(self, params: Union[Iterable[torch.Tensor], Iterable[dict]], lr: float,
                 momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001,
                 lars: bool = True):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=lars)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta = group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=wd) if wd else p.grad.clone()
                if group["lars"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
                    ratio = eta * w_norm / (g_norm + wd * w_norm)
                    d.mul_(torch.where((w_norm > 0) & (g_norm > 0), ratio, 1.0))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float, no_wd_norm: bool = False) -> list[dict]:
    """One group with ``weight_decay`` for every parameter, or with ``no_wd_norm`` two groups:
    conv/linear weights decay; 1-D tensors (norm weights and biases, conv/linear biases) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_wd_norm:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def create_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float,
                     weight_decay: float, nesterov: bool = False,
                     no_wd_norm: bool = False) -> torch.optim.Optimizer:
    """``name``: one of utils.settings.values.OPTIMIZERS (AdamW with ADAMW_BETAS; it has no
    momentum)."""
    groups = parameter_groups(model, weight_decay, no_wd_norm)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=ADAMW_BETAS)
    if name == "lars":
        if no_wd_norm:  # the undecayed norm weights and biases take the plain step too
            groups[1]["lars"] = False
        return LARS(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}")
