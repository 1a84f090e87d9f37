"""Every flag the scripts share, declared once: its names, its group (whether checkpoints record
it), how it parses, its default, its range, its help, where its value goes (``into``) and what a
``--resume`` does with it (``on_resume``, ``before_flag``); and, beside the table, the handful
of rules that concern several flags at once.

A ``Flag`` is a value: utils.settings.flags makes the argparse parser of a script from its flags
(these, and the script's own from utils.scripts, with the script's defaults), checks every
parsed value against its flag's ``Range`` and builds the typed settings (utils.settings.values)
from the ``into`` of each; utils.settings.resume reads ``on_resume`` and ``before_flag``.
Adding a flag is one entry here, the typed field its ``into`` names (utils.settings.values)
and the code that uses the value; docs/flags.md's row is made from the entry
(``python -m utils.scripts``).
"""
import operator
from typing import Any, Callable

from models.layers import WS_FORMS
from models.norms import BATCH_NORMS, GN_NARROW_RULES, GROUP_NORMS, NORM_DEFAULTS, NORMS

from .flag import (FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, Flag, Range, UsageError,
                   at_least)
from .values import (AMP_MODES, AUTOAUGMENT_POLICIES, COMPILE_MODES, DEFAULT_MAX_PIXELS,
                     OPTIMIZERS, CheckpointPolicy, LoopSettings)

__all__ = ["SHARED_FLAGS", "POLICY_FLAGS", "check_rules", "check_written", "check_pair", "check"]

POLICY_FLAGS = ("autoaugment", "randaugment", "trivialaugment")


def _flags(group: str, *specs: tuple) -> tuple:
    """Flags of one group from (names, help, options) triples."""
    return tuple(Flag(tuple(names), group, help_text, **options)
                 for names, help_text, options in specs)


NETWORK_REFUSAL = ("{flag} {new}: the checkpoint's network was built with {flag} {old}, and "
                   "its weights and statistics are of that network; train another pair into a "
                   "new run folder (-c)")
STATE_REFUSAL = ("{flag} {new}: the checkpoint was trained with {old}, and its {state} state "
                 "cannot continue as another; {start_anew}")

