"""The stages of a run that both scripts share, between the flags (utils.settings.flags) and the
engine (utils.train.engine): the device, the model, the plan a resumed run continues, training
with its log and curves, evaluation with its report, and one clear line and exit code for every
expected failure.

Order matters for the first stage: ``select_device`` sets CUDA_VISIBLE_DEVICES from --gpu-id
before any CUDA call of the run (flags are parsed and checked without CUDA), so --gpu-id always
names the GPU that trains.
"""
import contextlib
import os
import random
import sys
from typing import Callable, Optional

import torch
import torch.nn as nn

from models import create_model
from models.norms import use_micro_batches

from .. import distributed
from ..cpu_memory import keep_freed_memory
from ..data.errors import DataError
from ..data.loaders import EpochLoader, Loaders
from ..records.logger import LogError, Logger, save_curves
from ..records.record import finish_record, new_record, write_record
from ..records.report import write_class_report
from ..records.run_folder import FolderError, FolderUse, RunFolder, check_folder
from ..train.checkpoint import (Checkpoint, CheckpointError, load_weights, read_checkpoint,
                                resolve_checkpoint_path)
from ..train.engine import (CheckpointPolicy, EpochPosition, NonFiniteLoss, PreparedModel,
                            StartPoint, TrainPlan, all_finite, evaluate, fit)
from ..train.recipe import Recipe, apply_hyperparameters
from ..train.stopping import SIGNAL_EXIT_CODES, ImmediateStop, TrainingInterrupted
from .flags import DeviceChoice, ModelChoice, RunSettings, ScriptFlags, UsageError
from .resume import Resumed

__all__ = ["read_settings", "select_device", "choose_seed", "build_model", "check_fits",
           "load_initial_weights", "prepare_model", "check_writable", "check_run_folder",
           "fresh_folder", "check_resume", "start_plan", "run_record", "train_and_log",
           "report_evaluation", "run_main", "EXIT_CODES"]

CPU_NAMES = ("", "cpu", "-1")


def read_settings(flags: ScriptFlags, argv: Optional[list] = None) -> tuple:
    """(RunSettings, the Checkpoint read for --resume or None) of a command line: argv
    parsed, the resumed checkpoint read and its recorded flags merged in (utils.settings.resume),
    every value and combination checked, all before any data is read or CUDA is touched."""
    parsed = flags.parse(argv)
    checkpoint, resumed = None, None
    if parsed.values["resume"]:
        path = resolve_checkpoint_path(parsed.values["resume"])
        checkpoint = read_checkpoint(path)
        resumed = Resumed.of(path, checkpoint)
    return flags.settings(parsed, resumed), checkpoint


def select_device(choice: DeviceChoice, amp: str = "none") -> tuple:
    """(device, gpu_count) for a DeviceChoice. Under torchrun, one device per process from its
    environment (--gpu-id is not used). Otherwise --gpu-id sets CUDA_VISIBLE_DEVICES, as the
    reference does, and only then is CUDA asked what it has: no GPU and --gpu-id not written
    means the CPU; a GPU named but not there is a UsageError, and so is fp16 (``amp``, the
    recipe's) off CUDA."""
    device = distributed.init_from_env()
    if device is not None:
        gpu_count = 1
    else:
        device, gpu_count = _device_from_gpu_id(choice.gpu_id, choice.gpu_id_given)
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("--amp fp16 needs a CUDA GPU; use --amp bf16 on the CPU")
    if device.type == "cpu":
        keep_freed_memory()  # batches and activations reuse heap memory (utils.cpu_memory)
    return device, gpu_count


def _device_from_gpu_id(gpu_id: str, given: bool) -> tuple:
    if gpu_id.strip().lower() in CPU_NAMES:
        return torch.device("cpu"), 0
    ids = [s.strip() for s in gpu_id.split(",") if s.strip()]
    if not all(s.isdigit() for s in ids):
        raise UsageError(f"--gpu-id takes comma-separated GPU numbers or 'cpu', got {gpu_id!r}")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        if given:
            raise UsageError(f"--gpu-id {gpu_id}: no such CUDA GPU on this machine "
                             f"(use --gpu-id cpu to train on the CPU)")
        return torch.device("cpu"), 0
    if available < len(ids):
        raise UsageError(f"--gpu-id {gpu_id}: asked for {len(ids)} GPUs, CUDA sees only "
                         f"{available} of them")
    return torch.device("cuda", 0), len(ids)


def choose_seed(seed: Optional[int], train_batch: int) -> int:
    """--manualSeed, or a random one (the same on every process). Also checks that each of W
    processes can take train-batch / W images of every batch."""
    world = distributed.world_size()
    if train_batch % world:
        raise UsageError(f"--train-batch {train_batch} does not divide among {world} processes")
    return seed if seed is not None else distributed.broadcast_seed(random.randint(1, 10000))


