"""What cifar.py and imagenet.py share around the engine: their common flags, argument checks,
the device from --gpu-id, model preparation, resuming with a checkpoint's own arguments, and one
clear line instead of a traceback for every expected failure."""
import difflib
import os
import random
import sys

import torch
import torch.nn as nn

from models import create_model, model_options
from models.layers import use_ghost_batch_norm

from . import distributed
from .checkpoint import CheckpointError, read_checkpoint, resolve_checkpoint_path
from .data import DataError
from .engine import NonFiniteLoss, TrainingInterrupted, evaluate, fit
from .logger import Logger, save_curves
from .recipe import make_batch_augment
from .report import write_class_report

__all__ = ["UsageError", "add_training_flags", "check_args", "explicit_flags",
           "apply_checkpoint_args", "resume_checkpoint", "build_model", "check_writable",
           "setup_device", "prepare_model", "run_main", "run_info", "check_num_classes",
           "open_log", "train_and_log", "report_evaluation", "check_world", "choose_seed",
           "MODEL_FLAGS"]

# Flags that define the network, the data order and the training recipe: a checkpoint records
# them, and `--resume` / `-e --resume` reuse them unless given again on the command line, so a
# resumed run continues the run it resumes.
MODEL_FLAGS = ("arch", "dataset", "depth", "block_name", "cardinality", "widen_factor",
               "base_width", "growthRate", "compressionRate", "drop", "gn_groups",
               "zero_init_residual", "manualSeed", "alpha", "base_channels", "se_reduction",
               "ghost_batch",
               "train_batch", "iter_size", "epochs", "lr", "momentum", "weight_decay",
               "schedule", "gamma", "scheduler", "warmup_epochs", "optimizer", "nesterov",
               "no_wd_norm", "label_smoothing", "mixup", "cutmix", "ricap", "cutout",
               "dual_cutout", "random_erasing", "ema", "amp")


class UsageError(Exception):
    """A flag or combination of flags that cannot work; the message says which and why."""


