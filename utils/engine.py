"""The training engine both scripts share: one training epoch with gradient accumulation, an
exact evaluation, and the epoch loop that logs and checkpoints.

One step: uint8 batch on the device -> crop/flip -> normalise (the loader) -> batch regularisers
(cutout, mixup, ...: utils.augment) -> model under autocast -> loss scaled by this micro-batch's
share of the step -> backward -> after the step's last micro-batch: optimizer step, per-iteration
LR schedule, EMA update -> meters -> progress line.
"""
import contextlib
import signal
import time

import torch

from . import distributed
from .checkpoint import save_checkpoint, training_state
from .eval import confusion_counts, topk_correct
from .loaders import REGULARISE, mixed_seed
from .progress import Progress

__all__ = ["NonFiniteLoss", "TrainingInterrupted", "StopSignal", "autocast", "train_one_epoch",
           "evaluate", "fit"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLoss(Exception):
    def __init__(self, epoch, batch):
        super().__init__(f"loss became non-finite at epoch {epoch + 1}, batch {batch + 1}; stopped "
                         f"without saving, the last checkpoint is the last good one")


class TrainingInterrupted(Exception):
    def __init__(self, signame, resume_epoch):
        """``resume_epoch``: the 0-based epoch a --resume of the last checkpoint starts with."""
        super().__init__(f"stopped by {signame} after the step in flight; --resume continues "
                         f"with epoch {resume_epoch + 1}" + (
                             " (the interrupted epoch restarts)" if resume_epoch else ""))
        self.signame = signame


class StopSignal:
    """Records SIGTERM/SIGINT instead of dying mid-step, so the engine can stop between steps.
    A second signal of the same kind exits at once."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def autocast(device, amp):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[amp])


def _no_sync(model, skip):
    return model.no_sync() if skip and hasattr(model, "no_sync") else contextlib.nullcontext()


def batch_generator(seed, epoch, batch):
    """The CPU generator of one batch's regularisers: from (seed, epoch, batch, rank) alone, so
    a resumed run draws what an uninterrupted one does."""
    return torch.Generator().manual_seed(mixed_seed(seed, epoch, REGULARISE, batch,
                                                    distributed.rank()))


def train_one_epoch(model, loader, criterion, optimizer, *, epoch, device, iter_size=1,
                    amp="none", scaler=None, show_progress=True, stop=None, batch_augment=None,
                    seed=0, iteration_scheduler=None, ema=None):
    """Train one epoch; returns (loss, top1 %, top5 %) averaged over this process's images.

    The optimizer steps once every ``iter_size`` micro-batches. Each micro-batch's mean loss is
    weighted by its share of the images of its step (1/iter_size when all are full), so a step
    computes the mean loss over all its images whatever the split into micro-batches or
    processes (DDP averages gradients over processes, hence the factor world).
    ``batch_augment`` (utils.augment.BatchAugment) transforms each batch and its targets;
    ``iteration_scheduler`` steps after every optimizer step, and ``ema`` (an AveragedModel)
    averages the weights after it. Accuracy with mixed targets counts the largest target."""
    model.train()
    sizes = loader.batch_sizes()
    world = distributed.world_size()
    step_images = [sum(sizes[s:s + iter_size]) for s in range(0, len(sizes), iter_size)]
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, top1, top5
    count = scored = 0
    raw_model = distributed.unwrap(model)
    # The first non-finite batch, recorded on the device: checking it every batch would stall a
    # GPU on a host sync, so it is read where the host syncs anyway (CPU: every batch).
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    on_cpu = torch.device(device).type == "cpu"
    progress = Progress("Training", len(sizes), enabled=show_progress)
    optimizer.zero_grad(set_to_none=True)
    end = time.time()
    for i, (x, y) in enumerate(loader):
        data_time = time.time() - end
        n = y.shape[0]
        if batch_augment is not None and batch_augment.enabled:
            x, y = batch_augment(x, y, batch_generator(seed, epoch, i))
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
        if (on_cpu or progress.due(i + 1)) and first_bad >= 0:
            raise NonFiniteLoss(epoch, int(first_bad))
        if last_of_step:
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
        if last_of_step and stop is not None and stop.received:
            raise TrainingInterrupted(stop.received, epoch)
        end = time.time()
    progress.finish()
    if first_bad >= 0:
        raise NonFiniteLoss(epoch, int(first_bad))
    t = totals.tolist()
    return t[0] / count, 100 * t[1] / scored, 100 * t[2] / scored


@torch.no_grad()
def evaluate(model, loader, criterion, *, device, amp="none", show_progress=True,
             confusion=None):
    """Loss and top-1/top-5 accuracy (%) over the whole evaluation set: each process evaluates
    its shard and the sums are reduced, so the numbers are exact for any number of processes.
    ``confusion``, a (K, K) int64 tensor on ``device``, receives the counts of (true class,
    predicted class) pairs of the whole set."""
    model = distributed.unwrap(model)
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


def fit(*, model, raw_model, train_loader, test_loader, criterion, optimizer, scheduler,
        device, epochs, start_epoch, best_acc, logger, checkpoint_dir, run_info, iter_size=1,
        amp="none", scaler=None, show_progress=True, eval_criterion=None, batch_augment=None,
        seed=0, ema=None):
    """The epoch loop: train, evaluate, step the schedule, log a row, save checkpoint.pth.tar
    (and model_best.pth.tar). Only the main process prints the epoch's times, logs and saves.
    Returns the best accuracy.

    A schedule with ``per_iteration`` set steps after every optimizer step, any other once per
    epoch. With ``ema`` the averaged weights are evaluated too (an extra log column) and saved
    in the checkpoint; the best model is chosen by the raw weights' accuracy."""
    main = distributed.is_main()
    eval_criterion = eval_criterion or criterion
    per_iteration = getattr(scheduler, "per_iteration", False)
    with StopSignal() as stop:
        for epoch in range(start_epoch, epochs):
            lr = optimizer.param_groups[0]["lr"]
            if main:
                print(f"\nEpoch: [{epoch + 1} | {epochs}] LR: {lr:f}", flush=True)
            train_loader.set_epoch(epoch)
            start = time.perf_counter()
            train_loss, train_acc, _ = train_one_epoch(
                model, train_loader, criterion, optimizer, epoch=epoch, device=device,
                iter_size=iter_size, amp=amp, scaler=scaler,
                show_progress=show_progress and main, stop=stop, batch_augment=batch_augment,
                seed=seed, iteration_scheduler=scheduler if per_iteration else None, ema=ema)
            train_time = time.perf_counter() - start  # the epoch's meters synced the device
            test_loss, test_acc, _ = evaluate(model, test_loader, eval_criterion, device=device,
                                              amp=amp, show_progress=show_progress and main)
            if main:
                images = sum(train_loader.batch_sizes())
                print(f"    Epoch time: train {train_time:.2f} s ({images / train_time:.0f} img/s"
                      f"), test {time.perf_counter() - start - train_time:.2f} s", flush=True)
            row = [lr, train_loss, test_loss, train_acc, test_acc]
            if ema is not None:
                row.append(evaluate(ema.module, test_loader, eval_criterion, device=device,
                                    amp=amp, show_progress=False)[1])
            if not per_iteration:
                scheduler.step()
            is_best = test_acc > best_acc
            best_acc = max(test_acc, best_acc)
            if main:
                # The row first: a crash before the save leaves one row too many, which resume
                # cuts back to the checkpoint's epoch count (never a missing row).
                logger.append(row)
                save_checkpoint(training_state(
                    epoch + 1, raw_model, optimizer, scheduler, scaler, test_acc, best_acc,
                    run_info, ema), is_best, checkpoint_dir)
            if stop.received:
                raise TrainingInterrupted(stop.received, epoch + 1)
    return best_acc
