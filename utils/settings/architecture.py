"""What a model's flags must agree with: its architecture. -a names one of a script's
constructors (``check_arch``, with the nearest names for a typo); an open --norm / --ws takes the
constructor's own pair (``resolve_pair``; a checkpoint from before they were recorded trained
it too: ``with_recorded_pair``); a model flag written for an architecture that does not take it
is refused (``check_model_flags``), never silently ignored; --help lists the architectures
(``arch_list``)."""
import dataclasses
import difflib
from typing import Callable

from models import model_options
from models.twins import PAIR_NAMES

from .flag import UsageError
from .resume import Resumed
from .values import ModelSettings

__all__ = ["check_arch", "resolve_pair", "with_recorded_pair", "check_model_flags", "arch_list"]


def resolve_pair(constructor: Callable, values: dict) -> None:
    """--norm and --ws left open (None) take the architecture's own pair (``constructor.pair``:
    bn without WS for a plain name, gn with WS for an l_* name), so the recorded flags, and the
    checkpoints, name the pair the run trains."""
    norm, ws = getattr(constructor, "pair", (None, False))
    if values["norm"] is None:
        values["norm"] = norm
    if values["ws"] is None:
        values["ws"] = ws


def with_recorded_pair(resumed: Resumed, archs: dict) -> Resumed:
    """``resumed`` with --norm and --ws in its args: a checkpoint written before those flags
    were recorded trained its architecture's own pair (resolve_pair), and saying so lets the
    merge compare a --norm or --ws written on its --resume with what it trained (a change is
    refused, as for any network flag) and the run record name the pair."""
    args = resumed.args
    arch = resumed.arch or args.get("arch")
    if not args or ("norm" in args and "ws" in args) or arch not in archs:
        return resumed
    norm, ws = getattr(archs[arch], "pair", (None, False))
    return dataclasses.replace(resumed, args={"norm": norm, "ws": ws, **args})


def arch_list(archs: dict) -> str:
    """-a's choices for --help: this project's models, then torchvision's (imagenet.py)."""
    ours = sorted(n for n, c in archs.items() if not getattr(c, "torchvision", False))
    theirs = sorted(n for n, c in archs.items() if getattr(c, "torchvision", False))
    text = ", ".join(ours)
    return text + (f"; and torchvision's classification models: {', '.join(theirs)}"
                   if theirs else "")


def check_arch(arch: str, archs: list) -> None:
    if arch not in archs:
        close = difflib.get_close_matches(arch, archs, n=3, cutoff=0.5)
        raise UsageError(f"unknown architecture {arch!r}" + (
            f"; did you mean {', '.join(close)}?" if close else "; see --help for the list"))


def check_model_flags(constructor: Callable, model: ModelSettings) -> None:
    """Refuse a model flag written on the command line that the architecture does not take: it
    would otherwise be silently ignored. Flags left at their defaults are simply not used."""
    accepted = model_options(constructor)
    refused = sorted(model.flag_names[o] for o in model.given if o not in accepted)
    if {"norm", "ws"} & model.given and model.arch.startswith("l_") and (
            not {"norm", "ws"} & accepted):
        raise UsageError(f"-a {model.arch} is GN+WS by name: --norm and --ws do not apply; "
                         f"for another pair write -a {model.arch[2:]} --norm NORM --ws")
    if refused:
        takes = sorted(model.flag_names[o] for o in accepted
                       if o in model.flag_names and o not in PAIR_NAMES)
        norm_flags = [model.flag_names[o] for o in PAIR_NAMES
                      if o in accepted and o in model.flag_names]
        listed = ", ".join(takes) if takes else "no model flags"
        if norm_flags:
            listed = f"{listed if takes else 'no family flags'} and the norm flags " + \
                ", ".join(norm_flags)
        raise UsageError(f"{', '.join(refused)} does not apply to {model.arch} (it takes "
                         f"{listed})")
