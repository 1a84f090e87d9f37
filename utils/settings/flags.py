"""The command line of a script, read once: a parser made from the table of flags
(utils.settings.table), ``parse`` of argv alone, and ``settings``, the typed values of a run,
made once after a resumed checkpoint's recorded flags are merged in (utils.settings.resume).

Every flag belongs to one group, and the group says whether a checkpoint records it:

    model    recorded  the network: -a and the options of its family, its norm, Ghost BN
    dataset  recorded  which dataset (cifar.py -d)
    recipe   recorded  how it trains: epochs, batch, iter-size, LR, schedule, optimizer,
                       augmentation policy, regularisers, EMA, AMP, the seed
    data     per-run   where the files are and how they are loaded (--data, -j, --loader, ...)
    run      per-run   what this invocation does, on what: --resume, -e, --weights, --start-epoch,
                       --gpu-id, --channels-last, --compile
    output   per-run   the run folder (-c) and progress output

Each flag's value goes where its table entry's ``into`` says: the typed settings of
utils.settings.values are built from the table, not from a hand-kept list. A flag added to the
parser outside the table is refused when the parser is used (``ScriptFlags.check_classified``).
Nothing here touches CUDA or reads a file: the device is chosen after parsing
(utils.session.device.select_device), once ``--gpu-id`` can still steer it.
"""
import argparse
import dataclasses
import os
import re
import sys
from typing import Optional, Sequence

from ..distributed import launched_as_main
from .architecture import arch_list, check_arch, check_model_flags, resolve_pair, \
    with_recorded_pair
from .resume import (Resumed, blame_record, check_going_back, differing_recorded,
                     merge_resumed, recall_per_run)
from .flag import GROUP_KINDS, GROUPS, PER_RUN, RECORDED, Flag, UsageError
from .table import POLICY_FLAGS, check, check_pair, check_rules, check_written
from .values import (AugmentPolicy, CheckpointPolicy, DataSettings, DeviceSettings, ImageViews,
                     LoopSettings, ModelSettings, RecipeSettings, Regularisers, RunSettings,
                     Schedule)

__all__ = ["ScriptSpec", "ScriptFlags", "ParsedFlags", "Invocation", "argparse_options",
           "check_values", "exact_float", "default_run_folder", "default_workers",
           "augment_policy"]


def exact_float(text: str) -> float:
    """argparse's float, refusing a number that rounds to 0 (``--ema 1e-400`` would silently
    turn the EMA off)."""
    value = float(text)
    if value == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
        raise argparse.ArgumentTypeError(f"{text} is too small to tell from 0 in floating point")
    return value


exact_float.__name__ = "float"  # argparse's message: "invalid float value: 'x'"


def argparse_options(flag: Flag, default: object = None) -> dict:
    """argparse's keywords for ``flag`` with ``default`` (a tuple becomes argparse's list), for a
    script's parser and for the tools that take the same flags (bench.py)."""
    if isinstance(default, tuple):
        default = list(default)
    kwargs = dict(help=flag.help, dest=flag.name)
    if flag.kind == "switch":
        return {**kwargs, "action": "store_true"}
    if flag.kind == "bool":
        return {**kwargs, "action": argparse.BooleanOptionalAction, "default": None}
    kwargs.update(default=default, type={float: exact_float, int: int}.get(flag.kind, str))
    for name in ("choices", "nargs", "metavar", "const", "required"):
        if getattr(flag, name) not in (None, False):
            kwargs[name] = getattr(flag, name)
    return kwargs


def check_values(flags: dict, values: dict) -> None:
    """Each of ``flags`` (by name) refuses a value outside its type's range: a UsageError."""
    for name, flag in flags.items():
        problem = flag.problem(values[name])
        if problem:
            raise UsageError(problem)


@dataclasses.dataclass(frozen=True)
class ScriptSpec:
    """What makes a script's command line: its name and description, the constructors -a
    accepts by name, the side of its training crops (bounds --cutout), the most loader workers
    it starts by default, its defaults for the table's per-script flags (``script_default``),
    the flags only it has, and the examples --help ends with."""
    script: str
    description: str
    archs: dict
    image_size: int
    workers: int
    defaults: dict
    own_flags: tuple = ()
    examples: str = ""


