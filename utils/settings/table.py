"""Every flag the scripts share, declared once: its names, its group (whether checkpoints record
it), how it parses, its default, its range and its help; and, beside the table, the handful of
rules that concern several flags at once.

A ``Flag`` is a value: utils.settings.flags makes the argparse parser of a script from its flags
(these, the script's own from utils.settings.scripts, and the script's defaults), and checks
every parsed value against its flag's ``Range``.
"""
import dataclasses
import math
from typing import Any, Callable, Optional

from models.norms import BATCH_NORMS, BCN_SPEED, GN_NARROW_RULES, GROUP_NORMS, NORMS

from ..data.policies import AUTOAUGMENT_POLICIES
from ..train.optim import OPTIMIZERS

__all__ = ["RECORDED", "PER_RUN", "GROUPS", "UsageError", "Range", "Flag", "SHARED_FLAGS",
           "COMPILE_MODES", "COMPILE_FLAG", "INT_MAX", "POLICY_FLAGS", "check_rules",
           "check_pair"]

RECORDED, PER_RUN = "recorded", "per-run"
# Every flag belongs to one group, and the group says whether a checkpoint records it.
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
# The most an integer flag may be: what torch's int64 indexing and the machine can take.
INT_MAX = 2 ** 31 - 1
POLICY_FLAGS = ("autoaugment", "randaugment", "trivialaugment")


class UsageError(Exception):
    """A flag or combination of flags that cannot work; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number flag takes, and the words that refuse one outside them.

    ``least`` / ``most``: inclusive bounds; ``above``: an exclusive lower bound; ``below``: an
    exclusive upper one. ``words`` picks the phrasing (at-least, non-negative, positive,
    interval, span; or a format of its own with {flag} and {value}) and ``note`` follows it; a
    flag whose value 0 means off (``zero_is_off``) is checked only when set."""
    least: Optional[float] = None
    most: Optional[float] = None
    above: Optional[float] = None
    below: Optional[float] = None
    words: str = "at-least"
    note: str = ""
    zero_is_off: bool = False

    def problem(self, flag: str, value: float) -> Optional[str]:
        """The refusal of ``value`` for ``flag``, or None when it is in range."""
        if self.zero_is_off and value == 0:
            return None
        low_ok = ((self.least is None or value >= self.least)
                  and (self.above is None or value > self.above))
        high_ok = ((self.most is None or value <= self.most)
                   and (self.below is None or value < self.below))
        if low_ok and high_ok:
            return None
        if "{" in self.words:  # a phrasing of its own
            return self.words.format(flag=flag, value=value)
        if self.words == "interval":
            low = "(" if self.above is not None else "["
            high = ")" if self.below is not None else "]"
            lo = self.above if self.above is not None else self.least
            hi = self.below if self.below is not None else self.most
            text = f"{flag} must be in {low}{_num(lo)}, {_num(hi)}{high}, got {value}"
        elif not high_ok:  # past the top: the bound said alone, as for every integer flag
            text = f"{flag} must be at most {self.most:,}, got {value:,}"
        elif self.words == "span":
            text = f"{flag} must be in {_num(self.least)} .. {_num(self.most)}, got {value}"
        elif self.words == "non-negative":
            text = f"{flag} must be >= 0, got {value}"
        elif self.words == "positive":
            text = f"{flag} must be positive, got {value}"
        else:
            text = f"{flag} must be at least {_num(self.least)}, got {value}"
        return text + self.note


def _num(value):
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10 ** 6 else f"{value:g}"


def at_least(n: int, most: int = INT_MAX) -> Range:
    return Range(least=n, most=most)