def add_training_flags(parser, *, workers, epochs, train_batch, test_batch, weight_decay, arch,
                       cardinality):
    """The flags both scripts share, with the reference's names, aliases and per-script defaults."""
    add = parser.add_argument
    add("-j", "--workers", default=workers, type=int, metavar="N",
        help="data loading workers (default: %(default)s)")
    add("--epochs", default=epochs, type=int, metavar="N",
        help="number of total epochs to run (default: %(default)s)")
    add("--start-epoch", default=0, type=int, metavar="N",
        help="manual epoch number (useful on restarts)")
    add("--train-batch", default=train_batch, type=int, metavar="N",
        help="train batchsize per optimizer micro-step (default: %(default)s)")
    add("--test-batch", default=test_batch, type=int, metavar="N",
        help="test batchsize (default: %(default)s)")
    add("--iter-size", default=1, type=int, metavar="K",
        help="accumulate gradients over K batches per optimizer step: effective batch is "
             "train-batch x K (default: 1)")
    add("--lr", "--learning-rate", default=0.1, type=float, metavar="LR",
        help="initial learning rate (default: %(default)s)")
    add("--drop", "--dropout", default=0, type=float, metavar="Dropout",
        help="dropout ratio (default: 0)")
    add("--schedule", type=int, nargs="+", default=[150, 225],
        help="decrease learning rate at these epochs (default: 150 225)")
    add("--gamma", type=float, default=0.1, help="LR is multiplied by gamma on schedule")
    add("--momentum", default=0.9, type=float, metavar="M", help="momentum")
    add("--weight-decay", "--wd", default=weight_decay, type=float, metavar="W",
        help="weight decay (default: %(default)s)")
    add("-c", "--checkpoint", default="checkpoint", type=str, metavar="PATH",
        help="folder to save checkpoint and log (default: checkpoint)")
    add("--resume", default="", type=str, metavar="PATH",
        help="checkpoint file, or a run folder holding checkpoint.pth.tar, to resume from")
    add("-a", "--arch", metavar="ARCH", default=arch,
        help="model architecture (default: %(default)s); see README for the list")
    add("--depth", type=int, default=29, help="model depth")
    add("--cardinality", type=int, default=cardinality, help="ResNeXt cardinality (groups)")
    add("--widen-factor", type=int, default=4, help="widen factor (ResNeXt, WRN)")
    add("--gn-groups", type=int, default=32,
        help="GroupNorm groups of the l_* models: layers with C >= G channels get G groups "
             "(C must divide), narrower layers one group per channel (default: 32)")
    add("--se-reduction", type=int, default=16,
        help="squeeze-and-excitation reduction r of the se_* models (default: 16)")
    add("--zero-init-residual", action="store_true",
        help="zero the last norm of each residual branch (post-activation ResNet/ResNeXt)")
    add("--manualSeed", type=int, help="manual seed (random if unset; saved for resume)")
    add("-e", "--evaluate", dest="evaluate", action="store_true",
        help="evaluate model on validation set")
    add("--weights", default="", type=str, metavar="PATH",
        help="initialise the model from a checkpoint of this project or of the reference")
    add("--gpu-id", default="0", type=str,
        help="id(s) for CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 (DataParallel over several); "
             "'cpu' runs on the CPU; without any GPU the run uses the CPU")
    add("--amp", default="none", choices=["none", "bf16", "fp16"],
        help="mixed precision: bf16 autocast, or fp16 autocast with a GradScaler (default: none)")
    add("--channels-last", action="store_true", help="NHWC memory format for model and batches")
    # Beyond the reference: every default below leaves its recipe unchanged.
    add("--scheduler", default="step", choices=["step", "cosine"],
        help="step: x gamma at each --schedule epoch (the reference); cosine: annealed to 0 "
             "over --epochs, per iteration (default: step)")
    add("--warmup-epochs", default=0.0, type=float, metavar="E",
        help="linear LR warmup over the first E epochs, per iteration (default: 0)")
    add("--optimizer", default="sgd", choices=["sgd", "adamw", "lars"],
        help="sgd (momentum), adamw (decoupled weight decay) or lars (layer-wise rates for "
             "large batches) (default: sgd)")
    add("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    add("--no-wd-norm", action="store_true",
        help="no weight decay on norm weights and biases (all 1-D parameters)")
    add("--label-smoothing", default=0.0, type=float, metavar="EPS",
        help="label smoothing of the training loss (default: 0)")
    add("--mixup", default=0.0, type=float, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA)")
    add("--cutmix", default=0.0, type=float, metavar="ALPHA", help="CutMix with Beta(ALPHA, ALPHA)")
    add("--ricap", default=0.0, type=float, metavar="BETA", help="RICAP with Beta(BETA, BETA)")
    add("--cutout", default=0, type=int, metavar="SIZE", help="Cutout of SIZE x SIZE squares")
    add("--dual-cutout", default=0.0, type=float, metavar="ALPHA",
        help="Dual-Cutout: two --cutout views per image, ALPHA x their softmax MSE added")
    add("--random-erasing", default=0.0, type=float, metavar="P",
        help="Random Erasing with probability P per image")
    add("--ghost-batch", default=0, type=int, metavar="N",
        help="BatchNorm statistics over chunks of N images (Ghost BN; BN models only)")
    add("--ema", default=0.0, type=float, metavar="DECAY",
        help="also keep, evaluate and save an exponential moving average of the weights")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--no-progress", action="store_true", help="no per-batch progress output")


def explicit_flags(parser, argv):
    """The dests of the options written on the command line (prefix abbreviations are off)."""
    written = set()
    for token in argv:
        if token.startswith("-"):
            written.add(token.split("=", 1)[0])
    dests = set()
    for action in parser._actions:
        if any(opt in written for opt in action.option_strings):
            dests.add(action.dest)
    return dests