@dataclasses.dataclass(frozen=True)
class ParsedFlags:
    """A command line as argparse read it: every flag's value, the flags written on it
    (``given``), and the command line itself. Read through ``ScriptFlags`` (its typed
    ``invocation`` and ``settings``), never by key outside utils.settings."""
    values: dict
    given: frozenset
    argv: tuple

    def resuming(self, path: str) -> "ParsedFlags":
        """The command line with ``--resume path`` (what --auto-resume makes of it)."""
        return dataclasses.replace(self, values={**self.values, "resume": path})

    def starting_over(self) -> "ParsedFlags":
        """The command line with ``--replace``: its run folder's run started over."""
        return dataclasses.replace(self, values={**self.values, "replace": True})


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What a command line asks of this invocation, typed, before any checkpoint is read:
    what --auto-resume decides on and what says whether a checkpoint is read (``resume``).
    ``run_folder`` is -c, or -a's default folder; ``epochs`` the --epochs it trains to."""
    resume: str
    evaluate: bool
    replace: bool
    auto_resume: bool
    run_folder: str
    epochs: int


class ScriptFlags:
    """A script's parser: the table's shared flags with the script's defaults, and its own."""

    def __init__(self, spec: ScriptSpec, shared: tuple):
        self.spec, self.script, self.archs = spec, spec.script, spec.archs
        self.flags = {flag.name: flag for flag in shared + tuple(spec.own_flags)}
        self.model_flags = {name: flag for name, flag in self.flags.items()
                            if flag.group == "model"}
        self.parser = OneVoiceParser(prog=spec.script, description=spec.description,
                                              epilog=spec.examples,
                                              formatter_class=argparse.RawDescriptionHelpFormatter,
                                              allow_abbrev=False)
        groups = {name: self.parser.add_argument_group(title) for name, _, title in GROUPS}
        for flag in self.flags.values():
            groups[flag.group].add_argument(*flag.names, **self._argparse(flag))

    def default_of(self, flag: Flag) -> object:
        """``flag``'s default in this script: the script's (``script_default``) or its own."""
        return self.spec.defaults.get(flag.script_default, flag.default)

    def _argparse(self, flag: Flag) -> dict:
        """argparse's keywords for ``flag``, with this script's default."""
        default = self.default_of(flag)
        kwargs = argparse_options(flag, default)
        if flag.kind in ("switch", "bool"):
            return kwargs
        if flag.name == "arch":
            kwargs["help"] = f"{flag.help} (default: %(default)s): {arch_list(self.archs)}"
        elif flag.name == "schedule":
            kwargs["help"] = f"{flag.help} (default: {' '.join(map(str, default))})"
        elif flag.name == "workers":
            kwargs["help"] = flag.help.replace("the script's", str(self.spec.workers))
        return kwargs

    def dests(self, kind: str) -> set:
        """The names of the flags of one kind (RECORDED or PER_RUN)."""
        return {name for name, flag in self.flags.items() if GROUP_KINDS[flag.group] == kind}

    def check_classified(self, values: dict) -> None:
        """Refuse a parse whose flags include one of no group (added with
        parser.add_argument): nobody decided whether checkpoints record it."""
        stray = set(values) - self.dests(RECORDED) - self.dests(PER_RUN)
        if stray:
            raise RuntimeError(f"flags {sorted(stray)} are in no flag group: add them to the "
                               f"table (utils.settings.table) so a checkpoint knows whether to "
                               f"record them")

    def parse(self, argv: Optional[list] = None) -> ParsedFlags:
        """``argv`` (sys.argv[1:] by default) as argparse reads it; flag errors exit 2."""
        argv = sys.argv[1:] if argv is None else list(argv)
        values = vars(self.parser.parse_args(argv))
        self.check_classified(values)
        return ParsedFlags(values, _written(self.flags, argv), tuple(argv))

    def invocation(self, parsed: ParsedFlags) -> Invocation:
        """The Invocation of ``parsed``: the fields its flags' ``into`` names (run.*), and the
        --epochs of the schedule."""
        run = _gather(self.flags, parsed.values, "run")
        folder = run["run_folder"] or default_run_folder(self.script, parsed.values["arch"])
        return Invocation(resume=run["resume"], evaluate=run["evaluate"], replace=run["replace"],
                          auto_resume=run["auto_resume"], run_folder=folder,
                          epochs=_gather(self.flags, parsed.values, "schedule")["epochs"])

    def differing_recorded(self, parsed: ParsedFlags, saved: dict) -> Optional[str]:
        """The recorded flags whose values on ``parsed`` are not a checkpoint's recorded
        ``saved`` ones, in words (utils.settings.resume.differing_recorded), or None."""
        return differing_recorded(self.flags, self.dests(RECORDED), parsed.values, saved)

    def model_settings(self, argv: Sequence[str],
                       resumed: Optional[Resumed] = None) -> ModelSettings:
        """The ModelSettings of model flags alone, for the tools that build a network without
        training it (bench.py, export.py): ``argv`` holds -a and the model group's flags, and
        with ``resumed`` a checkpoint's recorded model flags fill in what argv does not write.
        They are checked as a run checks them; no other flag is read or required (a run's
        --data, say)."""
        model = self.model_flags
        parser = OneVoiceParser(prog=self.script, allow_abbrev=False)
        for flag in model.values():
            parser.add_argument(*flag.names, **self._argparse(flag))
        values = vars(parser.parse_args(list(argv)))
        given = _written(model, argv)
        if resumed is not None:
            resumed = with_recorded_pair(resumed, self.archs)
            merge_resumed(model, set(model), values, given, resumed)
            self._check_resumed_arch(values["arch"], resumed)
        check_values(model, values)
        return self._model_settings(values, given)

    def image_views(self, resumed: Optional[Resumed] = None) -> ImageViews:
        """The ImageViews a run's checkpoint records (imagenet.py's input size, filter and
        normalisation; the defaults for a script without those flags or a checkpoint from
        before them), checked as a run checks them: for export.py and predict.py."""
        views = {name: flag for name, flag in self.flags.items() if flag.target == "views"}
        parser = OneVoiceParser(prog=self.script, allow_abbrev=False)
        for flag in views.values():
            parser.add_argument(*flag.names, **self._argparse(flag))
        values = vars(parser.parse_args([]))
        if resumed is not None:
            merge_resumed(views, set(views), values, frozenset(), resumed)
        check_values(views, values)
        return check(ImageViews, _gather(views, values, "views"))

    def _check_resumed_arch(self, arch: str, resumed: Resumed) -> None:
        """A checkpoint of a network this script does not build (another script's, most
        likely): one line naming the checkpoint, its architecture and the script that wrote it,
        rather than the "unknown architecture" of a mistyped -a."""
        if arch in self.archs or not isinstance(arch, str):
            return
        other = resumed.script if resumed.script and resumed.script != self.script else None
        raise UsageError(f"{resumed.path} is a checkpoint of -a {arch}"
                         + (f", written by {other}" if other else "")
                         + f", which {self.script} does not build"
                         + (f": use it with {other}" if other else ""))

    def _model_settings(self, values: dict, given: frozenset) -> ModelSettings:
        """The checked ModelSettings of every model flag's value in ``values`` (in place, an
        open pair takes the architecture's)."""
        check_arch(values["arch"], sorted(self.archs))
        constructor = self.archs[values["arch"]]
        resolve_pair(constructor, values)
        model = self.model_flags
        settings = ModelSettings(
            options=_gather(model, values, "options"),
            flag_names={flag.option: flag.long for flag in model.values() if flag.option},
            given=frozenset(flag.option for name, flag in model.items()
                            if flag.option and name in given),
            **_gather(model, values, "model"))
        check_model_flags(constructor, settings)
        check_pair(values, given)
        return settings

    def settings(self, parsed: ParsedFlags, resumed: Optional[Resumed] = None) -> RunSettings:
        """The RunSettings of a parsed command line and, for --resume, the checkpoint's
        recorded flags; impossible values and combinations are a UsageError, all before any
        data is read or CUDA is touched."""
        values, given = dict(parsed.values), parsed.given
        changed = {}
        if resumed is not None:
            resumed = with_recorded_pair(resumed, self.archs)
            changed = merge_resumed(self.flags, self.dests(RECORDED), values, given, resumed)
            self._check_resumed_arch(values["arch"], resumed)
            recall_per_run(self.flags, values, given, resumed)
        if values["data"] is None:
            raise UsageError("--data is required: the folder of the data (see --help)")
        if values["workers"] is None:
            values["workers"] = default_workers(self.spec.workers)
        try:
            check_values(self.flags, values)
            check_rules(values, values.get("train_crop_size") or self.spec.image_size,
                        resumed is not None)
            if values["checkpoint"] is None:
                values["checkpoint"] = default_run_folder(self.script, values["arch"])
            if resumed is not None:
                check_going_back(resumed.path, values)
            warn_schedule(values)
            return self._settings(values, given, parsed.argv, changed)
        except UsageError as refusal:  # of values the record gave: the record's fault
            if resumed is not None:
                blame_record(refusal, self.flags, given, resumed)
            raise

    def _settings(self, values: dict, given: frozenset, argv: tuple,
                  changed: dict) -> RunSettings:
        """Every typed settings object of ``values``, each field from the flag whose ``into``
        names it (utils.settings.table)."""
        flags = self.flags
        model = self._model_settings(values, given)  # first: it settles an open --norm / --ws
        check_written(values, given)

        def gather(target):
            return _gather(flags, values, target)

        recipe = RecipeSettings(schedule=Schedule(**gather("schedule")),
                                regularisers=check(Regularisers, gather("regularisers")),
                                **gather("recipe"))
        return RunSettings(
            model=model,
            data=DataSettings(policy=augment_policy(gather("policy")),
                              views=check(ImageViews, gather("views")), **gather("data")),
            recipe=recipe,
            device=DeviceSettings(gpu_id_given="gpu_id" in given, **gather("device")),
            checkpoints=CheckpointPolicy(**gather("checkpoints")),
            loop=LoopSettings(**gather("loop")),
            recorded={k: values[k] for k in sorted(self.dests(RECORDED))},
            flags=dict(values), command=(self.script,) + tuple(argv), changed=changed,
            **gather("run"))