NON_NEGATIVE = Range(least=0, words="non-negative")
NON_NEGATIVE_INT = Range(least=0, most=INT_MAX, words="non-negative")
POSITIVE = Range(above=0, words="positive")
FRACTION = Range(least=0, below=1, words="interval")  # [0, 1)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag. ``names``: its option strings; ``group``: one of GROUPS; ``kind``:
    int, float, str, or "switch" (store_true), "bool" (--x/--no-x) ; ``option``: the keyword
    of the model constructors it sets (model flags); ``script_default``: the name of the
    script's default that replaces ``default`` (epochs, train_batch, ...); ``range``: what a
    number may be (ints are at most INT_MAX without one); the rest is argparse's."""
    names: tuple
    group: str
    help: str
    kind: Any = str
    default: Any = None
    range: Optional[Range] = None
    choices: Optional[tuple] = None
    nargs: Any = None
    metavar: Any = None
    option: Optional[str] = None
    dest: Optional[str] = None
    const: Any = None
    required: bool = False
    script_default: Optional[str] = None

    @property
    def name(self) -> str:
        """The dest: argparse's name of the value."""
        if self.dest:
            return self.dest
        long = next(n for n in self.names if n.startswith("--"))
        return long[2:].replace("-", "_")

    @property
    def long(self) -> str:
        return next(n for n in self.names if n.startswith("--"))

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` cannot be this flag's (its range, finiteness), or None."""
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                return f"{self.long} must be a finite number, got {v}"
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rule = self.range or (Range(most=INT_MAX) if self.kind is int else None)
                problem = rule.problem(self.long, v) if rule else None
                if problem:
                    return problem
        return None


def _flags(group: str, *specs: tuple) -> tuple:
    """Flags of one group from (names, help, options) triples."""
    return tuple(Flag(tuple(names), group, help_text, **options)
                 for names, help_text, options in specs)


MODEL = _flags(
    "model",
    (["-a", "--arch"], "model architecture", dict(metavar="ARCH", script_default="arch")),
    (["--depth"], "model depth (default: %(default)s)",
     dict(kind=int, default=29, option="depth", range=at_least(1))),
    (["--cardinality"], "ResNeXt cardinality (groups) (default: %(default)s)",
     dict(kind=int, option="cardinality", range=at_least(1), script_default="cardinality")),
    (["--widen-factor"], "widen factor (ResNeXt, WRN) (default: %(default)s)",
     dict(kind=int, default=4, option="widen_factor", range=at_least(1))),
    (["--drop", "--dropout"], "dropout ratio (default: 0)",
     dict(kind=float, default=0, metavar="Dropout", option="dropRate", range=FRACTION)),
    (["--norm"], "the normalisation layers: bn (BatchNorm), gn (GroupNorm, --gn-groups), ln "
                 "(GroupNorm with 1 group), in (GroupNorm with 1 group per channel), bcn "
                 "(Batch-Channel Normalization) (default: the architecture's: bn, or gn for "
                 "l_* names)", dict(choices=NORMS, option="norm")),
    (["--ws"], "Weight Standardization of every conv (WSConv2d) (default: the "
               "architecture's: on for l_* names, off otherwise)", dict(kind="bool", option="ws")),
    (["--gn-groups"], "groups G of --norm gn and of bcn's channel part: layers with C >= 2G "
                      "channels get G groups (C must divide), narrower ones C/2 groups of 2 "
                      "channels (default: 32)",
     dict(kind=int, default=32, option="gn_groups", range=at_least(1))),
    (["--gn-narrow"], "groups of a layer narrower than 2G channels: pairs (C/2 groups of 2, "
                      "default) or channels (min(G, C) groups, one channel each below G: the "
                      "rule of checkpoints from before --norm)",
     dict(default="pairs", choices=GN_NARROW_RULES, option="gn_narrow")),
    (["--bcn-speed"], "--norm bcn with --ghost-batch: the speed r of the running estimates its "
                      "batch part normalises micro-batches with (default: %(default)s)",
     dict(kind=float, default=BCN_SPEED, metavar="R", option="bcn_speed",
          range=Range(above=0, most=1, words="interval"))),
    (["--se-reduction"], "squeeze-and-excitation reduction r of the se_* models (default: 16)",
     dict(kind=int, default=16, option="se_reduction", range=at_least(1))),
    (["--zero-init-residual"], "zero the last norm of each residual branch (post-activation "
                               "ResNet/ResNeXt, PyramidNet, Shake-Shake)",
     dict(kind="switch", option="zero_init_residual")),
    (["--ghost-batch"], "micro-batches of N images: BatchNorm statistics over each chunk of N "
                        "(Ghost BN); bcn's batch part normalises each with running estimates "
                        "(the paper's micro-batch BCN); norms with batch statistics only",
     dict(kind=int, default=0, metavar="N", range=NON_NEGATIVE_INT)),
    (["--sync-bn"], "BatchNorm statistics over all torchrun processes (SyncBatchNorm; BN models "
                    "on CUDA GPUs only)", dict(kind="switch")),
)

RECIPE = _flags(
    "recipe",
    (["--epochs"], "number of total epochs to run (default: %(default)s)",
     dict(kind=int, metavar="N", range=at_least(1), script_default="epochs")),
    (["--train-batch"], "train batchsize per optimizer micro-step (default: %(default)s)",
     dict(kind=int, metavar="N", range=at_least(1), script_default="train_batch")),
    (["--iter-size"], "accumulate gradients over K batches per optimizer step: effective batch "
                      "is train-batch x K (default: 1)",
     dict(kind=int, default=1, metavar="K", range=at_least(1))),
    (["--lr", "--learning-rate"], "initial learning rate (default: %(default)s)",
     dict(kind=float, default=0.1, metavar="LR", range=POSITIVE)),
    (["--schedule"], "decrease learning rate at these epochs",
     dict(kind=int, nargs="+", script_default="schedule")),
    (["--gamma"], "LR is multiplied by gamma on schedule (default: %(default)s)",
     dict(kind=float, default=0.1, range=POSITIVE)),
    (["--momentum"], "momentum (default: %(default)s)",
     dict(kind=float, default=0.9, metavar="M",
          range=Range(least=0, below=1, words="interval",
                      note=": at 1 or more old gradients never fade and the steps grow "
                           "without bound"))),
    (["--weight-decay", "--wd"], "weight decay (default: %(default)s)",
     dict(kind=float, metavar="W", script_default="weight_decay",
          range=Range(least=0, words="non-negative",
                      note=" (a negative decay pushes the weights to grow)"))),
    (["--manualSeed"], "manual seed (random if unset; saved for resume)",
     dict(kind=int, range=Range(least=0, most=2 ** 63 - 1, words="span"))),
    (["--amp"], "mixed precision: bf16 autocast, or fp16 autocast with a GradScaler "
                "(default: none)", dict(default="none", choices=("none", "bf16", "fp16"))),
    # Beyond the reference: every default below leaves its recipe unchanged.
    (["--scheduler"], "step: x gamma at each --schedule epoch (the reference); cosine: "
                      "annealed to 0 over --epochs, per iteration (default: step)",
     dict(default="step", choices=("step", "cosine"))),
    (["--warmup-epochs"], "linear LR warmup over the first E epochs, per iteration (default: 0)",
     dict(kind=float, default=0.0, metavar="E", range=NON_NEGATIVE)),
    (["--optimizer"], "sgd (momentum), adamw (decoupled weight decay) or lars (layer-wise "
                      "rates for large batches) (default: sgd)",
     dict(default="sgd", choices=OPTIMIZERS)),
    (["--nesterov"], "Nesterov momentum (sgd)", dict(kind="switch")),
    (["--no-wd-norm"], "no weight decay on norm weights and biases (all 1-D parameters)",
     dict(kind="switch")),
    (["--label-smoothing"], "label smoothing of the training loss (default: 0)",
     dict(kind=float, default=0.0, metavar="EPS", range=FRACTION)),
    (["--mixup"], "mixup with Beta(ALPHA, ALPHA)",
     dict(kind=float, default=0.0, metavar="ALPHA", range=NON_NEGATIVE)),
    (["--cutmix"], "CutMix with Beta(ALPHA, ALPHA)",
     dict(kind=float, default=0.0, metavar="ALPHA", range=NON_NEGATIVE)),
    (["--ricap"], "RICAP with Beta(BETA, BETA)",
     dict(kind=float, default=0.0, metavar="BETA", range=NON_NEGATIVE)),
    (["--cutout"], "Cutout of SIZE x SIZE squares",
     dict(kind=int, default=0, metavar="SIZE", range=NON_NEGATIVE_INT)),
    (["--dual-cutout"], "Dual-Cutout: two --cutout views per image, ALPHA x their softmax MSE "
                        "added", dict(kind=float, default=0.0, metavar="ALPHA",
                                      range=NON_NEGATIVE)),
    (["--autoaugment"], "AutoAugment with torchvision's cifar10, imagenet or svhn policy, per "
                        "image after the crop and flip",
     dict(choices=AUTOAUGMENT_POLICIES, metavar="POLICY")),
    (["--randaugment"], "RandAugment: N ops per image at magnitude M of torchvision's 0..30 "
                        "(e.g. 2 9)", dict(kind=int, nargs=2, metavar=("N", "M"))),
    (["--trivialaugment"], "TrivialAugment Wide: one op per image at a random magnitude",
     dict(kind="switch")),
    (["--random-erasing"], "Random Erasing with probability P per image",
     dict(kind=float, default=0.0, metavar="P", range=FRACTION)),
    (["--clip-grad"], "clip the gradient's global L2 norm to NORM before each optimizer step "
                      "(after unscaling under --amp fp16; default: 0, no clipping)",
     dict(kind=float, default=0.0, metavar="NORM", range=NON_NEGATIVE)),
    (["--tta"], "flip: also evaluate with the mean of the logits of each image and its mirror "
                "(an extra log column, TTA Valid Acc.; default: none)",
     dict(default="none", choices=("none", "flip"))),
    (["--best-by"], "which validation accuracy picks model_best.pth.tar (default: valid; tta "
                    "needs --tta flip)", dict(default="valid", choices=("valid", "tta"))),
    (["--ema"], "also keep, evaluate and save an exponential moving average of the weights",
     dict(kind=float, default=0.0, metavar="DECAY", range=Range(
         above=0, below=1, zero_is_off=True,
         words="{flag} takes a decay in (0, 1), e.g. 0.999; got {value}"))),
)

DATA = _flags(
    "data",
    (["-j", "--workers"], "data loading workers (default: the cores each process of this "
                          "machine has, at most the script's)",
     dict(kind=int, metavar="N", range=Range(least=0, most=256, words="non-negative"))),
    (["--test-batch"], "test batchsize (default: %(default)s)",
     dict(kind=int, metavar="N", range=at_least(1), script_default="test_batch")),
)

RUN = _flags(
    "run",
    (["--start-epoch"], "manual epoch number (useful on restarts)",
     dict(kind=int, default=0, metavar="N", range=NON_NEGATIVE_INT)),
    (["--resume"], "checkpoint file, or a run folder holding checkpoint.pth.tar, to resume from",
     dict(default="", metavar="PATH")),
    (["-e", "--evaluate"], "evaluate model on validation set",
     dict(kind="switch", dest="evaluate")),
    (["--weights"], "initialise the model from a checkpoint of this project or of the reference",
     dict(default="", metavar="PATH")),
    (["--gpu-id"], "id(s) for CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (DataParallel over several); "
                   "'cpu' runs on the CPU; without any GPU the run uses the CPU",
     dict(default="0")),
    (["--channels-last"], "NHWC memory format for model and batches", dict(kind="switch")),
    (["--compile"], "torch.compile the model, in torch.compile's MODE: "
                    f"{', '.join(COMPILE_MODES)} (default: default; reduce-overhead and "
                    "max-autotune replay each step as CUDA graphs)",
     dict(nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE")),
    (["--save-every"], "also write a recovery checkpoint every MINUTES, at its place in the "
                       "epoch, which --resume continues exactly (default: 0, only at epoch ends "
                       "and on SIGTERM/SIGINT)",
     dict(kind=float, default=0.0, metavar="MINUTES",
          range=Range(least=0, words="{flag} must be >= 0 minutes, got {value}"))),
)

OUTPUT = _flags(
    "output",
    (["-c", "--checkpoint"], "folder to save checkpoint and log (default: "
                             "checkpoints/SCRIPT-ARCH, e.g. checkpoints/cifar-resnext)",
     dict(metavar="PATH")),
    (["--no-progress"], "no per-batch progress output", dict(kind="switch")),
    (["--replace"], "start over in a run folder that holds a run (its run files are removed "
                    "first), or let --resume of an older epoch copy replace the newer "
                    "checkpoints and log rows", dict(kind="switch")),
    (["--keep-checkpoints"], "also keep the last N epochs' checkpoints as "
                             "checkpoint_epoch_E.pth.tar (default: 0, only checkpoint.pth.tar "
                             "and model_best.pth.tar)",
     dict(kind=int, default=0, metavar="N", range=NON_NEGATIVE_INT)),
)

SHARED_FLAGS = MODEL + RECIPE + DATA + RUN + OUTPUT


# --- The rules that concern several flags --------------------------------------------------

def check_rules(values: dict, image_size: int, resumed: bool) -> None:
    """Refuse combinations of flags that cannot work (single flags are their Flag's business).
    ``values``: every flag's value after a resume's merge; ``image_size``: the side of the
    training crops; ``resumed``: whether the run continues a checkpoint."""
    schedule = values["schedule"]
    if any(b <= a for a, b in zip(schedule, schedule[1:])):
        raise UsageError(f"--schedule epochs must increase, got {' '.join(map(str, schedule))}")
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
    if not resumed and not values["evaluate"] and values["start_epoch"] >= values["epochs"]:
        raise UsageError(f"nothing to train: --start-epoch {values['start_epoch']} is not "
                         f"below --epochs {values['epochs']}")
    if values["cutout"] > image_size:
        raise UsageError(f"--cutout {values['cutout']} is larger than the "
                         f"{image_size}x{image_size} training images")
    if values["evaluate"] and not (resumed or values["weights"] or values.get("pretrained")):
        raise UsageError("-e evaluates a trained model: give it with --resume RUN or "
                         "--weights PATH (or --pretrained), else it would score random "
                         "weights")


def check_pair(values: dict, explicit: set) -> None:
    """Refuse a norm option written for a norm that has no use for it, and micro-batches or
    synchronised statistics for a norm without batch statistics."""
    norm = values["norm"]
    for name, norms in (("gn_groups", GROUP_NORMS), ("gn_narrow", GROUP_NORMS),
                        ("bcn_speed", ("bcn",))):
        if name in explicit and norm not in norms:
            raise UsageError(f"--{name.replace('_', '-')} applies to --norm "
                             f"{' and '.join(norms)}; this model's norm is {norm or 'none'}")
    for name, what in (("ghost_batch", "--ghost-batch"), ("sync_bn", "--sync-bn")):
        if values[name] and norm not in BATCH_NORMS:
            raise UsageError(
                f"{what} needs batch statistics (--norm {' or '.join(BATCH_NORMS)}); this "
                f"model's norm is {norm or 'none'}, which normalises each image on its own, so "
                f"a run at micro-batch b is the run at any batch with --iter-size")


def check(make: Callable, options: dict) -> Any:
    """``make(**options)``, a library's value that checks itself, its ValueError as a
    UsageError."""
    try:
        return make(**options)
    except ValueError as e:
        raise UsageError(str(e)) from e
