"""Model packages: ``models.cifar`` and ``models.imagenet``, each with a ``MODELS`` dict of
constructors by name, and ``create_model`` which calls one with the options it accepts."""
import inspect
from typing import Any, Callable

import torch.nn as nn

from . import cifar, imagenet


def model_options(constructor: Callable[..., nn.Module]) -> set[str]:
    """The keyword arguments a constructor accepts."""
    return set(inspect.signature(constructor).parameters)


def create_model(registry: dict[str, Callable[..., nn.Module]], arch: str,
                 **options: Any) -> nn.Module:
    """Build ``registry[arch]`` with the subset of ``options`` it accepts (the scripts pass every
    model flag; each family takes its own, as in the reference). Options set to None are left at
    the constructor's default. (The scripts build through utils.session.build.build_model; their
    parsing refuses options written on the command line that the architecture does not take.)"""
    constructor = registry[arch]
    accepted = model_options(constructor)
    return constructor(**{k: v for k, v in options.items() if k in accepted and v is not None})
