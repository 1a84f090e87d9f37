"""The training engine both scripts share: one training epoch with gradient accumulation, an
exact evaluation, and the epoch loop that logs and checkpoints.

One step: uint8 batch on the device -> crop/flip -> normalise (the loader) -> batch
regularisers (cutout, mixup, ...: utils.train.regularisers) -> model under autocast -> loss scaled by
this micro-batch's share of the step -> backward (``micro_step``) -> after the step's last
micro-batch: clipping, optimizer step, per-iteration LR schedule, EMA update
(``optimizer_step``) -> meters -> progress line. How each of these runs is the recipe's
(utils.train.recipe.Recipe); the plan (``TrainPlan``) says only which epochs run, where they are
saved and from where a resume continues.
"""
import contextlib
import dataclasses
import math
import time
from typing import NamedTuple, Optional, Sequence

import torch

from models.standardization import held_over_step

from .. import distributed
from ..data.loaders import EpochLoader, Loaders
from ..eval import confusion_counts
from ..progress import Progress, format_rate
from ..records.board import Board
from ..records.columns import (EMA_VALID_ACC, REFERENCE_COLUMNS, TTA_VALID_ACC, VALID_ACC,
                               WORDS)
from ..records.logger import Logger
from ..records.record import with_session_time
from ..settings.flag import UsageError
from .checkpoint import Checkpoint, CheckpointError, save_checkpoint
from .meters import Meters, Scores
from .plan import EpochPosition, PreparedModel, TrainPlan
from .recipe import Recipe, autocast
from .stopping import StepControl, StopSignal, TrainingInterrupted

__all__ = ["NonFiniteLoss", "StepOutput", "FitResult", "check_finite", "micro_step",
           "optimizer_step", "train_one_epoch", "evaluate", "fit"]


class NonFiniteLoss(Exception):
    def __init__(self, epoch: int, batch: Optional[int] = None, what: str = "loss"):
        """``what`` became NaN or infinite at 0-based ``epoch`` (and ``batch``)."""
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        last = ("the last checkpoint is the last good one" if epoch else
                "no epoch had finished, so no checkpoint holds good weights to go back to")
        super().__init__(f"{what} became non-finite at {where}; stopped without saving: {last}")


