"""The command line of cifar.py and imagenet.py: flags declared in groups that say what they
are, checked once, merged with a resumed checkpoint's, and handed on as typed values.

Every flag belongs to one group, and the group says whether a checkpoint records it:

    model    recorded  the network: -a and the options of its family, Ghost BN
    dataset  recorded  which dataset (cifar.py -d)
    recipe   recorded  how it trains: epochs, batch, iter-size, LR, schedule, optimizer,
                       augmentation policy, regularisers, EMA, AMP, the seed
    data     per-run   where the files are and how they are loaded (--data, -j, --loader, ...)
    run      per-run   what this invocation does, on what: --resume, -e, --weights, --start-epoch,
                       --gpu-id, --channels-last, --compile
    output   per-run   the run folder (-c) and progress output

A checkpoint's ``args`` holds the recorded flags, and ``--resume`` takes them back unless they are
written again on the command line, so a resumed run continues the run it resumes. A flag added
to the parser outside a group is refused when the parser is used (``ScriptFlags.check_classified``).
Nothing here touches CUDA: the device is chosen after parsing (utils.run.select_device), once
``--gpu-id`` can still steer it.
"""
import argparse
import dataclasses
import difflib
import math
import os
import re
import sys

from models import model_options
from models.twins import PAIR_NAMES
from models.norms import BATCH_NORMS, BCN_SPEED, GN_NARROW_RULES, GROUP_NORMS, NORMS

from .data.augment import Regularisers
from .data.policies import AUTOAUGMENT_POLICIES, AugmentPolicy
from .train.checkpoint import CheckpointError, read_checkpoint, resolve_checkpoint_path
from .train.recipe import RecipeSettings
from .train.schedule import Schedule

__all__ = ["UsageError", "RECORDED", "PER_RUN", "ScriptFlags", "ModelChoice", "DeviceChoice",
           "DataChoice", "RunSettings", "COMPILE_MODES", "COMPILE_FLAG"]

RECORDED, PER_RUN = "recorded", "per-run"
GROUPS = (("model", RECORDED, "model (recorded in checkpoints)"),
          ("dataset", RECORDED, "dataset (recorded in checkpoints)"),
          ("recipe", RECORDED, "training recipe (recorded in checkpoints)"),
          ("data", PER_RUN, "data files and loading"),
          ("run", PER_RUN, "this run: resume, evaluate, device, speed"),
          ("output", PER_RUN, "output"))
# torch.compile's modes; reduce-overhead and max-autotune replay the step as CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# --compile [MODE] as argparse takes it (the scripts' and bench.py's): bare, the default mode.
COMPILE_FLAG = dict(nargs="?", const="default", default=None, choices=COMPILE_MODES,
                    metavar="MODE")


class UsageError(Exception):
    """A flag or combination of flags that cannot work; the message says which and why."""


def exact_float(text: str) -> float:
    """argparse's float, refusing a number that rounds to 0 (``--ema 1e-400`` would silently
    turn the EMA off)."""
    value = float(text)
    if value == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
        raise argparse.ArgumentTypeError(f"{text} is too small to tell from 0 in floating point")
    return value


exact_float.kind = float
exact_float.__name__ = "float"  # argparse's message: "invalid float value: 'x'"


class FlagGroup:
    """One argparse group of a kind; model flags also name the constructor option they set."""

    def __init__(self, parser, name, kind, title):
        self.name, self.kind = name, kind
        self.actions, self.dests, self.options = [], [], {}
        self._group = parser.add_argument_group(title)

    def add(self, *names, option=None, **kwargs):
        if kwargs.get("type") is float:
            kwargs["type"] = exact_float
        action = self._group.add_argument(*names, **kwargs)
        self.actions.append(action)
        self.dests.append(action.dest)
        if option:
            self.options[action.dest] = (option, next(o for o in action.option_strings
                                                      if o.startswith("--")))
        return action