MODEL = _flags(
    "model",
    (["-a", "--arch"], "model architecture",
     dict(metavar="ARCH", script_default="arch", into="model.arch")),
    (["--depth"], "model depth (default: %(default)s)",
     dict(kind=int, default=29, into="options.depth", range=at_least(1))),
    (["--cardinality"], "ResNeXt cardinality (groups) (default: %(default)s)",
     dict(kind=int, into="options.cardinality", range=at_least(1), script_default="cardinality")),
    (["--widen-factor"], "widen factor (ResNeXt, WRN) (default: %(default)s)",
     dict(kind=int, default=4, into="options.widen_factor", range=at_least(1))),
    (["--drop", "--dropout"], "dropout ratio (default: %(default)s)",
     dict(kind=float, default=0, metavar="Dropout", into="options.dropRate", range=FRACTION)),
    (["--norm"], "the normalisation layers: bn (BatchNorm), gn (GroupNorm, --gn-groups), ln "
                 "(GroupNorm with 1 group), in (GroupNorm with 1 group per channel), bcn "
                 "(Batch-Channel Normalization) (default: the architecture's: bn, or gn for "
                 "l_* names)", dict(choices=NORMS, into="options.norm", refusal=NETWORK_REFUSAL)),
    (["--ws"], "Weight Standardization of every conv (WSConv2d) (default: the "
               "architecture's: on for l_* names, off otherwise)",
     dict(kind="bool", into="options.ws", refusal=NETWORK_REFUSAL)),
    (["--ws-form"], "the form of --ws: std, (W - mean) / (std + 1e-5), the Weight "
                    "Standardization code's; or var, (W - mean) / sqrt(var + 1e-5), the BCN "
                    "authors' ImageNet models' (default: %(default)s)",
     dict(default=WS_FORMS[0], choices=WS_FORMS, into="options.ws_form", before_flag=WS_FORMS[0],
          refusal=NETWORK_REFUSAL)),
    (["--gn-groups"], "groups G of --norm gn and of bcn's channel part: a layer of C channels "
                      "gets the largest divisor of C at most G that leaves two channels a "
                      "group (G where G divides C) (default: %(default)s)",
     dict(kind=int, default=NORM_DEFAULTS["gn_groups"], into="options.gn_groups",
          script_default="gn_groups", before_flag=NORM_DEFAULTS["gn_groups"],
          range=at_least(1))),
    (["--gn-narrow"], "groups of a layer narrower than 2G channels: pairs (C/2 groups of 2) or "
                      "channels (min(G, C) groups, one channel each below G: the rule of "
                      "checkpoints from before --norm) (default: %(default)s)",
     dict(default=NORM_DEFAULTS["gn_narrow"], choices=GN_NARROW_RULES,
          into="options.gn_narrow", before_flag="channels")),
    (["--bcn-speed"], "--norm bcn with --ghost-batch: the speed r of the running estimates its "
                      "batch part normalises micro-batches with (default: %(default)s)",
     dict(kind=float, default=NORM_DEFAULTS["bcn_speed"], metavar="R",
          into="options.bcn_speed", range=Range(above=0, most=1, words="interval"))),
    (["--se-reduction"], "squeeze-and-excitation reduction r of the se_* models (default: "
                         "%(default)s)",
     dict(kind=int, default=16, into="options.se_reduction", range=at_least(1))),
    (["--zero-init-residual"], "zero the last norm of each residual branch (post-activation "
                               "ResNet/ResNeXt, PyramidNet, Shake-Shake; torchvision's ResNets, "
                               "converted or not)",
     dict(kind="switch", into="options.zero_init_residual")),
    (["--ghost-batch"], "micro-batches of N images: BatchNorm statistics over each chunk of N "
                        "(Ghost BN); bcn's batch part normalises each with running estimates "
                        "(the paper's micro-batch BCN); norms with batch statistics only "
                        "(default: %(default)s, off)",
     dict(kind=int, default=0, metavar="N", range=NON_NEGATIVE_INT, into="model.ghost_batch")),
    (["--sync-bn"], "BatchNorm statistics over all torchrun processes (SyncBatchNorm; BN models "
                    "on CUDA GPUs only)", dict(kind="switch", into="model.sync_bn")),
)

DATASET = _flags(
    "dataset",
    (["--val-split"], "hold out this class-balanced share of the training images (the same "
                      "images for every seed): every epoch is evaluated on them and "
                      "model_best chosen by them, and the test split is scored once, at the end "
                      "(default: %(default)s, none: every epoch on the test split, as the "
                      "reference)",
     dict(kind=float, default=0.0, metavar="FRACTION", range=FRACTION, into="data.val_split")),
)

