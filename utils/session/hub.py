"""torch.hub's entry points (hubconf.py): one per architecture of both scripts, each building
the network as its script builds it, from keyword options or from a weights file.

    torch.hub.load(REPO, "cifar_l_resnet", source="local", depth=20)          # fresh
    torch.hub.load(REPO, "l_resnet50", source="local", weights="m.safetensors")

cifar.py's architectures are ``cifar_<arch>`` (both scripts have an alexnet and vggs, different
networks), imagenet.py's (this project's and torchvision's with a chosen pair) their own names.
``weights`` takes a file this project reads (utils.train.checkpoint.read_checkpoint: a run's
checkpoint or folder, a safetensors export, a bare state_dict; nothing is unpickled that could
run code) or a state_dict. A file that records its model (a checkpoint, export.py's safetensors)
is rebuilt from that record, as export.py and predict.py rebuild it, so no option may be given
beside it; a bare state_dict is loaded strictly into the network the options describe. With
weights the model is returned in eval mode; without, in train mode as built.
"""
import os
from typing import Callable, Optional, Union

import torch.nn as nn

from ..scripts import CIFAR, IMAGENET, cifar_flags, imagenet_flags, script_flags_for
from ..settings.flag import Flag, UsageError
from ..settings.flags import ScriptFlags
from ..settings.resume import parsable
from ..data.datasets import DATASETS
from ..train.checkpoint import load_weights, read_checkpoint
from .build import build_model
from .model_card import hub_entry
from .stages import resumed_of
from .trained import trained_from

__all__ = ["entry_points", "hub_model"]

# The class count of a network built without weights: the scripts' default datasets'.
DEFAULT_CLASSES = {CIFAR.script: DATASETS["cifar10"]["num_classes"], IMAGENET.script: 1000}


def entry_points() -> dict:
    """{entry point name: function} of every architecture of both scripts."""
    points = {}
    for flags in (cifar_flags(), imagenet_flags()):
        for arch in sorted(flags.archs):
            name = hub_entry(flags.script, arch)
            points[name] = _entry(name, flags.script, arch)
    return points


def _entry(name: str, script: str, arch: str) -> Callable:
    def entry(weights: Union[str, os.PathLike, dict, None] = None,
              num_classes: Optional[int] = None, **options: object) -> nn.Module:
        return hub_model(script, arch, weights, num_classes, options)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"{script} -a {arch}: the network {script} trains, in train mode.\n\n"
        f"weights: a checkpoint or run folder of this project, export.py's .safetensors, or a "
        f"bare state_dict (a file or a dict); the model is then in eval mode. A file that "
        f"records its model is rebuilt from it: give no options beside it.\n"
        f"num_classes: the outputs (default {DEFAULT_CLASSES[script]}).\n"
        f"options: the model flags of {script} as keywords (depth=20, gn_groups=8, norm='gn', "
        f"ws=True, ...; `python {script} --help` lists them).")
    return entry


def hub_model(script: str, arch: str, weights: Union[str, os.PathLike, dict, None],
              num_classes: Optional[int], options: dict) -> nn.Module:
    """The network of ``script``'s -a ``arch``: from ``weights`` where given (see the module's
    docstring), else built with ``options`` and ``num_classes``. A wrong option is a
    ValueError (TypeError for a keyword no flag has)."""
    if num_classes is not None and (not isinstance(num_classes, int)
                                    or isinstance(num_classes, bool) or num_classes < 1):
        raise ValueError(f"num_classes={num_classes!r}: a model has at least 1 class")
    flags = script_flags_for(arch, script)
    state = weights
    if isinstance(weights, (str, os.PathLike)):
        checkpoint = read_checkpoint(str(weights))
        if checkpoint.arch is not None:
            _check_recorded(weights, checkpoint, script, arch, num_classes, options)
            return trained_from(checkpoint, str(weights)).model
        state = checkpoint
    argv = ["-a", arch] + _option_argv(flags, options)
    try:
        settings = flags.model_settings(argv)
        model = build_model(flags.archs, settings, num_classes or DEFAULT_CLASSES[script])
    except UsageError as e:
        raise ValueError(str(e)) from e
    if state is not None:
        load_weights(model, state)
        model.eval()
    return model


def _check_recorded(path: object, checkpoint: object, script: str, arch: str,
                    num_classes: Optional[int], options: dict) -> None:
    """A file that records its model must be one of this entry point's, with nothing given
    that would build another."""
    trained_by = resumed_of(str(path), checkpoint).script or script
    if checkpoint.arch != arch or trained_by != script:
        raise ValueError(f"{path} holds {trained_by}'s -a {checkpoint.arch}: load it with the "
                         f"entry point {hub_entry(trained_by, checkpoint.arch)!r}")
    if options or num_classes not in (None, checkpoint.num_classes):
        given = sorted(options) + (["num_classes"] if num_classes is not None else [])
        raise ValueError(f"{path} records its model's options and class count; give none "
                         f"beside it ({', '.join(given)} given)")


def _option_argv(flags: ScriptFlags, options: dict) -> list:
    """The command-line tokens of keyword ``options``: each a model flag's constructor keyword
    or name (depth, gn_groups, norm, ws, ghost_batch, ...)."""
    by_keyword = {}
    for name, flag in flags.model_flags.items():
        by_keyword[name] = flag
        if flag.field:
            by_keyword[flag.field] = flag
    argv = []
    for keyword, value in options.items():
        flag = by_keyword.get(keyword)
        if flag is None or flag.name == "arch":
            raise TypeError(f"unexpected keyword {keyword!r}: the options are the model flags "
                            f"of {flags.script} ({', '.join(sorted(flags.model_flags))})")
        problem = _value_problem(flag, value)
        if problem:
            raise ValueError(f"{keyword}={value!r}: {problem}")
        if flag.kind == "bool":
            argv.append(flag.long if value else "--no-" + flag.long[2:])
        elif flag.kind == "switch":
            argv += [flag.long] if value else []
        else:
            values = value if isinstance(value, (list, tuple)) else [value]
            argv += [flag.long] + [str(v) for v in values]
    return argv


def _value_problem(flag: Flag, value: object) -> Optional[str]:
    """Why ``value`` is not one ``flag`` parses to (utils.settings.resume.parsable), or None:
    said here, where argparse would exit the caller's program. None is no value here (it would
    leave a --ws/--no-ws flag open, not turn it off)."""
    if value is not None and parsable(flag, list(value) if isinstance(value, tuple) else value):
        return None
    if flag.kind in ("bool", "switch"):
        return "True or False"
    if isinstance(value, (list, tuple)) and flag.nargs is None:
        return f"{flag.long} takes one value, not a list"
    if flag.choices:
        return f"{flag.long} takes one of {', '.join(map(str, flag.choices))}"
    return f"{flag.long} takes {getattr(flag.kind, '__name__', flag.kind)} values"
