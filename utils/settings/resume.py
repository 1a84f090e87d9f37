"""Merging a resumed run's recorded flags into this run's: a step of its own, after the command
line is parsed (utils.settings.flags) and the checkpoint read (utils.settings.run).

A checkpoint's ``args`` holds the flags of the recorded groups. ``--resume`` takes them back
unless they are written again, so a resumed run continues the run it resumes. A recorded flag
written again with another value either takes effect from the resumed epoch (APPLIED_ON_RESUME:
the run record's session names it) or is refused with one line saying what to do: the
checkpoint's optimizer, schedule, EMA, weights or draws hold its old value.
"""
import dataclasses
import os
from typing import Any, Optional

from ..train.checkpoint import Checkpoint, CheckpointError
from ..train.schedule import Schedule
from .table import POLICY_FLAGS, Flag, UsageError

__all__ = ["Resumed", "APPLIED_ON_RESUME", "BEFORE_THE_FLAG", "merge_resumed",
           "check_going_back"]

# Recorded flags added after checkpoints were first written, with the value that rebuilds what
# such a checkpoint trained (one without the flag in its args).
BEFORE_THE_FLAG = {"gn_narrow": "channels"}
# Recorded flags a --resume may give anew: they take effect from the resumed epoch.
APPLIED_ON_RESUME = frozenset({"epochs", "lr", "momentum", "weight_decay", "warmup_epochs",
                               "label_smoothing", "mixup", "cutmix", "ricap", "cutout",
                               "dual_cutout", "random_erasing", "clip_grad", "best_by", "ema",
                               "amp", *POLICY_FLAGS})
START_ANEW = "train into a new run folder (-c) starting from its weights (--weights)"


@dataclasses.dataclass(frozen=True)
class Resumed:
    """What the merge needs of the checkpoint a run resumes: its file, its recorded flags
    (``args``), its architecture and whether it keeps an EMA of the weights."""
    path: str
    args: dict
    arch: Optional[str] = None
    keeps_ema: bool = False

    @classmethod
    def of(cls, path: str, checkpoint: Checkpoint) -> "Resumed":
        """What the merge needs of ``checkpoint``, read from ``path``."""
        return cls(path, checkpoint.args or {}, checkpoint.arch, bool(checkpoint.ema_state_dict))


def merge_resumed(flags: dict, recorded: set, values: dict, explicit: set,
                  resumed: Resumed) -> dict:
    """Put ``resumed``'s recorded flags into ``values`` (in place) where the command line did
    not write them; ``flags``: the script's Flags by name, ``recorded``: the names of the
    recorded ones. Returns the recorded flags written anew with another value,
    {name: [the checkpoint's value, this run's]}."""
    saved = resumed.args
    check_recorded_types(flags, recorded, saved, resumed.path)
    saved_arch = resumed.arch or saved.get("arch")
    if saved_arch is not None and "arch" in explicit and saved_arch != values["arch"]:
        raise UsageError(f"the checkpoint is of architecture {saved_arch!r}, but --arch is "
                         f"{values['arch']!r}")
    check_continuable(values, explicit, saved, resumed.keeps_ema)
    # The policy flags are one choice: writing one replaces the checkpoint's, whichever.
    replaced = set(POLICY_FLAGS) if explicit & set(POLICY_FLAGS) else set()
    for name in recorded - replaced:
        if name in saved and name not in explicit:
            values[name] = saved[name]
    if saved:
        for name, value in BEFORE_THE_FLAG.items():
            if name not in saved and name not in explicit:
                values[name] = value
    if "checkpoint" not in explicit:  # -c with --resume: train on into another folder
        values["checkpoint"] = os.path.dirname(resumed.path)
    return {name: [saved[name], values[name]] for name in sorted(explicit & set(saved))
            if name in recorded and saved[name] != values[name]}


def check_recorded_types(flags: dict, recorded: set, saved: dict, path: str) -> None:
    """Every recorded flag a checkpoint's ``args`` holds must be a value its flag could have
    parsed to (a number where a number belongs, one of its choices); else one line naming the
    file and the flag. Ranges are checked with the flags' own once merged."""
    for name in sorted(recorded & set(saved)):
        flag = flags[name]
        if not parsable(flag, saved[name]):
            raise CheckpointError(f"{path} has a malformed 'args': {name} is {saved[name]!r}, "
                                  f"which {flag.names[-1]} cannot take")