def all_finite(modules: Sequence[torch.nn.Module]) -> bool:
    """Whether every floating-point weight and buffer of ``modules`` is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for m in modules for t in m.state_dict().values()
             if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def check_finite(epoch: int, row: dict, modules: Sequence[torch.nn.Module]) -> None:
    """Refuse to log or save an epoch whose numbers (``row``: column -> value) or weights are
    NaN or infinite."""
    for column, value in row.items():
        if not math.isfinite(value):
            raise NonFiniteLoss(epoch, what=WORDS[column])
    if not all_finite(modules):
        raise NonFiniteLoss(epoch, what="the weights")


class NonFiniteWatch:
    """The first batch of an epoch whose loss was NaN or infinite, recorded on the device:
    checking every batch would stall a GPU on a host sync, so ``check`` runs where the host
    syncs anyway (on the CPU: every batch)."""

    def __init__(self, epoch: int, device: torch.device):
        self.epoch = epoch
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def see(self, loss: torch.Tensor, batch: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), batch, self.first_bad)

    def check(self) -> None:
        if self.first_bad >= 0:
            raise NonFiniteLoss(self.epoch, int(self.first_bad))


def _no_sync(model, skip):
    return model.no_sync() if skip and hasattr(model, "no_sync") else contextlib.nullcontext()


class StepOutput(NamedTuple):
    """A micro-batch's mean loss and the model's output."""
    loss: torch.Tensor
    output: torch.Tensor


def micro_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe,
               weight: float, last_of_step: bool) -> "StepOutput":
    """Forward and backward of one micro-batch (already through the batch regularisers) under
    the recipe's autocast: the gradient of ``weight`` x its mean loss is added to the
    parameters' (scaled by the AMP scaler under fp16; under DDP the gradients are averaged over
    the processes only at the ``last_of_step``). The network's Weight Standardization is
    computed once per optimizer step, and its backward runs once, in the ``last_of_step``'s
    (models.standardization.held_over_step)."""
    device = x.device
    with _no_sync(model, not last_of_step), held_over_step(distributed.unwrap(model),
                                                           last_of_step):
        with autocast(device, recipe.amp):
            output = model(x)
            loss = recipe.criterion(output, y)
        scaled = loss * weight
        (recipe.scaler.scale(scaled) if recipe.scaler is not None else scaled).backward()
    return StepOutput(loss, output)


def optimizer_step(raw_model: torch.nn.Module, recipe: Recipe) -> None:
    """After a step's last micro-batch: the gradient's global norm clipped to the recipe's
    ``clip_grad`` (the true gradient: unscaled first under fp16), the optimizer step (skipped
    by the scaler when fp16 gradients overflowed), the gradients cleared, then the
    per-iteration schedule and the EMA of the weights step."""
    optimizer, scaler = recipe.optimizer, recipe.scaler
    if recipe.clip_grad:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), recipe.clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if recipe.per_iteration:
        recipe.scheduler.step()
    if recipe.ema is not None:
        recipe.ema.update_parameters(raw_model)


def _one_value_batch(error: ValueError, epoch: int, batch: int, images: int,
                     total: int) -> Exception:
    """BatchNorm's refusal of a batch with one value per channel, in a run's words; any other
    ValueError as it is."""
    if "more than 1 value per channel" not in str(error):
        return error
    return UsageError(f"batch {batch + 1} of epoch {epoch + 1} holds {images} image(s), and a "
                      f"BatchNorm layer sees one value per channel there (its features are 1x1), "
                      f"which it cannot normalise: choose a --train-batch that leaves no batch "
                      f"of one image ({total} images an epoch), or a norm without batch "
                      f"statistics")


def train_one_epoch(model: torch.nn.Module, loader: EpochLoader, recipe: Recipe, plan: TrainPlan,
                    epoch: int, control: Optional[StepControl] = None) -> Scores:
    """Train ``model`` (the module to call) one epoch of ``loader`` with ``recipe``; returns
    the Scores averaged over all processes' images. ``control`` acts between steps:
    recovery checkpoints, signals. In the plan's first epoch of a run resumed mid-epoch it
    starts at the saved batch with the saved meters (the loader's epoch plan already starts
    there).

    The optimizer steps once every ``recipe.iter_size`` micro-batches. Each micro-batch's mean
    loss is weighted by its share of the images of its step (1/iter_size when all are full), so
    a step computes the mean loss over all its images whatever the split into micro-batches or
    processes (DDP averages gradients over processes, hence the factor world). Accuracy with
    mixed targets counts the largest target."""
    device, iter_size, world = loader.device, recipe.iter_size, distributed.world_size()
    model.train()
    sizes = loader.batch_sizes()
    step_images = [sum(sizes[s:s + iter_size]) for s in range(0, len(sizes), iter_size)]
    first, meters = 0, Meters(device)
    if epoch == plan.start.epoch and plan.start.position is not None:
        first = plan.start.position.batch
        meters = plan.start.position.meters[distributed.rank()].to(device)
    raw_model = distributed.unwrap(model)
    watch = NonFiniteWatch(epoch, device)
    on_cpu = torch.device(device).type == "cpu"
    progress = Progress("Training", len(sizes), enabled=plan.loop.show_progress, first=first)
    recipe.optimizer.zero_grad(set_to_none=True)
    end = time.time()
    for i, (x, y) in enumerate(loader, start=first):
        data_time = time.time() - end
        n = y.shape[0]
        x, y = recipe.regularise(x, y, epoch, i)
        last_of_step = (i + 1) % iter_size == 0 or i + 1 == len(sizes)
        try:
            loss, output = micro_step(model, x, y, recipe, n * world / step_images[i // iter_size],
                                      last_of_step)
        except ValueError as e:  # BatchNorm's, on a batch of one image at 1 x 1 features
            raise _one_value_batch(e, epoch, i, n, sum(sizes)) from e
        watch.see(loss, i)
        if on_cpu or progress.due(i + 1):
            watch.check()
        if last_of_step:
            optimizer_step(raw_model, recipe)
        meters.add(loss, output, y, n)
        if progress.due(i + 1):
            progress.update(i + 1, data_time, time.time() - end, *meters.averages())
        if last_of_step and control is not None:
            control.after_step(epoch, i + 1, meters, watch.check, len(sizes), loss)
        end = time.time()
    progress.finish()
    watch.check()
    return meters.reduced().averages()


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: EpochLoader, criterion: torch.nn.Module,
             amp: str = "none", show_progress: bool = True,
             confusion: Optional[torch.Tensor] = None, tta: bool = False) -> Scores:
    """Loss and top-1/top-5 accuracy (%) over the whole evaluation set, under autocast to
    ``amp`` (the recipe's): each process evaluates its shard and the sums are reduced, so the
    numbers are exact for any number of processes. ``confusion``, a (K, K) int64 tensor on the
    loader's device, receives the counts of (true class, predicted class) pairs of the whole
    set. With ``tta`` each image's logits are the mean of its own and its mirror image's (flip
    test-time augmentation)."""
    model, device = distributed.unwrap(model), loader.device
    model.eval()
    meters = Meters(device)
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
        if confusion is not None:
            confusion += confusion_counts(output, y, confusion.shape[0])
        meters.add(loss, output, y, y.shape[0])
        if progress.due(i + 1):
            progress.update(i + 1, data_time, time.time() - end, *meters.averages())
        end = time.time()
    progress.finish()
    if confusion is not None:
        distributed.all_reduce_sum(confusion)
    return meters.reduced().averages()


def resumed_at(batch: int, epoch_batches: int) -> str:
    """How an epoch line says where a resumed epoch starts."""
    if batch >= epoch_batches:
        return " (resumed after its last batch: evaluation)"
    return f" (resumed at batch {batch + 1})"


class FitResult(NamedTuple):
    """What ``fit`` computed: the best validation accuracy, and the run record (run.json's) as
    the last checkpoint saved it, with this session's wall time."""
    best_acc: float
    run_record: Optional[dict]


class _RunSaver:
    """What ``fit`` writes on the main process: checkpoints that carry ``fields`` (the Checkpoint
    fields that say what the run is; its run record's last session takes the wall time at each
    save), the
    log's rows, TensorBoard's ``board`` (``steps``: optimizer steps an epoch), and where the loop
    is (``best_acc``, ``lr``, kept current by the loop)."""

    def __init__(self, model: PreparedModel, recipe: Recipe, plan: TrainPlan,
                 log: Optional[Logger], fields: dict, board: Optional[Board], steps: int):
        self.model, self.recipe, self.log, self.fields = model, recipe, log, fields
        self.board, self.steps, self.log_every = board, steps, plan.loop.log_every
        self.folder, self.keep = plan.folder.path, plan.checkpoints.keep
        self.run_record = fields.get("run")
        self.best_acc, self.lr = plan.start.best_acc, None
        self.started = time.perf_counter()

    def log_step(self, epoch: int, next_batch: int, loss: torch.Tensor) -> None:
        """TensorBoard's training loss, every ``log_every`` optimizer steps."""
        step = epoch * self.steps + math.ceil(next_batch / self.recipe.iter_size)
        if self.board is not None and self.log_every and step % self.log_every == 0:
            self.board.step(step, loss.detach().item())

    def capture(self, epochs_done: int, acc: float, **fields: object) -> Checkpoint:
        """The Checkpoint of now, its run record with this session's wall time so far (kept,
        so the caller's run.json says what the last checkpoint says)."""
        now = dict(self.fields)
        if self.run_record:
            self.run_record = now["run"] = with_session_time(
                self.run_record, time.perf_counter() - self.started)
        return Checkpoint.capture(epochs_done, self.model.raw, self.recipe, acc, self.best_acc,
                                  {**now, "log": self.log.rows(), **fields})

    def save_position(self, epoch: int, next_batch: int, meters: Meters) -> None:
        """A recovery checkpoint: the state after this step and the place in the epoch (every
        process's meters gathered; the main process writes)."""
        every = distributed.gather_objects(meters.tolist())
        if distributed.is_main():
            position = EpochPosition(next_batch, tuple(Meters("cpu", m) for m in every), self.lr)
            save_checkpoint(self.capture(epoch, self.best_acc, position=position.as_dict()),
                            is_best=False, folder=self.folder)

    def save_epoch(self, epochs_done: int, acc: float, is_best: bool) -> None:
        save_checkpoint(self.capture(epochs_done, acc), is_best, self.folder, keep=self.keep)


def _scored_row(model: PreparedModel, loaders: Loaders, recipe: Recipe, plan: TrainPlan,
                lr: float, train: Scores, test: Scores) -> dict:
    """The epoch's log row (column -> value): the reference's five, then the EMA's and TTA's
    accuracies where the run evaluates them."""
    row = dict(zip(REFERENCE_COLUMNS, [lr, train.loss, test.loss, train.top1, test.top1]))
    if recipe.ema is not None:
        row[EMA_VALID_ACC] = evaluate(recipe.ema.module, loaders.test, recipe.eval_criterion,
                                      recipe.amp, show_progress=False).top1
    if plan.loop.tta:
        row[TTA_VALID_ACC] = evaluate(model.call, loaders.test, recipe.eval_criterion,
                                      recipe.amp, show_progress=False, tta=True).top1
    return row


def fit(model: PreparedModel, loaders: Loaders, recipe: Recipe, plan: TrainPlan,
        log: Optional[Logger], fields: dict, board: Optional[Board] = None) -> FitResult:
    """The epoch loop: train ``model`` on ``loaders.train``, evaluate on ``loaders.test``, step
    the recipe's schedule, append a row to ``log`` (None on the processes that do not log),
    save checkpoint.pth.tar (and model_best.pth.tar) in the plan's folder, recording ``fields``
    (the Checkpoint fields that say what the run is: arch, num_classes, args, run; its run
    record's last session takes the wall time at each save). Only the main process prints the
    epoch's times, logs and saves, and writes ``board`` (TensorBoard, utils.records.board) when
    given. Returns a FitResult.

    With an EMA the averaged weights are evaluated too (an extra log column) and saved in the
    checkpoint, and with ``plan.loop.tta`` the flip-TTA accuracy; the best model is chosen by the
    raw weights' plain accuracy, or their TTA one with the policy's ``best_by`` "tta"."""
    if plan.folder is None:
        raise ValueError("fit needs the plan's run folder")
    start = plan.start
    # A position at the epoch's end is a run stopped after its last step: it evaluates next.
    if start.position is not None and not start.position.batch <= len(loaders.train):
        raise CheckpointError(f"the checkpoint's position in its epoch is malformed: batch "
                              f"{start.position.batch + 1} of an epoch of {len(loaders.train)} "
                              f"batches")
    steps = math.ceil(len(loaders.train) / recipe.iter_size)  # optimizer steps an epoch
    saver = _RunSaver(model, recipe, plan, log, fields, board, steps)
    with StopSignal() as stop:
        control = StepControl(stop, plan.checkpoints.save_every, saver.save_position,
                              saver.log_step)
        for epoch in range(start.epoch, plan.epochs):
            _one_epoch(model, loaders, recipe, plan, epoch, control, saver)
            signame = stop.agreed()
            if signame:
                raise TrainingInterrupted(signame, epoch + 1)
    return FitResult(saver.best_acc, saver.run_record)


def _one_epoch(model: PreparedModel, loaders: Loaders, recipe: Recipe, plan: TrainPlan,
               epoch: int, control: StepControl, saver: _RunSaver) -> None:
    """One epoch of ``fit``: train, evaluate, step the schedule, log, save."""
    main, start = distributed.is_main(), plan.start
    resuming = epoch == start.epoch and start.position is not None
    first = start.position.batch if resuming else 0
    lr = saver.lr = start.position.lr if resuming else recipe.optimizer.param_groups[0]["lr"]
    if main:
        print(f"\nEpoch: [{epoch + 1} | {plan.epochs}] LR: {lr:f}" + (
            resumed_at(first, len(loaders.train)) if resuming else ""), flush=True)
    loaders.train.set_epoch(epoch, first)
    show = plan.loop.show_progress and main
    began = time.perf_counter()
    shown = dataclasses.replace(plan, loop=dataclasses.replace(plan.loop, show_progress=show))
    train = train_one_epoch(model.call, loaders.train, recipe, shown, epoch, control)
    train_time = time.perf_counter() - began  # the epoch's meters synced the device
    test = evaluate(model.call, loaders.test, recipe.eval_criterion, recipe.amp, show)
    images_per_second = sum(loaders.train.batch_sizes()[first:]) / train_time
    if main:
        print(f"    Epoch time: train {train_time:.2f} s ({format_rate(images_per_second)} img/s"
              f"), test {time.perf_counter() - began - train_time:.2f} s", flush=True)
    row = _scored_row(model, loaders, recipe, plan, lr, train, test)
    check_finite(epoch, row, [model.raw] + ([recipe.ema.module] if recipe.ema is not None
                                           else []))
    test_acc = row[TTA_VALID_ACC if plan.checkpoints.best_by == "tta" else VALID_ACC]
    if not recipe.per_iteration:
        recipe.scheduler.step()
    is_best = test_acc > saver.best_acc
    saver.best_acc = max(test_acc, saver.best_acc)
    if main:
        # The row first: a crash before the save leaves one row too many, which resume cuts
        # back to the checkpoint's epoch count (never a missing row). The checkpoint holds the
        # rows too, so a lost log can be rebuilt.
        saver.log.append(list(row.values()))
        if saver.board is not None:
            saver.board.epoch((epoch + 1) * saver.steps, {
                "train_loss": train.loss, "train_acc": train.top1, "train_top5": train.top5,
                "valid_loss": test.loss, "valid_acc": row[VALID_ACC], "valid_top5": test.top5,
                "lr": lr, "images_per_second": images_per_second})
        with control.stop.critical():
            saver.save_epoch(epoch + 1, test_acc, is_best)
