"""Merging a resumed run's recorded flags into this run's: a step of its own, after the command
line is parsed (utils.settings.flags) and the checkpoint read (utils.session.stages).

A checkpoint's ``args`` holds the flags of the recorded groups. ``--resume`` takes them back
unless they are written again, so a resumed run continues the run it resumes. What happens to a
recorded flag written again with another value is its table entry's ``on_resume``
(utils.settings.table): "apply", it takes effect from the resumed epoch (the run record's
session names it), or "refuse", one line (its ``refusal``) saying what to do, because the
checkpoint's optimizer, schedule, EMA, weights or draws hold its old value. A checkpoint written
before a flag existed gets the flag's ``before_flag`` value.

A per-run flag whose entry says ``on_resume="recall"`` (where the data is and how it is loaded:
the batches a run draws depend on them) is taken back from the run record's flags unless
written, with a line saying so; written with another value, it is taken with a warning.
"""
import dataclasses
import os
import re
import sys
from typing import Any, Optional

from ..distributed import launched_as_main

from .flag import NOT_RECORDED_BEFORE, Flag, UsageError
from .table import POLICY_FLAGS
from .values import Schedule

__all__ = ["Resumed", "MalformedRecord", "applied_on_resume", "before_the_flag",
           "merge_resumed", "recall_per_run", "differing_recorded", "blame_record",
           "parsable", "check_going_back"]

START_ANEW = "train into a new run folder (-c) starting from its weights (--weights)"


class MalformedRecord(Exception):
    """A checkpoint's recorded flag holds a value its flag could not have parsed to."""


@dataclasses.dataclass(frozen=True)
class Resumed:
    """What the merge needs of the checkpoint a run resumes: its file, its recorded flags
    (``args``), its architecture, whether it keeps an EMA of the weights and the script that
    wrote it (its run record's last command; None for a reference checkpoint), and the run
    record's flags (``run_flags``: every flag's value, per-run ones included; {} without a
    record)."""
    path: str
    args: dict
    arch: Optional[str] = None
    keeps_ema: bool = False
    script: Optional[str] = None
    run_flags: dict = dataclasses.field(default_factory=dict)


def applied_on_resume(flags: dict) -> frozenset:
    """The names of the ``flags`` (by name) a --resume may give anew (``on_resume`` "apply")."""
    return frozenset(name for name, flag in flags.items() if flag.on_resume == "apply")


def before_the_flag(flags: dict) -> dict:
    """{name: value} of the ``flags`` (by name) that rebuild a checkpoint written before
    them."""
    return {name: flag.before_flag for name, flag in flags.items()
            if flag.before_flag is not NOT_RECORDED_BEFORE}


def merge_resumed(flags: dict, recorded: set, values: dict, given: set,
                  resumed: Resumed) -> dict:
    """Put ``resumed``'s recorded flags into ``values`` (in place) where the command line did
    not write them; ``flags``: the script's Flags by name, ``recorded``: the names of the
    recorded ones. Returns the recorded flags written anew with another value,
    {name: [the checkpoint's value, this run's]}."""
    saved = resumed.args
    check_recorded_types(flags, recorded, saved, resumed.path)
    saved_arch = resumed.arch or saved.get("arch")
    if saved_arch is not None and "arch" in given and saved_arch != values["arch"]:
        raise UsageError(f"the checkpoint is of architecture {saved_arch!r}, but --arch is "
                         f"{values['arch']!r}")
    check_continuable(flags, values, given & recorded, saved, resumed.keeps_ema)
    # The policy flags are one choice: writing one replaces the checkpoint's, whichever.
    replaced = set(POLICY_FLAGS) if given & set(POLICY_FLAGS) else set()
    for name in recorded - replaced:
        if name in saved and name not in given:
            values[name] = saved[name]
    if saved:
        for name, value in before_the_flag(flags).items():
            if name not in saved and name not in given:
                values[name] = value
    if "checkpoint" not in given:  # -c with --resume: train on into another folder
        values["checkpoint"] = os.path.dirname(resumed.path)
    return {name: [saved[name], values[name]] for name in sorted(given & set(saved))
            if name in recorded and saved[name] != values[name]}


def recall_per_run(flags: dict, values: dict, given: frozenset, resumed: Resumed) -> None:
    """Put the run record's value of every ``on_resume="recall"`` flag of ``flags`` (by name)
    into ``values`` (in place) where the command line did not write it, saying so; a value the
    flag could not have parsed to is left alone (the command line's stands), a recalled path
    that is gone (``must_exist``) is one line asking for the flag. A flag written with another
    value than the run's is taken, with a warning where it is another way of loading (one of
    the flag's choices): the resumed run is then not the run continued."""
    main = launched_as_main()
    for name, flag in flags.items():
        was = resumed.run_flags.get(name)
        if (flag.on_resume != "recall" or was in (None, "") or not parsable(flag, was)
                or was == values[name]):
            continue
        if name in given:
            # Another way of loading draws other batches; another folder may be the same data.
            if main and flag.choices:
                print(f"warning: {flag.long} {values[name]}: the run was trained with "
                      f"{flag.long} {was}; its batches are drawn differently, so the resumed "
                      f"run is not the run continued exactly", file=sys.stderr)
            continue
        if flag.must_exist and not os.path.exists(was):
            raise UsageError(f"the run was trained with {flag.long} {was}, which is not there "
                             f"now: give it with {flag.long} {flag.metavar or 'VALUE'}")
        values[name] = was
        if main:
            print(f"==> --resume: {flag.long} {was}, as the run did (write {flag.long} for "
                  f"another)")


