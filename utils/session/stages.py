"""The stages of a run between its device and its end: the flags read with a resumed
checkpoint's merged in, the checks that come before any data is read, the plan a resumed run
continues, and training with its log, checkpoints, curves and run record."""
import contextlib
import math
import os
from typing import NamedTuple, Optional

import torch.nn as nn

from .. import distributed
from ..data.loaders import BatchFormat, Loaders
from ..records.columns import VALID_ACC, LogColumns
from ..records.board import Board, check_board_folder, require_tensorboard
from ..records.logger import Logger, save_curves
from ..records.record import finish_record, new_record, script_of, write_record
from ..records.run_folder import FolderUse, RunFolder, check_folder, check_writable
from ..settings.flag import UsageError
from ..settings.flags import ScriptFlags
from ..settings.resume import Resumed
from ..settings.values import RunSettings
from ..train.checkpoint import (Checkpoint, CheckpointError, read_checkpoint,
                                resolve_checkpoint_path)
from ..train.engine import fit
from ..train.fine_tune import InitialWeights
from ..train.weights_file import is_weights_file
from ..train.plan import EpochPosition, PreparedModel, StartPoint, TrainPlan
from ..train.recipe import Recipe, apply_hyperparameters
from ..train.stopping import ImmediateStop
from .auto_resume import auto_resume
from .scores import score_test_split

__all__ = ["ReadSettings", "read_settings", "resumed_of", "check_resume", "fresh_folder",
           "check_run_folder", "say_held_out", "start_plan", "RunData", "checkpoint_fields",
           "train_and_log"]


class ReadSettings(NamedTuple):
    """A command line read: its RunSettings, and the Checkpoint of --resume (or None)."""
    settings: RunSettings
    checkpoint: Optional[Checkpoint]


def read_settings(flags: ScriptFlags, argv: Optional[list] = None) -> ReadSettings:
    """The settings of a command line: argv parsed, the resumed checkpoint read (found by
    --auto-resume, utils.session.auto_resume) and its recorded flags merged in
    (utils.settings.resume), every value and combination checked, all before any data is read or
    CUDA is touched."""
    parsed = flags.parse(argv)
    checkpoint, resumed = None, None
    if flags.invocation(parsed).auto_resume:
        parsed, checkpoint = auto_resume(flags, parsed)
    resume = flags.invocation(parsed).resume
    if resume:
        path = resolve_checkpoint_path(resume)
        if is_weights_file(path):
            raise UsageError(f"{path} holds a model's weights (safetensors) and no training "
                             f"state to resume: start a run from them with --weights {path} "
                             f"(-e --weights {path} scores them)")
        checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path)
        resumed = resumed_of(path, checkpoint)
    return ReadSettings(flags.settings(parsed, resumed), checkpoint)


def resumed_of(path: str, checkpoint: Checkpoint) -> Resumed:
    """What merging the recorded flags needs of ``checkpoint``, read from ``path``."""
    record = checkpoint.run or {}
    run_flags = record.get("flags")
    return Resumed(path, checkpoint.args or {}, checkpoint.arch, bool(checkpoint.ema_state_dict),
                   script_of(record), run_flags if isinstance(run_flags, dict) else {})


def say_held_out(fraction: float, loaders: Loaders) -> None:
    """One line for --val-split: how many training images are held out, and what is scored
    when."""
    if fraction and distributed.is_main():
        held, test = sum(loaders.test.batch_sizes()), sum(loaders.final.batch_sizes())
        print(f"    --val-split {fraction:g}: {held} training images held out (class-balanced, "
              f"the same for every seed); every epoch is evaluated on them, the {test} test "
              f"images once, at the end")


def check_resume(settings: RunSettings, checkpoint: Optional[Checkpoint],
                 num_classes: int) -> int:
    """Whether the resumed ``checkpoint`` fits this run, whose data has ``num_classes``: its
    class count, and epochs left to train (unless evaluating). Returns the class count (the
    data's, which the model is built with)."""
    if checkpoint is None:
        return num_classes
    saved = checkpoint.num_classes
    if saved is not None and saved != num_classes:
        raise CheckpointError(f"the checkpoint's model has {saved} classes, this run's data "
                              f"has {num_classes} (a cifar.py run on an ImageFolder from before "
                              f"its model took the folder's class count has -d's)")
    done = checkpoint.epoch
    if not settings.evaluate and done >= settings.epochs:
        raise UsageError(f"nothing to train: the checkpoint has done {done} epochs and --epochs "
                         f"is {settings.epochs}; raise --epochs to train on")
    return num_classes


def fresh_folder(settings: RunSettings) -> bool:
    """Whether the run starts its folder afresh: not a --resume, or one into another folder
    (-c) than its checkpoint's."""
    if not settings.resume:
        return True
    resumed = os.path.dirname(os.path.abspath(resolve_checkpoint_path(settings.resume)))
    return os.path.abspath(settings.run_folder) != resumed


def check_run_folder(settings: RunSettings) -> None:
    """Before any long work: the run folder can be written, no other run holds it, a fresh
    run does not land on a run already there unless --replace (utils.records.run_folder), and
    --tensorboard has its package."""
    if settings.loop.tensorboard:
        require_tensorboard()
    if not distributed.is_main():
        # Rank 0 writes the folder and speaks for the run; under torchrun the others probing
        # it at once would race (one removing the folder another is writing its test file in).
        return
    check_writable(settings.run_folder)
    check_folder(settings.run_folder, fresh=fresh_folder(settings), replace=settings.replace)
    if settings.loop.tensorboard:
        check_board_folder(settings.run_folder)


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
                     folder=FolderUse(settings.run_folder, fresh=fresh_folder(settings),
                                      replace=settings.replace),
                     checkpoints=settings.checkpoints, loop=settings.loop)


