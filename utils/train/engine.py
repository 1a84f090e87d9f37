"""The training engine both scripts share: one training epoch with gradient accumulation, an
exact evaluation, and the epoch loop that logs and checkpoints.

One step: uint8 batch on the device -> crop/flip -> normalise (the loader) -> batch regularisers
(cutout, mixup, ...: utils.data.augment) -> model under autocast -> loss scaled by this micro-batch's
share of the step -> backward -> after the step's last micro-batch: optimizer step, per-iteration
LR schedule, EMA update -> meters -> progress line.
"""
import contextlib
import dataclasses
import math
import time
from typing import NamedTuple

import torch

from .. import distributed
from ..eval import confusion_counts, topk_correct
from ..progress import Progress, format_rate
from ..records.record import with_session_time
from ..seeding import batch_generator
from .checkpoint import CheckpointError, save_checkpoint, training_state
from .stopping import StepControl, StopSignal, TrainingInterrupted

__all__ = ["TrainPlan", "EpochPosition", "PreparedModel", "NonFiniteLoss", "TrainingInterrupted",
           "StopSignal", "StepControl", "check_finite", "autocast", "train_one_epoch", "evaluate",
           "fit"]


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """Where training starts and ends and how each step runs: epochs [start_epoch, epochs), one
    optimizer step per ``iter_size`` micro-batches under ``amp``, draws from ``seed``; the run
    folder gets log and checkpoints (and the last ``keep_checkpoints`` epochs' own copies), and
    a recovery checkpoint every ``save_every`` minutes (0: none); ``best_acc`` is the best
    validation accuracy so far and ``resumed`` whether the run continues a checkpoint (whose log
    it then appends to). A run resumed mid-epoch starts epoch ``start_epoch`` at ``position``.
    ``tta`` also evaluates with flip test-time augmentation (a log column); ``best_by`` picks
    model_best by the plain validation accuracy ("valid") or the TTA one ("tta"). The run folder
    is ``fresh_folder`` when the run starts it (not a resume into it), and may ``replace`` a run
    found there (utils.run_folder)."""
    epochs: int
    start_epoch: int = 0
    iter_size: int = 1
    amp: str = "none"
    seed: int = 0
    run_folder: str = "checkpoint"
    show_progress: bool = True
    best_acc: float = 0.0
    resumed: bool = False
    keep_checkpoints: int = 0
    save_every: float = 0.0
    position: "EpochPosition" = None
    tta: bool = False
    best_by: str = "valid"
    fresh_folder: bool = True
    replace: bool = False


@dataclasses.dataclass(frozen=True)
class EpochPosition:
    """Where in an epoch a recovery checkpoint was taken: the next micro-batch, each process's
    meters so far (loss sum, top-1 and top-5 counts, images, scored images; one list per rank)
    and the LR the epoch started with (its log row's)."""
    batch: int
    meters: tuple
    lr: float

    def as_dict(self):
        return {"batch": self.batch, "meters": [list(m) for m in self.meters], "lr": self.lr}


class PreparedModel(NamedTuple):
    """The model as it is called (maybe DDP/DataParallel/compiled) and the bare module whose
    state_dict is saved."""
    call: torch.nn.Module
    raw: torch.nn.Module

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLoss(Exception):
    def __init__(self, epoch, batch=None, what="loss"):
        """``what`` became NaN or infinite at 0-based ``epoch`` (and ``batch``)."""
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        super().__init__(f"{what} became non-finite at {where}; stopped without saving, the last "
                         f"checkpoint is the last good one")


