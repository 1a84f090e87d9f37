"""Initial weights for a run (``--weights``, ``--pretrained``): a checkpoint's tensors loaded
strictly, except the classifier when the class counts differ (fine-tuning onto other classes);
weights in the BCN authors' form are read into ours first (utils.train.foreign).

A tensor is the classifier's when its first dimension is the class count, in the model and in
the checkpoint alike, and the rest of its shape agrees (the last Linear's weight and bias, a 1x1
conv classifier's). Those keep the model's fresh initialisation; every other tensor must fit
exactly, so another backbone (resnet18 weights into resnet34) is still refused in one line
naming the keys (utils.train.checkpoint.load_weights)."""
import math
import os
from typing import NamedTuple, Optional, Union

import torch.nn as nn

from .checkpoint import (Checkpoint, WeightsMismatch, load_weights, read_checkpoint,
                         unwrap_state_dict)
from .foreign import AuthorsForm, from_bcn_authors, micro_batch_speeds

__all__ = ["InitialWeights", "initialise_from", "classifier_keys"]


class InitialWeights(NamedTuple):
    """What a run started from: the file (or source), the checkpoint's class count and the
    model's, the model's tensors left fresh (its classifier, when the counts differ), and what
    was read in another project's form (utils.train.foreign), if anything."""
    source: str
    from_classes: Optional[int]
    to_classes: int
    fresh: tuple
    form: str = ""

    def as_record(self) -> dict:
        """run.json's words for it."""
        record = {"file": self.source, "classes": {"from": self.from_classes,
                                                    "to": self.to_classes},
                  "fresh": list(self.fresh)}
        return {**record, "form": self.form} if self.form else record

    def line(self) -> str:
        """The one line a run prints about it."""
        form = f" ({self.form})" if self.form else ""
        if not self.fresh:
            return f"==> Initial weights: {self.source}{form}"
        return (f"==> Initial weights: {self.source}{form}, fine-tuned from "
                f"{self.from_classes} to {self.to_classes} classes: left out and freshly "
                f"initialised {', '.join(self.fresh)}")


def classifier_keys(own: dict, state: dict, num_classes: int) -> list:
    """The keys of ``own`` (a model's state_dict) whose tensors in ``state`` differ only in a
    first dimension that is the class count: the classifier's, when the counts differ."""
    keys = []
    for key, tensor in own.items():
        theirs = state.get(key)
        if (theirs is not None and tensor.ndim >= 1 and tensor.shape[0] == num_classes
                and theirs.ndim == tensor.ndim and theirs.shape[0] != num_classes
                and tuple(theirs.shape[1:]) == tuple(tensor.shape[1:])):
            keys.append(key)
    return keys


def initialise_from(model: nn.Module, source: Union[str, os.PathLike, Checkpoint, dict],
                    num_classes: int, name: Optional[str] = None) -> InitialWeights:
    """``source``'s weights into ``model`` (of ``num_classes`` outputs): strictly, but for a
    classifier of another class count, which keeps its fresh initialisation. ``name``: how the
    line and run.json call the source (its path by default)."""
    checkpoint = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    state = unwrap_state_dict(checkpoint)
    own = model.state_dict()
    form = ""
    authors = from_bcn_authors(state, own)
    if authors is not None:
        state, form = authors.state, bcn_authors_form(authors, model)
        checkpoint = state
    head = classifier_keys(own, state, num_classes)
    counts = {state[key].shape[0] for key in head}
    saved = getattr(checkpoint, "num_classes", None)
    label = name or str(source)
    if len(counts) == 1 and (saved is None or saved in counts):
        load_weights(model, {**state, **{key: own[key] for key in head}})
        return InitialWeights(label, counts.pop(), num_classes, tuple(head), form)
    load_weights(model, checkpoint)  # fits exactly, or one line naming what does not
    return InitialWeights(label, saved if saved is not None else num_classes, num_classes, (),
                          form)


def bcn_authors_form(authors: AuthorsForm, model: nn.Module) -> str:
    """The words for weights read in the BCN authors' form. Their estimate speed is checked
    against --bcn-speed where it acts (micro-batches, --ghost-batch), so a run trains on as
    theirs did; without micro-batches the speed does not act and is left out."""
    speeds = {s for s in authors.speeds if s > 0}
    acting = micro_batch_speeds(model)
    # The file holds a float32 buffer: 0.05 there is 0.0500000007.
    if speeds and acting and not all(any(math.isclose(s, a, rel_tol=1e-6) for a in acting)
                                     for s in speeds):
        theirs = ", ".join(f"{s:g}" for s in sorted(speeds))
        ours = ", ".join(f"{s:g}" for s in sorted(acting))
        raise WeightsMismatch(f"the file is in the BCN authors' form with an estimate speed of "
                              f"{theirs}, and this run's micro-batches use --bcn-speed {ours}: "
                              f"give --bcn-speed {min(speeds):g} to train on as they did")
    words = "the BCN authors' form: pbn. keys and (1, G, 1) affines mapped"
    if speeds and not acting:
        words += f"; its estimate speed {min(speeds):g} does not act without --ghost-batch"
    return words