class RunData(NamedTuple):
    """What a run's data and starting point add to its record: the class count and names (in
    label order; a dataset without names has its classes numbered), and the initial weights
    (--weights, --pretrained) or None, and the batches' format (its normalisation, which
    predict.py repeats), and the named dataset its images are (cifar.py's -d read from that
    dataset's own files; None for an ImageFolder tree, whatever -d says)."""
    num_classes: int
    classes: list
    initial: Optional[InitialWeights] = None
    fmt: Optional[BatchFormat] = None
    dataset: Optional[str] = None

    def names(self) -> list:
        """A name per class: the data's, then numbers for any it does not name."""
        return list(self.classes[:self.num_classes]) + [
            str(i) for i in range(len(self.classes), self.num_classes)]


def checkpoint_fields(settings: RunSettings, data: RunData,
                      checkpoint: Optional[Checkpoint] = None) -> dict:
    """What a checkpoint records about its run (Checkpoint fields): the arch, the class count
    and names, the recorded flags, the run record of run.json (utils.records.record: a resumed
    run adds its session to the checkpoint's; a fresh one names its initial weights); and, from
    the ``checkpoint`` resumed, its log rows (to rebuild a lost log.txt)."""
    previous = checkpoint.run if checkpoint is not None else None
    first_epoch = (checkpoint.epoch if checkpoint is not None else 0) + 1
    changed = {name: {"from": old, "to": new, "from_epoch": first_epoch}
               for name, (old, new) in settings.changed.items()}
    record = new_record(settings.command[0], settings.command[1:], settings.flags,
                        settings.recorded, previous, changed)
    record["classes"] = data.names()
    record["dataset"] = data.dataset
    if data.initial is not None:
        record["initial_weights"] = data.initial.as_record()
    elif previous and "initial_weights" in previous:  # what the resumed run started from
        record["initial_weights"] = previous["initial_weights"]
    fields = {"arch": settings.model.arch, "num_classes": data.num_classes,
              "classes": data.names(), "args": settings.recorded, "run": record}
    if data.fmt is not None:
        fields["normalisation"] = {"mean": [float(v) for v in data.fmt.mean],
                                   "std": [float(v) for v in data.fmt.std]}
    if checkpoint is not None and checkpoint.log is not None:
        fields["log"] = checkpoint.log
    return fields


def open_board(plan: TrainPlan, loaders: Loaders, recipe: Recipe,
               fields: dict) -> Optional[Board]:
    """The run's TensorBoard files (--tensorboard), continued at the optimizer step the run
    starts from; None without --tensorboard."""
    if not plan.loop.tensorboard:
        return None
    steps = math.ceil(len(loaders.train) / recipe.iter_size)
    position = plan.start.position
    done = plan.start.epoch * steps + (math.ceil(position.batch / recipe.iter_size)
                                       if position is not None else 0)
    return Board(plan.folder.path, done + 1, fields["run"].get("flags"))


def train_and_log(model: PreparedModel, loaders: Loaders, recipe: Recipe, plan: TrainPlan,
                  fields: dict) -> float:
    """Write run.json, open log.txt (a resumed log cut back to the checkpoint's epochs, or
    rebuilt from the rows ``fields`` carries from the checkpoint; with an EMA a sixth column),
    run the engine's epoch loop, score the test split once where the epochs were evaluated on a
    held-out split (--val-split), then draw log.eps / log.png and write the result into
    run.json. Only the main process logs. Returns the best validation accuracy."""
    fields = dict(fields)
    saved_log = fields.pop("log", None)
    log = None
    # Rank 0 writes the folder, and holds it while it does (utils.records.run_folder).
    folder = (RunFolder(plan.folder, fields["run"]["sessions"][-1]["command"])
              if distributed.is_main() else contextlib.nullcontext())
    with folder:
        if distributed.is_main():
            write_record(plan.folder.path, fields["run"])
            log = Logger(os.path.join(plan.folder.path, "log.txt"), resume=plan.start.resumed,
                         keep_rows=plan.start.epoch if plan.start.resumed else None,
                         saved=saved_log)
            log.set_names(LogColumns(ema=recipe.ema is not None, tta=plan.loop.tta).names)
        board = open_board(plan, loaders, recipe, fields) if log is not None else None
        try:
            result = fit(model, loaders, recipe, plan, log, fields, board)
        except ImmediateStop as e:
            if os.path.isfile(os.path.join(plan.folder.path, "checkpoint.pth.tar")):
                raise
            raise ImmediateStop(e.signame, checkpointed=False) from None
        finally:
            if log is not None:
                log.close()
            if board is not None:
                board.close()
        test = (score_test_split(model, loaders.final, recipe, plan.folder.path)
                if loaders.final is not None else None)
        if log is not None:
            if plan.loop.curves:
                save_curves(log.fpath)
            accuracies = log.numbers[VALID_ACC]
            finish_record(plan.folder.path, result.run_record, best_acc=result.best_acc,
                          final_acc=accuracies[-1] if accuracies else None,
                          epochs=len(accuracies), test=test)
    print(f"Best acc: {result.best_acc:.2f}")
    if distributed.is_main():
        curves = "log.png, " if plan.loop.curves else ""
        print(f"Run folder: {plan.folder.path} (log.txt, {curves}run.json, checkpoint.pth.tar, "
              f"model_best.pth.tar)")
    return result.best_acc