# No published network is deeper than ResNet-1202; building one costs ~1 ms per layer even on
# the meta device, so the estimate below would itself take minutes far past this.
MAX_DEPTH = 10_000


def build_model(registry: dict, choice: ModelChoice, num_classes: int,
                device: Optional[torch.device] = None) -> nn.Module:
    """The network of a ModelChoice (whose flags parsing checked against the architecture),
    built with the options its constructor takes; an impossible configuration (a depth of the
    wrong form, widths GroupNorm cannot split) is a UsageError. With ``device``, a network whose
    training state would not fit in its memory is refused before it is built."""
    if choice.sync_bn and device is not None and (device.type != "cuda"
                                                  or not distributed.initialized()):
        raise UsageError("--sync-bn needs CUDA GPUs under torchrun: torch's SyncBatchNorm "
                         "synchronises BatchNorm over the processes of a GPU process group")
    depth = choice.options.get("depth")
    if "depth" in choice.given and depth > MAX_DEPTH:
        raise UsageError(f"--depth {depth}: this project builds at most {MAX_DEPTH} layers (the "
                         f"deepest published CIFAR network, ResNet-1202, has 1202)")
    try:
        if device is not None:
            try:
                with torch.device("meta"):  # shapes only: no memory, no initialisation cost
                    estimate = create_model(registry, choice.arch, num_classes=num_classes,
                                            **choice.options)
            except (NotImplementedError, RuntimeError):
                estimate = None  # an initialisation that reads values (torchvision's RegNets)
            if estimate is not None:
                check_fits(estimate, choice.arch, device)
        return create_model(registry, choice.arch, num_classes=num_classes, **choice.options)
    except ValueError as e:
        message = str(e)
        raise UsageError(message if message.startswith(choice.arch) else
                         f"{choice.arch}: {message}") from e


def check_fits(model: nn.Module, arch: str, device: torch.device) -> None:
    """Refuse a model whose weights, gradients and momentum alone (4 bytes each per parameter,
    and as much again for an EMA or Adam's second moment) exceed the device's memory."""
    params = sum(p.numel() for p in model.parameters())
    need = params * 4 * 4
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise UsageError(f"{arch} with these flags has {params / 1e6:,.0f}M parameters: training "
                         f"needs at least {need / 2 ** 30:,.0f} GiB for weights, gradients and "
                         f"optimizer state, more than the {have / 2 ** 30:,.0f} GiB of {device}")


# Measured on the CPU (BENCHMARKS.md): eager GroupNorm on NHWC activations is slow, while
# torch.compile generates its own normalisation. On CUDA it depends on the torch version
# (older ones copy a channels-last input to NCHW in every GroupNorm), so no warning there.
CHANNELS_LAST_GN_WARNING = (
    "warning: on the CPU --channels-last without --compile slows GroupNorm models (eager "
    "GroupNorm is slow on NHWC; see BENCHMARKS.md): add --compile, or drop --channels-last")


def load_initial_weights(model: nn.Module, settings: RunSettings) -> None:
    """--weights into the built ``model``, before the data is read: weights that do not fit
    are refused without waiting for it."""
    if settings.weights:
        load_weights(model, settings.weights)


def prepare_model(model: nn.Module, device: torch.device, gpu_count: int,
                  settings: RunSettings) -> PreparedModel:
    """Ready ``model`` for the run its RunSettings describe (its --weights loaded already by
    ``load_initial_weights``): micro-batches (--ghost-batch) on request, moved to ``device``,
    wrapped in DistributedDataParallel under torchrun or DataParallel over several --gpu-id
    GPUs, torch.compile on request. Returns a PreparedModel."""
    choice, ghost_batch = settings.device, settings.model.ghost_batch
    if ghost_batch and use_micro_batches(model, ghost_batch) == 0:
        raise UsageError(f"--ghost-batch needs batch statistics; {settings.model.arch} has no "
                         f"BatchNorm2d or BatchChannelNorm2d layer")
    if settings.model.sync_bn:
        if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            raise UsageError("--sync-bn changes BatchNorm layers; this model has none")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if choice.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if (device.type == "cpu" and not choice.compile
                and any(isinstance(m, nn.GroupNorm) for m in model.modules())):
            print(CHANNELS_LAST_GN_WARNING, file=sys.stderr)
    raw = model
    if distributed.initialized():
        model = distributed.wrap(model, device)
    elif gpu_count > 1:
        model = nn.DataParallel(model)
    if choice.compile:
        model = torch.compile(model, mode=choice.compile)
    print(f"    Total params: {sum(p.numel() for p in raw.parameters()) / 1e6:.2f}M")
    return PreparedModel(model, raw)