class ScriptFlags:
    """A script's parser: the shared flags with its defaults, plus the ones it adds itself
    (``flags["model"].add(...)``)."""

    def __init__(self, script, description, archs, *, image_size, workers, epochs, train_batch,
                 test_batch, weight_decay, arch, cardinality, schedule=(150, 225)):
        """``script``: its file name; ``archs``: the constructors -a accepts, by name;
        ``image_size``: the side of the training crops (bounds --cutout); ``workers``: the most
        loader workers by default (fewer on a machine with fewer cores per process)."""
        self.script = script
        self.parser = argparse.ArgumentParser(prog=script, description=description,
                                              allow_abbrev=False)
        self.groups = {name: FlagGroup(self.parser, name, kind, title)
                       for name, kind, title in GROUPS}
        self.archs, self.image_size = archs, image_size
        self.workers_cap = workers
        _add_shared_flags(self, workers=workers, epochs=epochs, train_batch=train_batch,
                          test_batch=test_batch, weight_decay=weight_decay, arch=arch,
                          cardinality=cardinality, schedule=schedule)

    def __getitem__(self, name):
        return self.groups[name]

    def dests(self, kind):
        return {d for g in self.groups.values() if g.kind == kind for d in g.dests}

    def check_classified(self, values):
        """Refuse a parse whose flags include one of no group (added with
        parser.add_argument): nobody decided whether checkpoints record it."""
        stray = set(values) - self.dests(RECORDED) - self.dests(PER_RUN)
        if stray:
            raise RuntimeError(f"flags {sorted(stray)} are in no flag group: add them with "
                               f"flags[group].add so a checkpoint knows whether to record them")

    def parse(self, argv=None):
        """RunSettings of ``argv`` (sys.argv[1:] by default), and the checkpoint dict read for
        --resume (else None). Flag errors exit 2 through argparse; impossible values and
        combinations raise UsageError, all before any data is read or CUDA is touched."""
        argv = sys.argv[1:] if argv is None else list(argv)
        values = vars(self.parser.parse_args(argv))
        self.check_classified(values)
        explicit = self._explicit(argv)
        checkpoint, changed = None, {}
        if values["resume"]:
            path = resolve_checkpoint_path(values["resume"])
            checkpoint = read_checkpoint(path)
            changed = self._take_recorded(values, explicit, checkpoint, path)
            if "checkpoint" not in explicit:  # -c with --resume: train on into another folder
                values["checkpoint"] = os.path.dirname(path)
            check_going_back(path, values)
        if values["workers"] is None:
            values["workers"] = default_workers(self.workers_cap)
        check_values(values)
        warn_schedule(values)
        if not checkpoint and not values["evaluate"] and values["start_epoch"] >= values["epochs"]:
            raise UsageError(f"nothing to train: --start-epoch {values['start_epoch']} is not "
                             f"below --epochs {values['epochs']}")
        if values["cutout"] > self.image_size:
            raise UsageError(f"--cutout {values['cutout']} is larger than the "
                             f"{self.image_size}x{self.image_size} training images")
        check_arch(values["arch"], sorted(self.archs))
        constructor = self.archs[values["arch"]]
        resolve_pair(constructor, values)
        if values["evaluate"] and not (checkpoint or values["weights"]
                                       or values.get("pretrained")):
            raise UsageError("-e evaluates a trained model: give it with --resume RUN or "
                             "--weights PATH (or --pretrained), else it would score random "
                             "weights")
        settings = self._settings(values, explicit, argv, changed)
        check_model_flags(constructor, settings.model)
        check_pair(values, explicit)
        return settings, checkpoint

    def _explicit(self, argv):
        """The dests of the options written in ``argv`` (prefix abbreviations are off)."""
        written = {token.split("=", 1)[0] for token in argv if token.startswith("-")}
        return {a.dest for g in self.groups.values() for a in g.actions
                if written & set(a.option_strings)}

    def _take_recorded(self, values, explicit, checkpoint, path):
        saved = checkpoint.get("args") or {}
        self.check_recorded_types(saved, path)
        saved_arch = checkpoint.get("arch", saved.get("arch"))
        if saved_arch is not None and "arch" in explicit and saved_arch != values["arch"]:
            raise UsageError(f"the checkpoint is of architecture {saved_arch!r}, but --arch is "
                             f"{values['arch']!r}")
        check_continuable(values, explicit, saved, checkpoint)
        # The policy flags are one choice: writing one replaces the checkpoint's, whichever.
        replaced = set(POLICY_FLAGS) if explicit & set(POLICY_FLAGS) else set()
        for name in self.dests(RECORDED) - replaced:
            if name in saved and name not in explicit:
                values[name] = saved[name]
        if saved:
            for name, value in BEFORE_THE_FLAG.items():
                if name not in saved and name not in explicit:
                    values[name] = value
        return {name: [saved[name], values[name]] for name in sorted(explicit & set(saved))
                if name in self.dests(RECORDED) and saved[name] != values[name]}

    def check_recorded_types(self, saved, path):
        """Every recorded flag a checkpoint's ``args`` holds must be a value its flag could
        have parsed to (a number where a number belongs, one of its choices); else one line
        naming the file and the flag. The ranges are checked with the flags' own
        (check_values) once merged."""
        for group in self.groups.values():
            if group.kind != RECORDED:
                continue
            for action in group.actions:
                if action.dest in saved and not _parsable(action, saved[action.dest]):
                    raise CheckpointError(
                        f"{path} has a malformed 'args': {action.dest} is "
                        f"{saved[action.dest]!r}, which {action.option_strings[-1]} cannot take")

    def _settings(self, values, explicit, argv, changed):
        model_group = self["model"]
        options = {option: values[dest] for dest, (option, _) in model_group.options.items()}
        flag_names = {option: flag for option, flag in model_group.options.values()}
        given = frozenset(option for dest, (option, _) in model_group.options.items()
                          if dest in explicit)
        return RunSettings(
            model=ModelChoice(values["arch"], options, flag_names, given, values["ghost_batch"],
                              values["sync_bn"]),
            data=DataChoice(root=values["data"], dataset=values.get("dataset"),
                            download=not values.get("no_download", True),
                            loader=values.get("loader"), decode=values.get("decode"),
                            workers=values["workers"], train_batch=values["train_batch"],
                            test_batch=values["test_batch"], policy=augment_policy(values)),
            recipe=recipe_settings(values),
            device=DeviceChoice(values["gpu_id"], "gpu_id" in explicit, values["amp"],
                                values["channels_last"], values["compile"]),
            seed=values["manualSeed"], start_epoch=values["start_epoch"],
            resume=values["resume"], evaluate=values["evaluate"], weights=values["weights"],
            pretrained=values.get("pretrained", False), run_folder=values["checkpoint"],
            show_progress=not values["no_progress"],
            keep_checkpoints=values["keep_checkpoints"], save_every=values["save_every"],
            tta=values["tta"] == "flip", best_by=values["best_by"], replace=values["replace"],
            recorded={k: values[k] for k in sorted(self.dests(RECORDED))},
            flags=dict(values), command=(self.script,) + tuple(argv), changed=changed)


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """-a and its options: ``options`` maps a constructor keyword to its flag's value,
    ``flag_names`` that keyword to the flag, ``given`` the keywords written on the command line
    (an architecture that does not take one of them is refused, not silently built without it)."""
    arch: str
    options: dict
    flag_names: dict
    given: frozenset
    ghost_batch: int = 0
    sync_bn: bool = False