RECIPE = _flags(
    "recipe",
    (["--epochs"], "number of total epochs to run (default: %(default)s)",
     dict(kind=int, metavar="N", range=at_least(1), script_default="epochs",
          into="schedule.epochs", on_resume="apply")),
    (["--train-batch"], "train batchsize per optimizer micro-step (default: %(default)s)",
     dict(kind=int, metavar="N", range=at_least(1), script_default="train_batch",
          into="data.train_batch")),
    (["--iter-size"], "accumulate gradients over K batches per optimizer step: effective batch "
                      "is train-batch x K (default: %(default)s)",
     dict(kind=int, default=1, metavar="K", range=at_least(1), into="recipe.iter_size")),
    (["--lr", "--learning-rate"], "initial learning rate (default: %(default)s)",
     dict(kind=float, default=0.1, metavar="LR", range=POSITIVE, into="recipe.lr",
          on_resume="apply")),
    (["--schedule"], "decrease learning rate at these epochs",
     dict(kind=int, nargs="+", script_default="schedule", into="schedule.milestones",
          convert=tuple)),
    (["--gamma"], "LR is multiplied by gamma on schedule (default: %(default)s)",
     dict(kind=float, default=0.1, range=POSITIVE, into="schedule.gamma")),
    (["--momentum"], "momentum (default: %(default)s)",
     dict(kind=float, default=0.9, metavar="M", into="recipe.momentum", on_resume="apply",
          range=Range(least=0, below=1, words="interval",
                      note=": at 1 or more old gradients never fade and the steps grow "
                           "without bound"))),
    (["--weight-decay", "--wd"], "weight decay (default: %(default)s)",
     dict(kind=float, metavar="W", script_default="weight_decay", into="recipe.weight_decay",
          on_resume="apply", range=Range(least=0, words="non-negative",
                                         note=" (a negative decay pushes the weights to grow)"))),
    (["--manualSeed"], "manual seed (random if unset; saved for resume)",
     dict(kind=int, range=Range(least=0, most=2 ** 63 - 1, words="span"), into="run.seed")),
    (["--amp"], "mixed precision: bf16 autocast, or fp16 autocast with a GradScaler "
                "(default: %(default)s)",
     dict(default="none", choices=AMP_MODES, into="recipe.amp", on_resume="apply")),
    # Beyond the reference: every default below leaves its recipe unchanged.
    (["--scheduler"], "step: x gamma at each --schedule epoch (the reference); cosine: "
                      "annealed to 0 over --epochs, per iteration (default: %(default)s)",
     dict(default="step", choices=("step", "cosine"), into="schedule.name",
          refusal=STATE_REFUSAL.replace("{state}", "schedule"))),
    (["--min-lr"], "--scheduler cosine: the LR the cosine ends at, instead of 0 (default: "
                   "%(default)s)",
     dict(kind=float, default=0.0, metavar="LR", range=NON_NEGATIVE, into="schedule.min_lr",
          on_resume="apply")),
    (["--warmup-epochs"], "linear LR warmup over the first E epochs, per iteration (default: "
                          "%(default)s)",
     dict(kind=float, default=0.0, metavar="E", range=NON_NEGATIVE,
          into="schedule.warmup_epochs", on_resume="apply")),
    (["--optimizer"], "sgd (momentum), adamw (decoupled weight decay) or lars (layer-wise "
                      "rates for large batches) (default: %(default)s)",
     dict(default="sgd", choices=OPTIMIZERS, into="recipe.optimizer",
          refusal=STATE_REFUSAL.replace("{state}", "optimizer"))),
    (["--nesterov"], "Nesterov momentum (sgd)", dict(kind="switch", into="recipe.nesterov")),
    (["--no-wd-norm"], "no weight decay on norm weights and biases (all 1-D parameters)",
     dict(kind="switch", into="recipe.no_wd_norm")),
    (["--label-smoothing"], "label smoothing of the training loss (default: %(default)s)",
     dict(kind=float, default=0.0, metavar="EPS", range=FRACTION,
          into="recipe.label_smoothing", on_resume="apply")),
    (["--mixup"], "mixup with Beta(ALPHA, ALPHA)",
     dict(kind=float, default=0.0, metavar="ALPHA", range=NON_NEGATIVE,
          into="regularisers.mixup", on_resume="apply")),
    (["--cutmix"], "CutMix with Beta(ALPHA, ALPHA)",
     dict(kind=float, default=0.0, metavar="ALPHA", range=NON_NEGATIVE,
          into="regularisers.cutmix", on_resume="apply")),
    (["--ricap"], "RICAP with Beta(BETA, BETA)",
     dict(kind=float, default=0.0, metavar="BETA", range=NON_NEGATIVE,
          into="regularisers.ricap", on_resume="apply")),
    (["--cutout"], "Cutout of SIZE x SIZE squares",
     dict(kind=int, default=0, metavar="SIZE", range=NON_NEGATIVE_INT,
          into="regularisers.cutout", on_resume="apply")),
    (["--dual-cutout"], "Dual-Cutout: two --cutout views per image, ALPHA x their softmax MSE "
                        "added", dict(kind=float, default=0.0, metavar="ALPHA",
                                      range=NON_NEGATIVE, into="regularisers.dual_cutout",
                                      on_resume="apply")),
    (["--autoaugment"], "AutoAugment with torchvision's cifar10, imagenet or svhn policy, per "
                        "image after the crop and flip",
     dict(choices=AUTOAUGMENT_POLICIES, metavar="POLICY", into="policy.autoaugment",
          on_resume="apply")),
    (["--randaugment"], "RandAugment: N ops per image at magnitude M of torchvision's 0..30 "
                        "(e.g. 2 9)", dict(kind=int, nargs=2, metavar=("N", "M"),
                                            into="policy.randaugment", on_resume="apply")),
    (["--trivialaugment"], "TrivialAugment Wide: one op per image at a random magnitude",
     dict(kind="switch", into="policy.trivialaugment", on_resume="apply")),
    (["--random-erasing"], "Random Erasing with probability P per image",
     dict(kind=float, default=0.0, metavar="P", range=FRACTION,
          into="regularisers.random_erasing", on_resume="apply")),
    (["--clip-grad"], "clip the gradient's global L2 norm to NORM before each optimizer step "
                      "(after unscaling under --amp fp16; default: %(default)s, no clipping)",
     dict(kind=float, default=0.0, metavar="NORM", range=NON_NEGATIVE, into="recipe.clip_grad",
          on_resume="apply")),
    (["--tta"], "flip: also evaluate with the mean of the logits of each image and its mirror "
                "(an extra log column, TTA Valid Acc.; default: %(default)s)",
     dict(default="none", choices=("none", "flip"), into="loop.tta",
          convert=lambda value: value == "flip",
          refusal="{flag} {new}: the checkpoint's log was written with {flag} {old} and its "
                  "columns would change; resume without {flag}, or {start_anew}")),
    (["--best-by"], "which validation accuracy picks model_best.pth.tar (default: "
                    "%(default)s; tta needs --tta flip)",
     dict(default=CheckpointPolicy.best_by, choices=("valid", "tta"), into="checkpoints.best_by",
          on_resume="apply")),
    (["--ema"], "also keep, evaluate and save an exponential moving average of the weights",
     dict(kind=float, default=0.0, metavar="DECAY", into="recipe.ema", on_resume="apply",
          range=Range(above=0, below=1, zero_is_off=True,
                      words="{flag} takes a decay in (0, 1), e.g. 0.999; got {value}"))),
)