def check_writable(folder: str) -> None:
    """Prove a file can be written in the run folder, before any long work, and leave nothing
    behind: a folder this check creates is removed again (the run makes it when it starts
    writing), so a run that fails before training leaves no empty folder."""
    created = []
    try:
        path = os.path.abspath(folder)
        while not os.path.exists(path):
            created.append(path)
            path = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"cannot write to the checkpoint folder {folder}: "
                         f"{e.strerror or e}") from e
    finally:
        for path in created:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                break


def fresh_folder(settings: RunSettings) -> bool:
    """Whether the run starts its folder afresh: not a --resume, or one into another folder
    (-c) than its checkpoint's."""
    if not settings.resume:
        return True
    resumed = os.path.dirname(os.path.abspath(resolve_checkpoint_path(settings.resume)))
    return os.path.abspath(settings.run_folder) != resumed


def check_run_folder(settings: RunSettings) -> None:
    """Before any long work: the run folder can be written, no other run holds it, and a fresh
    run does not land on a run already there unless --replace (utils.records.run_folder)."""
    check_writable(settings.run_folder)
    check_folder(settings.run_folder, fresh_folder(settings), settings.replace)


def check_resume(settings: RunSettings, checkpoint: Optional[Checkpoint],
                 num_classes: int) -> None:
    """Whether the resumed ``checkpoint`` fits this run: its class count, and epochs left to
    train (unless evaluating)."""
    if checkpoint is None:
        return
    saved = checkpoint.num_classes
    if saved is not None and saved != num_classes:
        raise CheckpointError(f"the checkpoint's model has {saved} classes, this run's data "
                              f"has {num_classes}")
    done = checkpoint.epoch
    if not settings.evaluate and done >= settings.epochs:
        raise UsageError(f"nothing to train: the checkpoint has done {done} epochs and --epochs "
                         f"is {settings.epochs}; raise --epochs to train on")


def start_plan(settings: RunSettings, checkpoint: Optional[Checkpoint], raw_model: nn.Module,
               recipe: Recipe) -> TrainPlan:
    """The TrainPlan of a run: from --start-epoch, or where ``checkpoint`` left off (its
    weights, optimizer, schedule, EMA and RNG states are put back first, then this run's LR,
    momentum and weight decay: a --resume may give them anew)."""
    start = StartPoint(epoch=settings.start_epoch)
    if checkpoint is not None:
        print(f"==> Resuming from checkpoint {settings.resume}")
        epoch, best_acc = checkpoint.restore(raw_model, recipe)
        apply_hyperparameters(recipe.optimizer, recipe.scheduler, settings.recipe)
        start = StartPoint(epoch, EpochPosition.from_dict(checkpoint.position,
                                                          distributed.world_size()),
                           best_acc, resumed=True)
    return TrainPlan(epochs=settings.epochs, start=start,
                     folder=FolderUse(settings.run_folder, fresh_folder(settings),
                                      settings.replace),
                     checkpoints=CheckpointPolicy(settings.keep_checkpoints, settings.save_every,
                                                  settings.best_by),
                     tta=settings.tta, show_progress=settings.show_progress)


def run_record(settings: RunSettings, num_classes: int,
               checkpoint: Optional[Checkpoint] = None) -> dict:
    """What a checkpoint records about its run (Checkpoint fields): the arch, the class count,
    the recorded flags, the run record of run.json (utils.records.record: a resumed run adds its
    session to the checkpoint's); and, from the ``checkpoint`` resumed, its log rows (to rebuild
    a lost log.txt)."""
    previous = checkpoint.run if checkpoint is not None else None
    first_epoch = (checkpoint.epoch if checkpoint is not None else 0) + 1
    changed = {name: {"from": old, "to": new, "from_epoch": first_epoch}
               for name, (old, new) in settings.changed.items()}
    record = {"arch": settings.model.arch, "num_classes": num_classes, "args": settings.recorded,
              "run": new_record(settings.command[0], settings.command[1:], settings.flags,
                                settings.recorded, previous, changed)}
    if checkpoint is not None and checkpoint.log is not None:
        record["log"] = checkpoint.log
    return record


LOG_COLUMNS = ["Learning Rate", "Train Loss", "Valid Loss", "Train Acc.", "Valid Acc."]