def differing_recorded(flags: dict, recorded: set, values: dict, saved: dict) -> Optional[str]:
    """The ``recorded`` flags of ``flags`` (by name) whose values are not a checkpoint's
    (``saved``), in words, or None. A flag the command leaves open (no --manualSeed: random; no
    --norm/--ws: the architecture's) agrees with what the checkpoint decided."""
    differences = []
    for name in sorted(recorded):
        if name not in saved or values[name] is None:
            continue
        given, was = _plain(values[name]), _plain(saved[name])
        if given != was:
            flag = flags[name].long
            differences.append(f"it was trained with {flag} {_shown(was)}, this command gives "
                               f"{flag} {_shown(given)}")
    return "; ".join(differences) or None


def blame_record(error: UsageError, flags: dict, given: frozenset, resumed: Resumed) -> None:
    """Raise MalformedRecord for a refused value or combination (``error``) that names only
    flags the checkpoint's record gave, none written on this command line: the record is
    damaged (``--randaugment 2 99`` recorded), and a line worded as if the user had typed it
    would send them looking for a flag they never wrote. Returns otherwise."""
    text = str(error)

    def named(name):
        return re.search(rf"(?<![\w-]){re.escape(flags[name].long)}(?![\w-])", text)

    recorded = [flags[name].long for name in sorted(set(resumed.args) & set(flags) - given)
                if named(name)]
    if recorded and not any(named(name) for name in given if name in flags):
        raise MalformedRecord(f"{resumed.path} has a malformed 'args': {text} ("
                              f"{', '.join(recorded)} as the checkpoint records it; this "
                              f"command line does not write it)") from error


def check_recorded_types(flags: dict, recorded: set, saved: dict, path: str) -> None:
    """Every recorded flag a checkpoint's ``args`` holds must be a value its flag could have
    parsed to (a number where a number belongs, one of its choices, None only where the flag
    may be unset) and within its flag's range; else one line naming the file and the field, so
    a damaged record is never reported as if it had been typed."""
    for name in sorted(recorded & set(saved)):
        flag, value = flags[name], saved[name]
        if not parsable(flag, value):
            raise MalformedRecord(f"{path} has a malformed 'args': {name} is {value!r}, "
                                  f"which {flag.names[-1]} cannot take")
        problem = flag.problem(value)
        if problem:
            raise MalformedRecord(f"{path} has a malformed 'args': {name} is {value!r}: "
                                  f"{problem}")


def parsable(flag: Flag, value: Any) -> bool:
    """Whether ``value`` is one ``flag`` parses to."""
    if flag.kind in ("switch", "bool"):
        return isinstance(value, bool) or (value is None and flag.default is None)
    if value is None:  # a flag with a script's default is never unset once parsed
        return flag.default is None and flag.script_default is None
    many = flag.nargs in ("+", "*") or isinstance(flag.nargs, int)
    values = value if many else [value]
    if not isinstance(values, list):
        return False
    kind = {int: int, float: (int, float)}.get(flag.kind, str)
    return all(isinstance(v, kind) and not isinstance(v, bool) and
               (flag.choices is None or v in flag.choices) for v in values)


def check_continuable(flags: dict, values: dict, given: set, saved: dict,
                      keeps_ema: bool) -> None:
    """Refuse a recorded flag written (``given``) on a --resume command line whose change the
    checkpoint cannot continue: one whose table entry says "refuse" (another network, optimizer,
    kind of schedule, log columns, batch, seed, ...), in its refusal's words, a model flag
    first; and the changes of an "apply" flag that the checkpoint's state cannot take: warmup
    that would change whether the schedule steps per iteration, an EMA added or dropped."""
    refused = sorted((name for name in given & set(saved) - applied_on_resume(flags)
                      if saved[name] is not None and saved[name] != values[name]),
                     key=lambda name: (flags[name].group != "model", name))
    if refused:
        flag = flags[refused[0]]
        raise UsageError(flag.refusal.format(flag=flag.long, new=_shown(values[flag.name]),
                                             old=_shown(saved[flag.name]),
                                             start_anew=START_ANEW))
    if "warmup_epochs" in given and "scheduler" in saved and "warmup_epochs" in saved:
        # The scheduler itself is the checkpoint's here (another one was refused above).
        before = Schedule(saved["scheduler"], warmup_epochs=saved["warmup_epochs"]).per_iteration
        now = Schedule(saved["scheduler"], warmup_epochs=values["warmup_epochs"]).per_iteration
        if now != before:
            raise UsageError(f"--warmup-epochs {values['warmup_epochs']}: the checkpoint's "
                             f"schedule steps per {'iteration' if before else 'epoch'}, this one "
                             f"would not; {START_ANEW}")
    if "ema" in given and values["ema"] and not keeps_ema:
        raise UsageError(f"--ema {values['ema']}: the checkpoint keeps no average of the weights "
                         f"to continue; {START_ANEW}")
    if "ema" in given and not values["ema"] and keeps_ema:
        raise UsageError("--ema 0: the checkpoint keeps an average of the weights and its log an "
                         "EMA Valid Acc. column, which the run would drop; resume without --ema, "
                         f"or {START_ANEW}")


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


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)