DATA = _flags(
    "data",
    (["-j", "--workers"], "data loading workers (default: the cores each process of this "
                          "machine has, at most the script's)",
     dict(kind=int, metavar="N", range=Range(least=0, most=256, words="non-negative"),
          into="data.workers")),
    (["--test-batch"], "test batchsize (default: %(default)s)",
     dict(kind=int, metavar="N", range=at_least(1), script_default="test_batch",
          into="data.test_batch")),
    (["--max-pixels"], "refuse an image file of more than N pixels, read from its header "
                       "before it is decoded (a decompression bomb), whichever decoder reads it "
                       "(default: Pillow's limit, %(default)s)",
     dict(kind=int, metavar="N", default=DEFAULT_MAX_PIXELS, range=at_least(1),
          into="data.max_pixels")),
)

RUN = _flags(
    "run",
    (["--start-epoch"], "manual epoch number (useful on restarts)",
     dict(kind=int, default=0, metavar="N", range=NON_NEGATIVE_INT, into="run.start_epoch")),
    (["--resume"], "checkpoint file, or a run folder holding checkpoint.pth.tar, to resume from",
     dict(default="", metavar="PATH", into="run.resume")),
    (["-e", "--evaluate"], "evaluate model on validation set",
     dict(kind="switch", dest="evaluate", into="run.evaluate")),
    (["--auto-resume"], "one command for the first launch and every restart: continue the run "
                        "in the run folder (-c) from the newest place it saved, if it holds "
                        "this run's checkpoint; start it otherwise; exit 0 if it is finished",
     dict(kind="switch", into="run.auto_resume")),
    (["--weights"], "initialise the model from a checkpoint of this project or of the reference, "
                    "or a state_dict; on another class count the classifier is left fresh "
                    "(fine-tuning)",
     dict(default="", metavar="PATH", into="run.weights")),
    (["--gpu-id"], "id(s) for CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (DataParallel over several); "
                   "'cpu' runs on the CPU; without any GPU the run uses the CPU",
     dict(default="0", into="device.gpu_id")),
    (["--channels-last"], "NHWC memory format for model and batches",
     dict(kind="switch", into="device.channels_last")),
    (["--deterministic"], "deterministic kernels only: torch.use_deterministic_algorithms, "
                          "cuDNN without benchmark mode, cuBLAS's fixed workspace (slower on "
                          "GPUs; an op without a deterministic kernel is an error)",
     dict(kind="switch", into="device.deterministic")),
    (["--compile"], "torch.compile the model, in torch.compile's MODE: "
                    f"{', '.join(COMPILE_MODES)} (bare --compile: %(const)s; reduce-overhead "
                    "and max-autotune replay each step as CUDA graphs)",
     dict(nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE",
          into="device.compile")),
    (["--save-every"], "also write a recovery checkpoint every MINUTES, at its place in the "
                       "epoch, which --resume continues exactly (default: %(default)s, only at "
                       "epoch ends and on SIGTERM/SIGINT)",
     dict(kind=float, default=CheckpointPolicy.save_every, metavar="MINUTES",
          into="checkpoints.save_every",
          range=Range(least=0, words="{flag} must be >= 0 minutes, got {value}"))),
)