def all_finite(modules):
    """Whether every floating-point weight and buffer of ``modules`` is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for m in modules for t in m.state_dict().values()
             if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


# The log's columns (the reference's five, then ours), and how a message names them.
COLUMNS = {"Learning Rate": "learning rate", "Train Loss": "training loss",
           "Valid Loss": "validation loss", "Train Acc.": "training accuracy",
           "Valid Acc.": "validation accuracy", "EMA Valid Acc.": "EMA validation accuracy",
           "TTA Valid Acc.": "TTA validation accuracy"}


def check_finite(epoch, row, modules):
    """Refuse to log or save an epoch whose numbers (``row``: column -> value) or weights are
    NaN or infinite."""
    for column, value in row.items():
        if not math.isfinite(value):
            raise NonFiniteLoss(epoch, what=COLUMNS[column])
    if not all_finite(modules):
        raise NonFiniteLoss(epoch, what="the weights")


def autocast(device, amp):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[amp])


def _no_sync(model, skip):
    return model.no_sync() if skip and hasattr(model, "no_sync") else contextlib.nullcontext()


def train_one_epoch(model, loader, recipe, plan, epoch, control=None):
    """Train ``model`` (the module to call) one epoch of ``loader`` with ``recipe`` (a
    utils.recipe.Recipe) as ``plan`` says; returns (loss, top1 %, top5 %) averaged over all
    processes' images. ``control`` (a StepControl) acts between steps: recovery checkpoints,
    signals. In the plan's first epoch of a run resumed mid-epoch it starts at the saved batch
    with the saved meters (the loader's epoch plan already starts there).

    The optimizer steps once every ``plan.iter_size`` micro-batches. Each micro-batch's mean loss
    is weighted by its share of the images of its step (1/iter_size when all are full), so a step
    computes the mean loss over all its images whatever the split into micro-batches or
    processes (DDP averages gradients over processes, hence the factor world). The recipe's
    batch regularisers transform each batch and its targets; the gradient's global norm is clipped
    to the recipe's ``clip_grad`` (after unscaling under fp16); a per-iteration schedule steps
    after every optimizer step, and the EMA averages the weights after it. Accuracy with mixed
    targets counts the largest target."""
    criterion, optimizer, scaler = recipe.criterion, recipe.optimizer, recipe.scaler
    batch_augment, ema = recipe.batch_augment, recipe.ema
    iteration_scheduler = recipe.scheduler if getattr(recipe.scheduler, "per_iteration",
                                                      False) else None
    device, iter_size, amp = loader.device, plan.iter_size, plan.amp
    model.train()
    sizes = loader.batch_sizes()
    world = distributed.world_size()
    step_images = [sum(sizes[s:s + iter_size]) for s in range(0, len(sizes), iter_size)]
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, top1, top5
    count = scored = first = 0
    if epoch == plan.start_epoch and plan.position is not None:
        first = plan.position.batch
        saved = plan.position.meters[distributed.rank()]
        totals += torch.tensor(saved[:3], dtype=torch.float64, device=device)
        count, scored = int(saved[3]), int(saved[4])
    raw_model = distributed.unwrap(model)
    # The first non-finite batch, recorded on the device: checking it every batch would stall a
    # GPU on a host sync, so it is read where the host syncs anyway (CPU: every batch).
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def raise_if_non_finite():
        if first_bad >= 0:
            raise NonFiniteLoss(epoch, int(first_bad))

    on_cpu = torch.device(device).type == "cpu"
    progress = Progress("Training", len(sizes), enabled=plan.show_progress, first=first)
    optimizer.zero_grad(set_to_none=True)
    end = time.time()
    for i, (x, y) in enumerate(loader, start=first):
        data_time = time.time() - end
        n = y.shape[0]
        if batch_augment is not None and batch_augment.enabled:
            x, y = batch_augment(x, y, batch_generator(plan.seed, epoch, i, distributed.rank()))
        last_of_step = (i + 1) % iter_size == 0 or i + 1 == len(sizes)
        with _no_sync(model, not last_of_step):
            with autocast(device, amp):
                output = model(x)
                loss = criterion(output, y)
            weight = n * world / step_images[i // iter_size]
            scaled = loss * weight
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        bad = ~torch.isfinite(loss.detach())
        first_bad = torch.where(bad & (first_bad < 0), i, first_bad)
        if on_cpu or progress.due(i + 1):
            raise_if_non_finite()
        if last_of_step:
            if recipe.clip_grad:
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), recipe.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if iteration_scheduler is not None:
                iteration_scheduler.step()
            if ema is not None:
                ema.update_parameters(raw_model)
        with torch.no_grad():
            top1, top5 = topk_correct(output.detach(), y, (1, 5))
            totals += torch.stack([loss.detach().double() * n, top1.double(), top5.double()])
        count += n
        scored += y.shape[0]
        if progress.due(i + 1):
            t = totals.tolist()
            progress.update(i + 1, data_time, time.time() - end, t[0] / count,
                            100 * t[1] / scored, 100 * t[2] / scored)
        if last_of_step and control is not None:
            control.after_step(epoch, i + 1, lambda: totals.tolist() + [count, scored],
                               raise_if_non_finite)
        end = time.time()
    progress.finish()
    raise_if_non_finite()
    # The epoch's meters over every process's images (each saw its shard of every batch).
    counts = torch.tensor([count, scored], dtype=torch.float64, device=device)
    t = distributed.all_reduce_sum(torch.cat([totals, counts])).tolist()
    return t[0] / t[3], 100 * t[1] / t[4], 100 * t[2] / t[4]


@torch.no_grad()
def evaluate(model, loader, criterion, amp="none", show_progress=True, confusion=None, tta=False):
    """Loss and top-1/top-5 accuracy (%) over the whole evaluation set: each process evaluates
    its shard and the sums are reduced, so the numbers are exact for any number of processes.
    ``confusion``, a (K, K) int64 tensor on ``device``, receives the counts of (true class,
    predicted class) pairs of the whole set. With ``tta`` each image's logits are the mean of
    its own and its mirror image's (flip test-time augmentation)."""
    model, device = distributed.unwrap(model), loader.device
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top1, top5, count
    progress = Progress("Testing ", len(loader), enabled=show_progress)
    end = time.time()
    for i, (x, y) in enumerate(loader):
        data_time = time.time() - end
        if y.shape[0] == 0:  # this process's share of a last batch smaller than the world
            continue
        with autocast(device, amp):
            output = model(x)
            if tta:
                # Cloned first: under CUDA graphs (--compile reduce-overhead) the next call of
                # the model may write its output where this one's is.
                output = (output.clone() + model(x.flip(-1))) / 2
            loss = criterion(output, y)
        top1, top5 = topk_correct(output, y, (1, 5))
        if confusion is not None:
            confusion += confusion_counts(output, y, confusion.shape[0])
        n = y.shape[0]
        totals[:3] += torch.stack([loss.double() * n, top1.double(), top5.double()])
        totals[3] += n
        if progress.due(i + 1):
            t = totals.tolist()
            progress.update(i + 1, data_time, time.time() - end, t[0] / t[3], 100 * t[1] / t[3],
                            100 * t[2] / t[3])
        end = time.time()
    progress.finish()
    if confusion is not None:
        distributed.all_reduce_sum(confusion)
    t = distributed.all_reduce_sum(totals).tolist()
    return t[0] / t[3], 100 * t[1] / t[3], 100 * t[2] / t[3]


def fit(model, loaders, recipe, plan, log, record):
    """The epoch loop: train ``model`` (a PreparedModel) on ``loaders.train``, evaluate on
    ``loaders.test``, step the recipe's schedule, append a row to ``log`` (a Logger; None on the
    processes that do not log), save checkpoint.pth.tar (and model_best.pth.tar) holding
    ``record`` (what the run's flags say a checkpoint records; its run record's last session
    takes the wall time at each save). Only the main process prints the epoch's times, logs and
    saves. Returns the best accuracy.

    With an EMA the averaged weights are evaluated too (an extra log column) and saved in the
    checkpoint, and with ``plan.tta`` the flip-TTA accuracy; the best model is chosen by the raw
    weights' plain accuracy, or their TTA one with ``plan.best_by`` "tta"."""
    main = distributed.is_main()
    show = plan.show_progress and main
    eval_criterion, ema, scheduler = recipe.eval_criterion, recipe.ema, recipe.scheduler
    per_iteration = getattr(scheduler, "per_iteration", False)
    best_acc, lr = plan.best_acc, None
    started = time.perf_counter()

    def recorded(**fields):
        """What a checkpoint records now: ``record`` with this session's wall time so far (kept
        in ``record``, so the caller's run.json says what the last checkpoint says), the log's
        rows and ``fields``."""
        if record.get("run"):
            record["run"] = with_session_time(record["run"], time.perf_counter() - started)
        return {**record, "log": log.rows(), **fields}

    def save_position(epoch, next_batch, meters):
        """A recovery checkpoint: the state after this step and the place in the epoch."""
        every = distributed.gather_objects(meters)
        if main:
            position = EpochPosition(next_batch, tuple(every), lr)
            save_checkpoint(training_state(
                epoch, model.raw, recipe.optimizer, scheduler, recipe.scaler, best_acc,
                best_acc, recorded(position=position.as_dict()), ema),
                False, plan.run_folder)

    if plan.position is not None and not plan.position.batch < len(loaders.train):
        raise CheckpointError(f"the checkpoint's position in its epoch is malformed: batch "
                              f"{plan.position.batch + 1} of an epoch of {len(loaders.train)} "
                              f"batches")
    with StopSignal() as stop:
        control = StepControl(stop, plan.save_every, save_position)
        for epoch in range(plan.start_epoch, plan.epochs):
            resuming = epoch == plan.start_epoch and plan.position is not None
            lr = plan.position.lr if resuming else recipe.optimizer.param_groups[0]["lr"]
            if main:
                print(f"\nEpoch: [{epoch + 1} | {plan.epochs}] LR: {lr:f}" + (
                    f" (resumed at batch {plan.position.batch + 1})" if resuming else ""),
                    flush=True)
            loaders.train.set_epoch(epoch, plan.position.batch if resuming else 0)
            start = time.perf_counter()
            train_loss, train_acc, _ = train_one_epoch(
                model.call, loaders.train, recipe, dataclasses.replace(plan, show_progress=show),
                epoch, control)
            train_time = time.perf_counter() - start  # the epoch's meters synced the device
            test_loss, test_acc, _ = evaluate(model.call, loaders.test, eval_criterion,
                                              plan.amp, show)
            if main:
                images = sum(loaders.train.batch_sizes())
                rate = format_rate(images / train_time)
                print(f"    Epoch time: train {train_time:.2f} s ({rate} img/s"
                      f"), test {time.perf_counter() - start - train_time:.2f} s", flush=True)
            row = dict(zip(COLUMNS, [lr, train_loss, test_loss, train_acc, test_acc]))
            if ema is not None:
                row["EMA Valid Acc."] = evaluate(ema.module, loaders.test, eval_criterion,
                                                 plan.amp, False)[1]
            if plan.tta:
                row["TTA Valid Acc."] = evaluate(model.call, loaders.test, eval_criterion,
                                                 plan.amp, False, tta=True)[1]
            check_finite(epoch, row, [model.raw] + ([ema.module] if ema is not None else []))
            test_acc = row["TTA Valid Acc." if plan.best_by == "tta" else "Valid Acc."]
            if not per_iteration:
                scheduler.step()
            is_best = test_acc > best_acc
            best_acc = max(test_acc, best_acc)
            if main:
                # The row first: a crash before the save leaves one row too many, which resume
                # cuts back to the checkpoint's epoch count (never a missing row). The checkpoint
                # holds the rows too, so a lost log can be rebuilt.
                log.append(list(row.values()))
                with stop.critical():
                    save_checkpoint(training_state(
                        epoch + 1, model.raw, recipe.optimizer, scheduler, recipe.scaler,
                        test_acc, best_acc, recorded(), ema), is_best,
                        plan.run_folder, keep=plan.keep_checkpoints)
            signame = stop.agreed()
            if signame:
                raise TrainingInterrupted(signame, epoch + 1)
    return best_acc