def _gather(flags: dict, values: dict, target: str) -> dict:
    """{field: value} of the ``flags`` (by name) whose value goes into ``target``."""
    return {flag.field: flag.value(values[name]) for name, flag in flags.items()
            if flag.target == target}


def _written(flags: dict, argv: Sequence[str]) -> frozenset:
    """The names of the ``flags`` (by name) that ``argv`` writes."""
    written = {token.split("=", 1)[0] for token in argv if token.startswith("-")}
    return frozenset(name for name, flag in flags.items() if written & _spellings(flag))


def _spellings(flag: Flag) -> set:
    """The option strings that write ``flag`` (prefix abbreviations are off): its names, and
    --no-NAME for a --NAME/--no-NAME flag."""
    names = set(flag.names)
    if flag.kind == "bool":
        names |= {"--no-" + n[2:] for n in flag.names if n.startswith("--")}
    return names


def augment_policy(values: dict) -> AugmentPolicy:
    """The AugmentPolicy of --autoaugment, --randaugment or --trivialaugment (at most one;
    ``values`` by name)."""
    asked = ["--" + name for name in POLICY_FLAGS if values[name]]
    if len(asked) > 1:
        raise UsageError(f"choose one of {', '.join(asked)} (each is a whole augmentation "
                         f"policy)")
    if values["autoaugment"]:
        return AugmentPolicy("autoaugment", autoaugment=values["autoaugment"])
    if values["randaugment"]:
        num_ops, magnitude = values["randaugment"]
        return check(AugmentPolicy, dict(kind="randaugment", num_ops=num_ops,
                                         magnitude=magnitude))
    return AugmentPolicy("trivialaugment" if values["trivialaugment"] else "none")