def train_and_log(model: PreparedModel, loaders: Loaders, recipe: Recipe, plan: TrainPlan,
                  record: dict) -> float:
    """Write run.json, open log.txt (a resumed log cut back to the checkpoint's epochs, or
    rebuilt from the rows ``record`` carries from the checkpoint; with an EMA a sixth column),
    run the engine's epoch loop, then draw log.eps / log.png and write the result into run.json.
    Only the main process logs. Returns the best validation accuracy."""
    record = dict(record)
    saved_log = record.pop("log", None)
    log = None
    # Rank 0 writes the folder, and holds it while it does (utils.records.run_folder).
    folder = (RunFolder(plan.folder, record["run"]["sessions"][-1]["command"])
              if distributed.is_main() else contextlib.nullcontext())
    with folder:
        if distributed.is_main():
            write_record(plan.folder.path, record["run"])
            log = Logger(os.path.join(plan.folder.path, "log.txt"), resume=plan.start.resumed,
                         keep_rows=plan.start.epoch if plan.start.resumed else None,
                         saved=saved_log)
            log.set_names(LOG_COLUMNS + (["EMA Valid Acc."] if recipe.ema is not None else []) +
                          (["TTA Valid Acc."] if plan.tta else []))
        try:
            best_acc = fit(model, loaders, recipe, plan, log, record)
        finally:
            if log is not None:
                log.close()
        if log is not None:
            save_curves(log.fpath)
            accuracies = log.numbers["Valid Acc."]
            finish_record(plan.folder.path, record["run"], best_acc=best_acc,
                          final_acc=accuracies[-1] if accuracies else None,
                          epochs=len(accuracies))
    print(f"Best acc: {best_acc:.2f}")
    return best_acc


def report_evaluation(model: PreparedModel, loader: EpochLoader, recipe: Recipe, plan: TrainPlan,
                      classes: list, num_classes: int) -> tuple:
    """Print loss and top-1/top-5 of the weights (and of their EMA when the run keeps one), and
    write per_class_accuracy.txt and confusion_matrix.png into the run folder. ``classes``
    names the data's classes; a model with more outputs gets its extra ones numbered."""
    if not all_finite([model.raw]):
        raise CheckpointError("the weights to evaluate are not all finite (NaN or infinite): "
                              "they score nothing; evaluate a checkpoint saved before the "
                              "values went bad")
    print("\nEvaluation only")
    classes = list(classes) + [str(i) for i in range(len(classes), num_classes)]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=loader.device)
    loss, top1, top5 = evaluate(model.call, loader, recipe.eval_criterion, recipe.amp,
                                plan.show_progress, confusion)
    print(f" Test Loss:  {loss:.8f}, Test Acc:  {top1:.2f}, Top-5:  {top5:.2f}")
    if plan.tta:
        tta_loss, tta_top1, tta_top5 = evaluate(model.call, loader, recipe.eval_criterion,
                                                recipe.amp, False, tta=True)
        print(f" TTA  Loss:  {tta_loss:.8f}, TTA  Acc:  {tta_top1:.2f}, Top-5:  {tta_top5:.2f}")
    if recipe.ema is not None and recipe.ema.updates > 0:
        ema_loss, ema_top1, ema_top5 = evaluate(recipe.ema.module, loader, recipe.eval_criterion,
                                                recipe.amp, False)
        print(f" EMA  Loss:  {ema_loss:.8f}, EMA  Acc:  {ema_top1:.2f}, Top-5:  {ema_top5:.2f}")
    if distributed.is_main():
        try:
            text, picture = write_class_report(confusion, classes, plan.folder.path)
            print(f" Per-class accuracy: {text}\n Confusion matrix:   {picture}")
        except OSError as e:
            print(f"warning: could not write the per-class report to {plan.folder.path}: "
                  f"{e.strerror or e}", file=sys.stderr)
    return loss, top1, top5


def _say(line: str) -> None:
    """One line on stderr, from one process: under torchrun every process meets the same
    expected failure, and rank 0 speaks for them."""
    if distributed.is_main():
        try:
            print(line, file=sys.stderr)
        except OSError:  # the terminal is gone (SIGHUP): nobody is there to read it
            pass


EXIT_CODES = {UsageError: 2, FolderError: 2, DataError: 1, CheckpointError: 1, NonFiniteLoss: 1,
              LogError: 1}


def run_main(main: Callable, argv: Optional[list] = None) -> object:
    """Run ``main(argv)``; expected failures print one line to stderr and exit non-zero."""
    finished, result = False, None
    try:
        result = main(argv)
        finished = True
    except (TrainingInterrupted, ImmediateStop) as e:
        _say(f"\n=> {e}")
        sys.exit(SIGNAL_EXIT_CODES[e.signame])
    except KeyboardInterrupt:  # a Ctrl-C outside training (while the data loads, say)
        _say("\n=> interrupted")
        sys.exit(130)
    except tuple(EXIT_CODES) as e:
        _say(f"error: {e}")
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