def parsable(flag: Flag, value: Any) -> bool:
    """Whether ``value`` is one ``flag`` parses to."""
    if flag.kind in ("switch", "bool"):
        return isinstance(value, bool) or (value is None and flag.default is None)
    if value is None:
        return flag.default is None
    many = flag.nargs in ("+", "*") or isinstance(flag.nargs, int)
    values = value if many else [value]
    if not isinstance(values, list):
        return False
    kind = {int: int, float: (int, float)}.get(flag.kind, str)
    return all(isinstance(v, kind) and not isinstance(v, bool) and
               (flag.choices is None or v in flag.choices) for v in values)


def check_continuable(values: dict, explicit: set, saved: dict, keeps_ema: bool) -> None:
    """Refuse a recorded flag written on a --resume command line whose change the checkpoint
    cannot continue: another network (norm, WS), optimizer or kind of schedule, a change of
    the log's columns (an EMA added or dropped, TTA), any other recorded flag outside
    APPLIED_ON_RESUME."""
    for name in ("norm", "ws"):
        if name in explicit and saved.get(name) is not None and saved[name] != values[name]:
            raise UsageError(f"{_flag(name)} {values[name]}: the checkpoint's network was built "
                             f"with {_flag(name)} {saved[name]}, and its weights and statistics "
                             f"are of that network; train another pair into a new run folder "
                             f"(-c)")
    for name, state in (("optimizer", "optimizer"), ("scheduler", "schedule")):
        if name in explicit and name in saved and saved[name] != values[name]:
            raise UsageError(f"--{name} {values[name]}: the checkpoint was trained with "
                             f"{saved[name]}, and its {state} state cannot continue as another; "
                             f"{START_ANEW}")
    if "warmup_epochs" in explicit and "scheduler" in saved and "warmup_epochs" in saved:
        # The scheduler itself is the checkpoint's here (another one was refused above).
        before = Schedule(saved["scheduler"], warmup_epochs=saved["warmup_epochs"]).per_iteration
        now = Schedule(saved["scheduler"], warmup_epochs=values["warmup_epochs"]).per_iteration
        if now != before:
            raise UsageError(f"--warmup-epochs {values['warmup_epochs']}: the checkpoint's "
                             f"schedule steps per {'iteration' if before else 'epoch'}, this one "
                             f"would not; {START_ANEW}")
    if "ema" in explicit and values["ema"] and not keeps_ema:
        raise UsageError(f"--ema {values['ema']}: the checkpoint keeps no average of the weights "
                         f"to continue; {START_ANEW}")
    if "ema" in explicit and not values["ema"] and keeps_ema:
        raise UsageError("--ema 0: the checkpoint keeps an average of the weights and its log an "
                         "EMA Valid Acc. column, which the run would drop; resume without --ema, "
                         f"or {START_ANEW}")
    if "tta" in explicit and saved.get("tta") not in (None, values["tta"]):
        raise UsageError(f"--tta {values['tta']}: the checkpoint's log was written with --tta "
                         f"{saved['tta']} and its columns would change; resume without --tta, "
                         f"or {START_ANEW}")
    refused = sorted(name for name in explicit & set(saved) - APPLIED_ON_RESUME
                     if saved[name] != values[name])
    if refused:
        name = refused[0]
        raise UsageError(f"{_flag(name)} {_shown(values[name])}: the checkpoint was trained "
                         f"with {_flag(name)} {_shown(saved[name])}, and a resumed run continues "
                         f"its recipe (its optimizer, schedule and draws hold the old value); "
                         f"resume without {_flag(name)}, or {START_ANEW}")


def check_going_back(path: str, values: dict) -> None:
    """A --resume of an older epoch copy (checkpoint_epoch_E.pth.tar) into its own folder would
    replace the newer checkpoint.pth.tar and model_best.pth.tar there and cut the log back to
    epoch E: say so, and do it only with --replace."""
    folder = os.path.dirname(os.path.abspath(path))
    latest = os.path.join(folder, "checkpoint.pth.tar")
    if (values["evaluate"] or values["replace"] or os.path.basename(path) == "checkpoint.pth.tar"
            or os.path.abspath(values["checkpoint"]) != folder or not os.path.isfile(latest)):
        return
    raise UsageError(f"--resume {path} goes back to an older epoch: training on in {folder} "
                     f"would replace its checkpoint.pth.tar and model_best.pth.tar and cut its "
                     f"log.txt back; add --replace to do that, or train on into another folder "
                     f"(-c NEW)")


def _flag(name):
    return "--" + name.replace("_", "-")


def _shown(value):
    return " ".join(map(str, value)) if isinstance(value, list) else value