@dataclasses.dataclass(frozen=True)
class DeviceChoice:
    """--gpu-id (and whether it was written), AMP, and the speed flags of model preparation."""
    gpu_id: str
    gpu_id_given: bool
    amp: str
    channels_last: bool
    compile: str = None  # torch.compile's mode; None: eager


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """Where the data is, how it is batched and which augmentation policy its training images
    take; None for a flag the script does not have."""
    root: str
    dataset: str
    download: bool
    loader: str
    decode: str
    workers: int
    train_batch: int
    test_batch: int
    policy: AugmentPolicy = AugmentPolicy()


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything a run was asked to do, as typed values; ``recorded`` is what its checkpoints
    record (the recorded groups' flags), ``flags`` every flag's value and ``command`` the script
    and its command line (for run.json)."""
    model: ModelChoice
    data: DataChoice
    recipe: RecipeSettings
    device: DeviceChoice
    seed: int
    start_epoch: int
    resume: str
    evaluate: bool
    weights: str
    pretrained: bool
    run_folder: str
    show_progress: bool
    keep_checkpoints: int
    save_every: float
    tta: bool
    best_by: str
    replace: bool
    recorded: dict
    flags: dict
    command: tuple
    changed: dict = dataclasses.field(default_factory=dict)

    @property
    def epochs(self):
        return self.recipe.schedule.epochs

    def with_seed(self, seed):
        """The settings with the run's seed decided (recorded, so a resume draws the same)."""
        return dataclasses.replace(self, seed=seed, recorded={**self.recorded, "manualSeed": seed},
                                   flags={**self.flags, "manualSeed": seed})


def recipe_settings(values):
    schedule = Schedule(values["scheduler"], values["epochs"], tuple(values["schedule"]),
                        values["gamma"], values["warmup_epochs"])
    regularisers = Regularisers(values["cutout"], values["random_erasing"], values["mixup"],
                                values["cutmix"], values["ricap"], values["dual_cutout"])
    return RecipeSettings(values["optimizer"], values["lr"], values["momentum"],
                          values["weight_decay"], values["nesterov"], values["no_wd_norm"],
                          schedule, values["iter_size"], values["label_smoothing"], regularisers,
                          values["ema"], values["amp"], values["clip_grad"])


POLICY_FLAGS = ("autoaugment", "randaugment", "trivialaugment")
# Recorded flags added after checkpoints were first written, with the value that rebuilds what
# such a checkpoint trained (one without the flag in its args).
BEFORE_THE_FLAG = {"gn_narrow": "channels"}
# Recorded flags a --resume may give anew: they take effect from the resumed epoch, and the run
# record says so (its session's "changed"). Any other recorded flag written with another value
# is refused: the checkpoint's optimizer, schedule, EMA, weights or draws hold its old value.
APPLIED_ON_RESUME = frozenset({"epochs", "lr", "momentum", "weight_decay", "warmup_epochs",
                               "label_smoothing", "mixup", "cutmix", "ricap", "cutout",
                               "dual_cutout", "random_erasing", "clip_grad", "best_by", "ema",
                               "amp", *POLICY_FLAGS})


def augment_policy(values):
    """The AugmentPolicy of --autoaugment, --randaugment or --trivialaugment (at most one;
    ValueError otherwise)."""
    asked = [_flag(name) for name in POLICY_FLAGS if values[name]]
    if len(asked) > 1:
        raise ValueError(f"choose one of {', '.join(asked)} (each is a whole augmentation "
                         f"policy)")
    if values["autoaugment"]:
        return AugmentPolicy("autoaugment", autoaugment=values["autoaugment"])
    if values["randaugment"]:
        num_ops, magnitude = values["randaugment"]
        return AugmentPolicy("randaugment", num_ops=num_ops, magnitude=magnitude)
    return AugmentPolicy("trivialaugment" if values["trivialaugment"] else "none")


def check_continuable(values, explicit, saved, checkpoint):
    """Refuse a recipe flag written on a --resume command line whose change the checkpoint's
    state cannot continue: another optimizer or kind of schedule (their states do not carry
    over), or an EMA the checkpoint never kept."""
    start_anew = "train into a new run folder (-c) starting from its weights (--weights)"
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
                             f"{start_anew}")
    if "warmup_epochs" in explicit and "scheduler" in saved and "warmup_epochs" in saved:
        # The scheduler itself is the checkpoint's here (another one was refused above).
        before = Schedule(saved["scheduler"], warmup_epochs=saved["warmup_epochs"]).per_iteration
        now = Schedule(saved["scheduler"], warmup_epochs=values["warmup_epochs"]).per_iteration
        if now != before:
            raise UsageError(f"--warmup-epochs {values['warmup_epochs']}: the checkpoint's "
                             f"schedule steps per {'iteration' if before else 'epoch'}, this one "
                             f"would not; {start_anew}")
    if "ema" in explicit and values["ema"] and not checkpoint.get("ema_state_dict"):
        raise UsageError(f"--ema {values['ema']}: the checkpoint keeps no average of the weights "
                         f"to continue; {start_anew}")
    if "ema" in explicit and not values["ema"] and checkpoint.get("ema_state_dict"):
        raise UsageError("--ema 0: the checkpoint keeps an average of the weights and its log an "
                         "EMA Valid Acc. column, which the run would drop; resume without --ema, "
                         f"or {start_anew}")
    if "tta" in explicit and saved.get("tta") not in (None, values["tta"]):
        raise UsageError(f"--tta {values['tta']}: the checkpoint's log was written with --tta "
                         f"{saved['tta']} and its columns would change; resume without --tta, "
                         f"or {start_anew}")
    refused = sorted(name for name in explicit & set(saved) - APPLIED_ON_RESUME
                     if saved[name] != values[name])
    if refused:
        name = refused[0]
        raise UsageError(f"{_flag(name)} {_shown(values[name])}: the checkpoint was trained "
                         f"with {_flag(name)} {_shown(saved[name])}, and a resumed run continues "
                         f"its recipe (its optimizer, schedule and draws hold the old value); "
                         f"resume without {_flag(name)}, or {start_anew}")