def check_args(args, archs):
    """Refuse impossible settings before any data is read."""
    for name in ("train_batch", "test_batch", "iter_size", "epochs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")
    if args.start_epoch < 0:
        raise UsageError(f"--start-epoch must be >= 0, got {args.start_epoch}")
    if args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    if any(b <= a for a, b in zip(args.schedule, args.schedule[1:])):
        raise UsageError(f"--schedule epochs must increase, got {' '.join(map(str, args.schedule))}")
    if args.lr <= 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if args.arch not in archs:
        close = difflib.get_close_matches(args.arch, list(archs), n=3, cutoff=0.5)
        raise UsageError(f"unknown architecture {args.arch!r}" +
                         (f"; did you mean {', '.join(close)}?" if close else
                          "; see --help for the list"))
    for name in ("warmup_epochs", "mixup", "cutmix", "ricap", "cutout", "dual_cutout",
                 "ghost_batch"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("label_smoothing", "random_erasing"):
        if not 0 <= getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1), got "
                             f"{getattr(args, name)}")
    if args.ema and not 0 < args.ema < 1:
        raise UsageError(f"--ema takes a decay in (0, 1), e.g. 0.999; got {args.ema}")
    if args.nesterov and (args.optimizer != "sgd" or args.momentum <= 0):
        raise UsageError("--nesterov needs --optimizer sgd with --momentum > 0")
    if args.warmup_epochs > args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs} exceeds --epochs {args.epochs}")
    try:
        make_batch_augment(args, num_classes=1)  # refuses impossible combinations now
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.amp == "fp16" and not torch.cuda.is_available():
        raise UsageError("--amp fp16 needs a CUDA GPU; use --amp bf16 on the CPU")


def check_world(args):
    """Under torchrun each of W processes takes train-batch / W images of every batch."""
    world = distributed.world_size()
    if args.train_batch % world:
        raise UsageError(f"--train-batch {args.train_batch} does not divide among {world} "
                         f"processes")


def choose_seed(args):
    """--manualSeed, or a random one (the same on every process), recorded in args."""
    if args.manualSeed is None:
        args.manualSeed = distributed.broadcast_seed(random.randint(1, 10000))
    return args.manualSeed


def apply_checkpoint_args(args, checkpoint, explicit):
    """Take the model flags recorded in ``checkpoint`` unless given on the command line; refuse
    a checkpoint of another architecture."""
    saved = checkpoint.get("args") or {}
    saved_arch = checkpoint.get("arch", saved.get("arch"))
    if saved_arch is not None and "arch" in explicit and saved_arch != args.arch:
        raise UsageError(f"the checkpoint is of architecture {saved_arch!r}, but --arch is "
                         f"{args.arch!r}")
    for name in MODEL_FLAGS:
        if name in saved and name not in explicit:
            setattr(args, name, saved[name])
    return args


def resume_checkpoint(args, explicit):
    """With --resume: read the checkpoint, take its model flags (apply_checkpoint_args) and make
    its folder the run folder, as the reference did. Returns the checkpoint, or None."""
    if not args.resume:
        return None
    path = resolve_checkpoint_path(args.resume)
    checkpoint = read_checkpoint(path)
    apply_checkpoint_args(args, checkpoint, explicit)
    args.checkpoint = os.path.dirname(path)
    return checkpoint


def build_model(registry, args, num_classes):
    """The network named by --arch with the model flags it takes (each family its own, as in
    the reference); an impossible configuration is a UsageError."""
    constructor = registry[args.arch]
    if args.zero_init_residual and "zero_init_residual" not in model_options(constructor):
        raise UsageError(f"--zero-init-residual does not apply to {args.arch} (pre-activation "
                         f"or non-residual network)")
    options = dict(depth=args.depth, block_name=getattr(args, "block_name", None),
                   cardinality=args.cardinality, widen_factor=args.widen_factor,
                   baseWidth=getattr(args, "base_width", None), dropRate=args.drop,
                   growthRate=getattr(args, "growthRate", None),
                   compressionRate=getattr(args, "compressionRate", None),
                   gn_groups=args.gn_groups, zero_init_residual=args.zero_init_residual or None,
                   se_reduction=args.se_reduction, alpha=getattr(args, "alpha", None),
                   base_channels=getattr(args, "base_channels", None))
    try:
        return create_model(registry, args.arch, num_classes=num_classes, **options)
    except ValueError as e:
        raise UsageError(f"{args.arch}: {e}") from e