OUTPUT = _flags(
    "output",
    (["-c", "--checkpoint"], "folder to save checkpoint and log (default: "
                             "checkpoints/SCRIPT-ARCH, e.g. checkpoints/cifar-resnext)",
     dict(metavar="PATH", into="run.run_folder")),
    (["--no-progress"], "no per-batch progress output",
     dict(kind="switch", into="loop.show_progress", convert=operator.not_)),
    (["--replace"], "start over in a run folder that holds a run (its run files are removed "
                    "first), or let --resume of an older epoch copy replace the newer "
                    "checkpoints and log rows", dict(kind="switch", into="run.replace")),
    (["--no-curves"], "do not draw log.png and log.eps at the end (plot.py draws them from "
                      "log.txt at any time)", dict(kind="switch", into="loop.curves",
                                                   convert=operator.not_)),
    (["--tensorboard"], "also write TensorBoard event files into the run folder "
                        "(RUN/tensorboard): each epoch's losses, accuracies, LR and img/s, the "
                        "loss every --log-every steps, the flags; main process only",
     dict(kind="switch", into="loop.tensorboard")),
    (["--log-every"], "--tensorboard: the loss every N optimizer steps (default: %(default)s; "
                      "0: epochs only)",
     dict(kind=int, default=LoopSettings.log_every, metavar="N", range=NON_NEGATIVE_INT,
          into="loop.log_every")),
    (["--keep-checkpoints"], "also keep the last N epochs' checkpoints as "
                             "checkpoint_epoch_E.pth.tar (default: %(default)s, only "
                             "checkpoint.pth.tar and model_best.pth.tar)",
     dict(kind=int, default=CheckpointPolicy.keep, metavar="N", range=NON_NEGATIVE_INT,
          into="checkpoints.keep")),
)

SHARED_FLAGS = MODEL + DATASET + RECIPE + DATA + RUN + OUTPUT


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
    if values["min_lr"] and (values["scheduler"] != "cosine" or values["min_lr"] >= values["lr"]):
        raise UsageError(f"--min-lr {values['min_lr']:g} is where --scheduler cosine ends: it "
                         f"needs that scheduler, and a value below --lr {values['lr']:g}")
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


def check_written(values: dict, given: set) -> None:
    """Refuse a flag written on the command line that cannot act with the others."""
    if "log_every" in given and not values["tensorboard"]:
        raise UsageError("--log-every applies to --tensorboard (the steps' loss goes there)")
    if "bcn_speed" in given and not values["ghost_batch"]:
        raise UsageError("--bcn-speed is the speed of the estimates bcn's micro-batches use: it "
                         "acts only with --ghost-batch N (without it the batch part takes each "
                         "batch's own statistics)")
    if "weights" in given and "resume" in given:
        raise UsageError("--weights with --resume: a resumed run continues its checkpoint's own "
                         "weights, which would replace these; drop --weights, or start a new run "
                         "(-c) from them")
    if "start_epoch" in given and values["resume"]:
        raise UsageError("--start-epoch with --resume: the checkpoint says where the run "
                         "continues; drop --start-epoch")


def check_pair(values: dict, given: set) -> None:
    """Refuse a norm option written for a norm that has no use for it, and micro-batches or
    synchronised statistics for a norm without batch statistics."""
    norm = values["norm"]
    if "ws_form" in given and not values["ws"]:
        raise UsageError("--ws-form applies to --ws (Weight Standardization); this model has "
                         "no WS")
    for name, norms in (("gn_groups", GROUP_NORMS), ("gn_narrow", GROUP_NORMS),
                        ("bcn_speed", ("bcn",))):
        if name in given and norm not in norms:
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