def default_run_folder(script: str, arch: str) -> str:
    """-c left open: checkpoints/SCRIPT-ARCH (checkpoints/cifar-resnext), under the shipped
    checkpoints/ folder, one per architecture."""
    return os.path.join("checkpoints", f"{os.path.splitext(script)[0]}-{arch}")


class OneVoiceParser(argparse.ArgumentParser):
    """argparse's parser, speaking from one process: under torchrun every process parses the
    same command line and meets the same flag error, and rank 0's usage line, help and error
    are the run's (each process still exits 2)."""

    def _print_message(self, message: str, file=None) -> None:
        if launched_as_main():
            super()._print_message(message, file)


def default_workers(cap: int) -> int:
    """Loader workers when -j is not given: the cores this process may run on, shared among the
    processes torchrun starts on this machine, at most ``cap`` and at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(cap, (cores or 1) // max(1, local)))


def warn_schedule(values: dict) -> None:
    """A line on stderr (rank 0's) for --schedule milestones that never lower the LR: at or
    past --epochs. Not an error: a run may be resumed later with more epochs."""
    late = [m for m in values["schedule"] if m >= values["epochs"]]
    if (values["scheduler"] == "step" and late and not values["evaluate"]
            and launched_as_main()):
        print(f"warning: --schedule milestone(s) {' '.join(map(str, late))} at or past --epochs "
              f"{values['epochs']} never lower the LR in this run", file=sys.stderr)