def check_going_back(path, values):
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


def _shown(value):
    return " ".join(map(str, value)) if isinstance(value, list) else value


def _parsable(action, value):
    """Whether ``value`` is one ``action`` (an argparse flag) parses to."""
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        return isinstance(value, bool) or (value is None and action.default is None)
    if value is None:
        return action.default is None
    values = value if action.nargs in ("+", "*") or isinstance(action.nargs, int) else [value]
    if not isinstance(values, list):
        return False
    kind = {int: int, float: (int, float)}.get(getattr(action.type, "kind", action.type), str)
    return all(isinstance(v, kind) and not isinstance(v, bool) and
               (action.choices is None or v in action.choices) for v in values)


def resolve_pair(constructor, values):
    """--norm and --ws left open (None) take the architecture's own pair (``constructor.pair``:
    bn without WS for a plain name, gn with WS for an l_* name), so the recorded flags, and the
    checkpoints, name the pair the run trains."""
    norm, ws = getattr(constructor, "pair", (None, False))
    if values["norm"] is None:
        values["norm"] = norm
    if values["ws"] is None:
        values["ws"] = ws


def check_pair(values, explicit):
    """Refuse a norm option written for a norm that has no use for it, and micro-batches or
    synchronised statistics for a norm without batch statistics."""
    norm = values["norm"]
    for name, norms in (("gn_groups", GROUP_NORMS), ("gn_narrow", GROUP_NORMS),
                        ("bcn_speed", ("bcn",))):
        if name in explicit and norm not in norms:
            raise UsageError(f"{_flag(name)} applies to --norm {' and '.join(norms)}; this "
                             f"model's norm is {norm or 'none'}")
    for name, what in (("ghost_batch", "--ghost-batch"), ("sync_bn", "--sync-bn")):
        if values[name] and norm not in BATCH_NORMS:
            raise UsageError(
                f"{what} needs batch statistics (--norm {' or '.join(BATCH_NORMS)}); this "
                f"model's norm is {norm or 'none'}, which normalises each image on its own, so "
                f"a run at micro-batch b is the run at any batch with --iter-size")


