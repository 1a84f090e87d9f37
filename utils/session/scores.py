"""Scores of a trained model: ``-e``'s, on the validation data with its per-class report, and
the test split's at the end of a run that chose its model on a held-out split (--val-split)."""
import os
import sys
import torch

from .. import distributed
from ..data.loaders import EpochLoader
from ..records.class_report import write_class_report
from ..train.checkpoint import CheckpointError, load_weights, read_checkpoint
from ..train.engine import all_finite, evaluate
from ..train.meters import Scores
from ..train.plan import PreparedModel, TrainPlan
from ..train.recipe import Recipe

__all__ = ["report_evaluation", "score_test_split"]


def report_evaluation(model: PreparedModel, loader: EpochLoader, recipe: Recipe, plan: TrainPlan,
                      classes: list, num_classes: int) -> Scores:
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
                                plan.loop.show_progress, confusion)
    print(f" Test Loss:  {loss:.8f}, Test Acc:  {top1:.2f}, Top-5:  {top5:.2f}")
    if plan.loop.tta:
        tta_loss, tta_top1, tta_top5 = evaluate(model.call, loader, recipe.eval_criterion,
                                                recipe.amp, show_progress=False, tta=True)
        print(f" TTA  Loss:  {tta_loss:.8f}, TTA  Acc:  {tta_top1:.2f}, Top-5:  {tta_top5:.2f}")
    if recipe.ema is not None and recipe.ema.updates > 0:
        ema_loss, ema_top1, ema_top5 = evaluate(recipe.ema.module, loader, recipe.eval_criterion,
                                                recipe.amp, show_progress=False)
        print(f" EMA  Loss:  {ema_loss:.8f}, EMA  Acc:  {ema_top1:.2f}, Top-5:  {ema_top5:.2f}")
    if distributed.is_main():
        try:
            text, picture = write_class_report(confusion, classes, plan.folder.path)
            print(f" Per-class accuracy: {text}\n Confusion matrix:   {picture}")
        except OSError as e:
            print(f"warning: could not write the per-class report to {plan.folder.path}: "
                  f"{e.strerror or e}", file=sys.stderr)
    return Scores(loss, top1, top5)


def score_test_split(model: PreparedModel, loader: EpochLoader, recipe: Recipe,
                     folder: str) -> dict:
    """The end of a run that evaluated a held-out split every epoch: the test split (``loader``)
    scored once, for the final weights, their EMA where the run keeps one, and model_best's
    (loaded into ``model`` last). Printed, and returned as run.json's ``test``:
    {"final" | "ema" | "best": {"loss", "top1", "top5"}}."""
    scores = {"final": evaluate(model.call, loader, recipe.eval_criterion, recipe.amp,
                                show_progress=False)}
    if recipe.ema is not None and recipe.ema.updates > 0:
        scores["ema"] = evaluate(recipe.ema.module, loader, recipe.eval_criterion, recipe.amp,
                                 show_progress=False)
    best = os.path.join(folder, "model_best.pth.tar")
    if os.path.isfile(best):
        load_weights(model.raw, read_checkpoint(best))
        scores["best"] = evaluate(model.call, loader, recipe.eval_criterion, recipe.amp,
                                  show_progress=False)
    if distributed.is_main():
        print("\nThe test split, scored once (the epochs were evaluated on the held-out split):")
        for name, (loss, top1, top5) in scores.items():
            print(f" Test {name:<5} Loss:  {loss:.8f}, Acc:  {top1:.2f}, Top-5:  {top5:.2f}")
    return {name: score._asdict() for name, score in scores.items()}