def check_writable(folder):
    """Create the run folder and prove a file can be written there, before any long work."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"cannot write to the checkpoint folder {folder}: "
                         f"{e.strerror or e}") from e


def setup_device(gpu_id, explicit):
    """(device, gpu_count) from --gpu-id, setting CUDA_VISIBLE_DEVICES as the reference does.
    No GPU at all and --gpu-id not given: the CPU. A GPU named but not there: UsageError.
    Under torchrun, one device per process from its environment (--gpu-id is not used)."""
    device = distributed.init_from_env()
    if device is not None:
        return device, 1
    if gpu_id.strip().lower() in ("", "cpu", "-1"):
        return torch.device("cpu"), 0
    ids = [s.strip() for s in gpu_id.split(",") if s.strip()]
    if not all(s.isdigit() for s in ids):
        raise UsageError(f"--gpu-id takes comma-separated GPU numbers or 'cpu', got {gpu_id!r}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        if explicit:
            raise UsageError(f"--gpu-id {gpu_id}: no such CUDA GPU on this machine "
                             f"(use --gpu-id cpu to train on the CPU)")
        return torch.device("cpu"), 0
    if available < len(ids):
        raise UsageError(f"--gpu-id {gpu_id}: asked for {len(ids)} GPUs, CUDA sees only "
                         f"{available} of them")
    return torch.device("cuda", 0), len(ids)


# Measured on the CPU (BENCHMARKS.md): eager GroupNorm on NHWC activations is slow, while
# torch.compile generates its own normalisation. On CUDA it depends on the torch version
# (older ones copy a channels-last input to NCHW in every GroupNorm), so no warning there.
CHANNELS_LAST_GN_WARNING = (
    "warning: on the CPU --channels-last without --compile slows GroupNorm models (eager "
    "GroupNorm is slow on NHWC; see BENCHMARKS.md): add --compile, or drop --channels-last")


def prepare_model(model, device, gpu_count, channels_last=False, compile_model=False,
                  ghost_batch=0):
    """Move ``model`` to ``device`` and wrap it for training: Ghost BN on request,
    DistributedDataParallel under torchrun, DataParallel over several --gpu-id GPUs,
    torch.compile on request. Returns (model to call, bare model whose state_dict is saved)."""
    if ghost_batch and use_ghost_batch_norm(model, ghost_batch) == 0:
        raise UsageError("--ghost-batch changes BatchNorm layers; this model has none")
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        if (torch.device(device).type == "cpu" and not compile_model
                and any(isinstance(m, nn.GroupNorm) for m in model.modules())):
            print(CHANNELS_LAST_GN_WARNING, file=sys.stderr)
    raw = model
    if distributed.initialized():
        model = distributed.wrap(model, device)
    elif gpu_count > 1:
        model = nn.DataParallel(model)
    if compile_model:
        model = torch.compile(model)
    return model, raw


EXIT_CODES = {UsageError: 2, DataError: 1, CheckpointError: 1, NonFiniteLoss: 1}


def run_main(main, argv=None):
    """Run ``main(argv)``; expected failures print one line to stderr and exit non-zero."""
    finished, result = False, None
    try:
        result = main(argv)
        finished = True
    except TrainingInterrupted as e:
        print(f"\n=> {e}", file=sys.stderr)
        sys.exit(143 if e.signame == "SIGTERM" else 130)
    except KeyboardInterrupt:
        print("\n=> interrupted", file=sys.stderr)
        sys.exit(130)
    except tuple(EXIT_CODES) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_CODES.get(type(e), 1))
    finally:
        left_group = distributed.cleanup(synchronize=finished)
    if left_group:
        # Everything is written; skip interpreter finalization, where torch's C++ threads of a
        # torchrun process can still abort ("terminate called without an active exception")
        # after a run that succeeded, and torchrun would report the run as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result


def run_info(args, num_classes):
    """What a checkpoint records about its run: the arch, the class count and every flag."""
    return {"arch": args.arch, "num_classes": num_classes,
            "args": {k: v for k, v in vars(args).items()
                     if isinstance(v, (str, int, float, bool, list, type(None)))}}


def check_num_classes(checkpoint, num_classes):
    saved = checkpoint.get("num_classes")
    if saved is not None and saved != num_classes:
        raise CheckpointError(f"the checkpoint's model has {saved} classes, this run's data "
                              f"has {num_classes}")


def open_log(args, title, resumed, start_epoch):
    """log.txt of the run folder; a resumed log is cut back to the checkpoint's epochs.
    With --ema a sixth column holds the averaged weights' accuracy.
    Only the main process logs: the others get None."""
    if not distributed.is_main():
        return None
    logger = Logger(os.path.join(args.checkpoint, "log.txt"), title=title, resume=resumed,
                    keep_rows=start_epoch if resumed else None)
    logger.set_names(["Learning Rate", "Train Loss", "Valid Loss", "Train Acc.", "Valid Acc."] +
                     (["EMA Valid Acc."] if args.ema else []))
    return logger


def train_and_log(args, title, model, raw_model, loaders, recipe, device, start_epoch,
                  best_acc, num_classes, resumed):
    """Open log.txt, run the epoch loop of the engine, then draw log.eps / log.png.
    Returns the best validation accuracy."""
    logger = open_log(args, title, resumed, start_epoch)
    train_loader, test_loader = loaders
    best_acc = fit(model=model, raw_model=raw_model, train_loader=train_loader,
                   test_loader=test_loader, criterion=recipe.criterion,
                   eval_criterion=recipe.eval_criterion, optimizer=recipe.optimizer,
                   scheduler=recipe.scheduler, scaler=recipe.scaler,
                   batch_augment=recipe.batch_augment, ema=recipe.ema, seed=args.manualSeed,
                   device=device, epochs=args.epochs, start_epoch=start_epoch,
                   best_acc=best_acc, logger=logger, checkpoint_dir=args.checkpoint,
                   iter_size=args.iter_size, amp=args.amp, show_progress=not args.no_progress,
                   run_info=run_info(args, num_classes))
    if logger is not None:
        logger.close()
        save_curves(logger.fpath)
    return best_acc


def report_evaluation(model, loader, recipe, args, device, classes, num_classes):
    """Print loss and top-1/top-5 of the weights (and of their EMA when the run keeps one), and
    write per_class_accuracy.txt and confusion_matrix.png into the run folder. ``classes``
    names the data's classes; a model with more outputs gets its extra ones numbered."""
    classes = list(classes) + [str(i) for i in range(len(classes), num_classes)]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss, top1, top5 = evaluate(model, loader, recipe.eval_criterion, device=device,
                                amp=args.amp, show_progress=not args.no_progress,
                                confusion=confusion)
    print(f" Test Loss:  {loss:.8f}, Test Acc:  {top1:.2f}, Top-5:  {top5:.2f}")
    if recipe.ema is not None and recipe.ema.n_averaged.item() > 0:
        ema_loss, ema_top1, ema_top5 = evaluate(recipe.ema.module, loader, recipe.eval_criterion,
                                                device=device, amp=args.amp, show_progress=False)
        print(f" EMA  Loss:  {ema_loss:.8f}, EMA  Acc:  {ema_top1:.2f}, Top-5:  {ema_top5:.2f}")
    if distributed.is_main():
        try:
            text, picture = write_class_report(confusion, classes, args.checkpoint)
            print(f" Per-class accuracy: {text}\n Confusion matrix:   {picture}")
        except OSError as e:
            print(f"warning: could not write the per-class report to {args.checkpoint}: "
                  f"{e.strerror or e}", file=sys.stderr)
    return loss, top1, top5