def arch_list(archs):
    """-a's choices for --help: this project's models, then torchvision's (imagenet.py)."""
    ours = sorted(n for n, c in archs.items() if not getattr(c, "torchvision", False))
    theirs = sorted(n for n, c in archs.items() if getattr(c, "torchvision", False))
    text = ", ".join(ours)
    return text + (f"; and torchvision's classification models: {', '.join(theirs)}"
                   if theirs else "")


def default_workers(cap):
    """Loader workers when -j is not given: the cores this process may run on, shared among the
    processes torchrun starts on this machine, at most ``cap`` and at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(cap, (cores or 1) // max(1, local)))


def warn_schedule(values):
    """A line on stderr (rank 0's) for --schedule milestones that never lower the LR: at or
    past --epochs. Not an error: a run may be resumed later with more epochs."""
    late = [m for m in values["schedule"] if m >= values["epochs"]]
    if (values["scheduler"] == "step" and late and not values["evaluate"]
            and os.environ.get("RANK", "0") == "0"):
        print(f"warning: --schedule milestone(s) {' '.join(map(str, late))} at or past --epochs "
              f"{values['epochs']} never lower the LR in this run", file=sys.stderr)


def check_arch(arch, archs):
    if arch not in archs:
        close = difflib.get_close_matches(arch, archs, n=3, cutoff=0.5)
        raise UsageError(f"unknown architecture {arch!r}" + (
            f"; did you mean {', '.join(close)}?" if close else "; see --help for the list"))


def check_model_flags(constructor, choice):
    """Refuse a model flag written on the command line that the architecture does not take: it
    would otherwise be silently ignored. Flags left at their defaults are simply not used."""
    accepted = model_options(constructor)
    refused = sorted(choice.flag_names[o] for o in choice.given if o not in accepted)
    if {"norm", "ws"} & choice.given and choice.arch.startswith("l_") and (
            not {"norm", "ws"} & accepted):
        raise UsageError(f"-a {choice.arch} is GN+WS by name: --norm and --ws do not apply; "
                         f"for another pair write -a {choice.arch[2:]} --norm NORM --ws")
    if refused:
        takes = sorted(choice.flag_names[o] for o in accepted
                       if o in choice.flag_names and o not in PAIR_NAMES)
        norm_flags = [choice.flag_names[o] for o in PAIR_NAMES
                      if o in accepted and o in choice.flag_names]
        listed = ", ".join(takes) if takes else "no model flags"
        if norm_flags:
            listed = f"{listed if takes else 'no family flags'} and the norm flags " + \
                ", ".join(norm_flags)
        raise UsageError(f"{', '.join(refused)} does not apply to {choice.arch} (it takes "
                         f"{listed})")


def _flag(name):
    return "--" + name.replace("_", "-")


# Flags that count something, with their least value (model widths, groups and layers; sizes
# of batches and runs), and flags that may not be negative. A flag a script lacks is skipped.
AT_LEAST = {"depth": 1, "cardinality": 1, "widen_factor": 1, "gn_groups": 1, "growthRate": 1,
            "compressionRate": 1, "base_channels": 1, "base_width": 1, "se_reduction": 1,
            "alpha": 0, "train_batch": 1, "test_batch": 1, "iter_size": 1, "epochs": 1}
NON_NEGATIVE = ("start_epoch", "keep_checkpoints", "workers", "warmup_epochs", "mixup", "cutmix",
                "ricap", "cutout", "dual_cutout", "ghost_batch", "clip_grad")


# The most an integer flag may be: what torch's int64 indexing, the seeding (numpy's
# SeedSequence and torch.manual_seed take 0 .. 2^63 - 1) and the machine's processes can take.
INT_MAX = 2 ** 31 - 1
AT_MOST = {"manualSeed": 2 ** 63 - 1, "workers": 256}


def check_values(values):
    """Refuse impossible settings, naming the flag."""
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            most = AT_MOST.get(name, INT_MAX)
            if isinstance(v, int) and not isinstance(v, bool) and v > most:
                raise UsageError(f"{_flag(name)} must be at most {most:,}, got {v:,}")
    if values["manualSeed"] is not None and values["manualSeed"] < 0:
        raise UsageError(f"--manualSeed must be in 0 .. {AT_MOST['manualSeed']:,}, got "
                         f"{values['manualSeed']}")
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise UsageError(f"{_flag(name)} must be a finite number, got {v}")
    for name, least in AT_LEAST.items():
        if name in values and values[name] < least:
            raise UsageError(f"{_flag(name)} must be at least {least}, got {values[name]}")
    for name in NON_NEGATIVE:
        if values[name] < 0:
            raise UsageError(f"{_flag(name)} must be >= 0, got {values[name]}")
    if values["save_every"] < 0:
        raise UsageError(f"--save-every must be >= 0 minutes, got {values['save_every']}")
    schedule = values["schedule"]
    if any(b <= a for a, b in zip(schedule, schedule[1:])):
        raise UsageError(f"--schedule epochs must increase, got {' '.join(map(str, schedule))}")
    if not values["lr"] > 0:
        raise UsageError(f"--lr must be positive, got {values['lr']}")
    if not 0 <= values["momentum"] < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {values['momentum']}: at 1 or more "
                         f"old gradients never fade and the steps grow without bound")
    if values["weight_decay"] < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {values['weight_decay']} (a negative "
                         f"decay pushes the weights to grow)")
    if not values["gamma"] > 0:
        raise UsageError(f"--gamma must be positive, got {values['gamma']}")
    if not 0 <= values["drop"] < 1:
        raise UsageError(f"--drop must be in [0, 1), got {values['drop']}")
    for name in ("label_smoothing", "random_erasing"):
        if not 0 <= values[name] < 1:
            raise UsageError(f"{_flag(name)} must be in [0, 1), got {values[name]}")
    if not 0 < values["bcn_speed"] <= 1:
        raise UsageError(f"--bcn-speed must be in (0, 1], got {values['bcn_speed']}")
    if values["ema"] and not 0 < values["ema"] < 1:
        raise UsageError(f"--ema takes a decay in (0, 1), e.g. 0.999; got {values['ema']}")
    if values["nesterov"] and (values["optimizer"] != "sgd" or values["momentum"] <= 0):
        raise UsageError("--nesterov needs --optimizer sgd with --momentum > 0")
    if values["sync_bn"] and values["ghost_batch"]:
        raise UsageError("choose one of --sync-bn and --ghost-batch (one syncs BatchNorm "
                         "statistics across processes, the other splits them within a batch)")
    if values["best_by"] == "tta" and values["tta"] == "none":
        raise UsageError("--best-by tta needs --tta flip")
    if values["warmup_epochs"] > values["epochs"]:
        raise UsageError(f"--warmup-epochs {values['warmup_epochs']} exceeds --epochs "
                         f"{values['epochs']}")
    try:
        recipe_settings(values)  # Regularisers refuses impossible combinations
        augment_policy(values)   # so does AugmentPolicy
    except ValueError as e:
        raise UsageError(str(e)) from e


def _add_shared_flags(flags, *, workers, epochs, train_batch, test_batch, weight_decay, arch,
                      cardinality, schedule):
    """The flags both scripts share, with the reference's names, aliases and per-script
    defaults, each in its group."""
    model, recipe, data, run, output = (flags[g] for g in ("model", "recipe", "data", "run",
                                                           "output"))
    model.add("-a", "--arch", metavar="ARCH", default=arch,
              help=f"model architecture (default: %(default)s): {arch_list(flags.archs)}")
    model.add("--depth", type=int, default=29, option="depth",
              help="model depth (default: %(default)s)")
    model.add("--cardinality", type=int, default=cardinality, option="cardinality",
              help="ResNeXt cardinality (groups) (default: %(default)s)")
    model.add("--widen-factor", type=int, default=4, option="widen_factor",
              help="widen factor (ResNeXt, WRN) (default: %(default)s)")
    model.add("--drop", "--dropout", default=0, type=float, metavar="Dropout", option="dropRate",
              help="dropout ratio (default: 0)")
    model.add("--norm", default=None, choices=NORMS, option="norm",
              help="the normalisation layers: bn (BatchNorm), gn (GroupNorm, --gn-groups), ln "
                   "(GroupNorm with 1 group), in (GroupNorm with 1 group per channel), bcn "
                   "(Batch-Channel Normalization) (default: the architecture's: bn, or gn for "
                   "l_* names)")
    model.add("--ws", action=argparse.BooleanOptionalAction, default=None, option="ws",
              help="Weight Standardization of every conv (WSConv2d) (default: the "
                   "architecture's: on for l_* names, off otherwise)")
    model.add("--gn-groups", type=int, default=32, option="gn_groups",
              help="groups G of --norm gn and of bcn's channel part: layers with C >= 2G "
                   "channels get G groups (C must divide), narrower ones C/2 groups of 2 "
                   "channels (default: 32)")
    model.add("--gn-narrow", default="pairs", choices=GN_NARROW_RULES, option="gn_narrow",
              help="groups of a layer narrower than 2G channels: pairs (C/2 groups of 2, "
                   "default) or channels (min(G, C) groups, one channel each below G: the rule "
                   "of checkpoints from before --norm)")
    model.add("--bcn-speed", type=float, default=BCN_SPEED, metavar="R", option="bcn_speed",
              help="--norm bcn with --ghost-batch: the speed r of the running estimates its "
                   "batch part normalises micro-batches with (default: %(default)s)")
    model.add("--se-reduction", type=int, default=16, option="se_reduction",
              help="squeeze-and-excitation reduction r of the se_* models (default: 16)")
    model.add("--zero-init-residual", action="store_true", option="zero_init_residual",
              help="zero the last norm of each residual branch (post-activation ResNet/ResNeXt, "
                   "PyramidNet, Shake-Shake)")
    model.add("--ghost-batch", default=0, type=int, metavar="N",
              help="micro-batches of N images: BatchNorm statistics over each chunk of N (Ghost "
                   "BN); bcn's batch part normalises each with running estimates (the paper's "
                   "micro-batch BCN); norms with batch statistics only")
    model.add("--sync-bn", action="store_true",
              help="BatchNorm statistics over all torchrun processes (SyncBatchNorm; BN models "
                   "on CUDA GPUs only)")

    recipe.add("--epochs", default=epochs, type=int, metavar="N",
               help="number of total epochs to run (default: %(default)s)")
    recipe.add("--train-batch", default=train_batch, type=int, metavar="N",
               help="train batchsize per optimizer micro-step (default: %(default)s)")
    recipe.add("--iter-size", default=1, type=int, metavar="K",
               help="accumulate gradients over K batches per optimizer step: effective batch is "
                    "train-batch x K (default: 1)")
    recipe.add("--lr", "--learning-rate", default=0.1, type=float, metavar="LR",
               help="initial learning rate (default: %(default)s)")
    recipe.add("--schedule", type=int, nargs="+", default=list(schedule),
               help=f"decrease learning rate at these epochs (default: "
                    f"{' '.join(map(str, schedule))})")
    recipe.add("--gamma", type=float, default=0.1,
               help="LR is multiplied by gamma on schedule (default: %(default)s)")
    recipe.add("--momentum", default=0.9, type=float, metavar="M",
               help="momentum (default: %(default)s)")
    recipe.add("--weight-decay", "--wd", default=weight_decay, type=float, metavar="W",
               help="weight decay (default: %(default)s)")
    recipe.add("--manualSeed", type=int, help="manual seed (random if unset; saved for resume)")
    recipe.add("--amp", default="none", choices=["none", "bf16", "fp16"],
               help="mixed precision: bf16 autocast, or fp16 autocast with a GradScaler "
                    "(default: none)")
    # Beyond the reference: every default below leaves its recipe unchanged.
    recipe.add("--scheduler", default="step", choices=["step", "cosine"],
               help="step: x gamma at each --schedule epoch (the reference); cosine: annealed "
                    "to 0 over --epochs, per iteration (default: step)")
    recipe.add("--warmup-epochs", default=0.0, type=float, metavar="E",
               help="linear LR warmup over the first E epochs, per iteration (default: 0)")
    recipe.add("--optimizer", default="sgd", choices=["sgd", "adamw", "lars"],
               help="sgd (momentum), adamw (decoupled weight decay) or lars (layer-wise rates "
                    "for large batches) (default: sgd)")
    recipe.add("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    recipe.add("--no-wd-norm", action="store_true",
               help="no weight decay on norm weights and biases (all 1-D parameters)")
    recipe.add("--label-smoothing", default=0.0, type=float, metavar="EPS",
               help="label smoothing of the training loss (default: 0)")
    recipe.add("--mixup", default=0.0, type=float, metavar="ALPHA",
               help="mixup with Beta(ALPHA, ALPHA)")
    recipe.add("--cutmix", default=0.0, type=float, metavar="ALPHA",
               help="CutMix with Beta(ALPHA, ALPHA)")
    recipe.add("--ricap", default=0.0, type=float, metavar="BETA",
               help="RICAP with Beta(BETA, BETA)")
    recipe.add("--cutout", default=0, type=int, metavar="SIZE",
               help="Cutout of SIZE x SIZE squares")
    recipe.add("--dual-cutout", default=0.0, type=float, metavar="ALPHA",
               help="Dual-Cutout: two --cutout views per image, ALPHA x their softmax MSE added")
    recipe.add("--autoaugment", default=None, choices=AUTOAUGMENT_POLICIES, metavar="POLICY",
               help="AutoAugment with torchvision's cifar10, imagenet or svhn policy, per image "
                    "after the crop and flip")
    recipe.add("--randaugment", default=None, nargs=2, type=int, metavar=("N", "M"),
               help="RandAugment: N ops per image at magnitude M of torchvision's 0..30 "
                    "(e.g. 2 9)")
    recipe.add("--trivialaugment", action="store_true",
               help="TrivialAugment Wide: one op per image at a random magnitude")
    recipe.add("--random-erasing", default=0.0, type=float, metavar="P",
               help="Random Erasing with probability P per image")
    recipe.add("--clip-grad", default=0.0, type=float, metavar="NORM",
               help="clip the gradient's global L2 norm to NORM before each optimizer step "
                    "(after unscaling under --amp fp16; default: 0, no clipping)")
    recipe.add("--tta", default="none", choices=["none", "flip"],
               help="flip: also evaluate with the mean of the logits of each image and its "
                    "mirror (an extra log column, TTA Valid Acc.; default: none)")
    recipe.add("--best-by", default="valid", choices=["valid", "tta"],
               help="which validation accuracy picks model_best.pth.tar (default: valid; tta "
                    "needs --tta flip)")
    recipe.add("--ema", default=0.0, type=float, metavar="DECAY",
               help="also keep, evaluate and save an exponential moving average of the weights")

    data.add("-j", "--workers", default=None, type=int, metavar="N",
             help=f"data loading workers (default: the cores each process of this machine has, "
                  f"at most {workers})")
    data.add("--test-batch", default=test_batch, type=int, metavar="N",
             help="test batchsize (default: %(default)s)")

    run.add("--start-epoch", default=0, type=int, metavar="N",
            help="manual epoch number (useful on restarts)")
    run.add("--resume", default="", type=str, metavar="PATH",
            help="checkpoint file, or a run folder holding checkpoint.pth.tar, to resume from")
    run.add("-e", "--evaluate", dest="evaluate", action="store_true",
            help="evaluate model on validation set")
    run.add("--weights", default="", type=str, metavar="PATH",
            help="initialise the model from a checkpoint of this project or of the reference")
    run.add("--gpu-id", default="0", type=str,
            help="id(s) for CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (DataParallel over several); "
                 "'cpu' runs on the CPU; without any GPU the run uses the CPU")
    run.add("--channels-last", action="store_true", help="NHWC memory format for model and batches")
    run.add("--compile", **COMPILE_FLAG, help="torch.compile the model, in torch.compile's MODE: "
            f"{', '.join(COMPILE_MODES)} (default: default; reduce-overhead and max-autotune "
            "replay each step as CUDA graphs)")
    run.add("--save-every", type=float, default=0.0, metavar="MINUTES",
            help="also write a recovery checkpoint every MINUTES, at its place in the epoch, "
                 "which --resume continues exactly (default: 0, only at epoch ends and on "
                 "SIGTERM/SIGINT)")

    output.add("-c", "--checkpoint", default="checkpoint", type=str, metavar="PATH",
               help="folder to save checkpoint and log (default: checkpoint)")
    output.add("--no-progress", action="store_true", help="no per-batch progress output")
    output.add("--replace", action="store_true",
               help="start over in a run folder that holds a run (its run files are removed "
                    "first), or let --resume of an older epoch copy replace the newer "
                    "checkpoints and log rows")
    output.add("--keep-checkpoints", type=int, default=0, metavar="N",
               help="also keep the last N epochs' checkpoints as checkpoint_epoch_E.pth.tar "
                    "(default: 0, only checkpoint.pth.tar and model_best.pth.tar)")
