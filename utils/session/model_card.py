"""The model card export.py writes beside every export (OUTPUT.md), in Hugging Face's shape:
YAML front matter (library_name, tags, datasets, metrics, and a model-index of the run's
accuracies), then what the model is, its data and split, the command that trained it, its
final, best and test accuracies, the input it takes, and how to load it in three lines.

Every number and name comes from the run: its checkpoint (architecture, options, classes,
input contract) and its record (run.json beside the checkpoint, whose result holds the
accuracies; a safetensors export carries that record in its metadata). Nothing is typed by
hand; what the run did not record is said to be unknown.
"""
import json
import math
import os
from typing import NamedTuple, Optional

from ..records.record import script_of
from ..records.summary import read_record, scored_test_split
from ..train.checkpoint import Checkpoint, resolve_checkpoint_path
from .trained import TrainedRun

__all__ = ["run_record", "model_card", "hub_entry"]

# cifar.py's -d names as the Hugging Face Hub names the datasets.
HUB_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "mnist": "mnist",
                "fashionmnist": "fashion_mnist", "kmnist": "kmnist", "svhn": "svhn"}
NORM_NAMES = {"bn": "BatchNorm", "gn": "GroupNorm", "ln": "LayerNorm (GroupNorm, 1 group)",
              "in": "InstanceNorm (GroupNorm, 1 group per channel)",
              "bcn": "Batch-Channel Normalization"}


def run_record(source: str, checkpoint: Checkpoint) -> dict:
    """The run record of the run ``source`` names: run.json beside its checkpoint when that is
    the same run's (its first session is the checkpoint's), checked as summarize.py checks it;
    else the record the checkpoint holds (which has no result); {} without either."""
    held = checkpoint.run or {}
    path = os.path.join(os.path.dirname(os.path.abspath(resolve_checkpoint_path(source))),
                        "run.json")
    if not os.path.isfile(path):
        return held
    record = read_record(path)
    first = (record.get("sessions") or [None])[0]
    if held and first != (held.get("sessions") or [None])[0]:
        return held  # run.json of another run (a checkpoint copied into a folder)
    scored_test_split(record, path)  # its test scores checked before they are printed
    return record


def hub_entry(script: Optional[str], arch: str) -> str:
    """hubconf.py's entry point of ``arch`` trained by ``script`` (cifar.py's are cifar_*)."""
    return f"cifar_{arch}" if script == "cifar.py" else arch


class _Facts(NamedTuple):
    """What a card says of a run, read once from its record and checkpoint."""
    recorded: dict
    sessions: list
    script: Optional[str]
    dataset: Optional[str]  # the named dataset read (None: an ImageFolder tree, or unknown)
    dataset_known: bool  # whether the record says (records from before it did not)
    scores: list


def _facts(trained: TrainedRun, record: dict) -> _Facts:
    recorded = record.get("recorded") or (trained.checkpoint.args if trained.checkpoint
                                          else None) or {}
    sessions = [s for s in record.get("sessions") or [] if isinstance(s, dict)]
    result = record.get("result") if isinstance(record.get("result"), dict) else {}
    dataset = record.get("dataset")
    return _Facts(recorded, sessions, script_of(record),
                  dataset if dataset in HUB_DATASETS else None, "dataset" in record,
                  _scores(result))


def model_card(trained: TrainedRun, record: dict, output: str, fmt: str, ema: bool) -> str:
    """The card of ``trained`` (rebuilt from its checkpoint) exported to ``output`` in ``fmt``
    (exported, state_dict, safetensors), from its run ``record`` (run_record)."""
    facts = _facts(trained, record)
    dataset = facts.dataset
    lines = ["---", "library_name: pytorch", "pipeline_tag: image-classification", "tags:",
             "- image-classification", f"- {trained.arch}"]
    model = {**facts.recorded, **trained.options}  # an l_* name's pair is recorded, not an option
    lines += [f"- {tag}" for tag in _norm_tags(model)]
    if dataset:
        lines += ["datasets:", f"- {HUB_DATASETS[dataset]}"]
    lines += ["metrics:", "- accuracy"]
    if facts.scores:
        lines += ["model-index:", f"- name: {trained.arch}", "  results:",
                  "  - task:", "      type: image-classification", "    dataset:",
                  f"      name: {dataset or 'imagefolder'}",
                  f"      type: {HUB_DATASETS.get(dataset, 'imagefolder')}", "    metrics:"]
        for name, value in facts.scores:
            lines += ["    - type: accuracy", f"      value: {value:.2f}", f"      name: {name}"]
    lines += ["---", ""]
    lines += _body(trained, facts, output, fmt, ema)
    return "\n".join(lines) + "\n"


def _finite(value: object) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _scores(result: dict) -> list:
    """[(name, top-1 %)] of a run record's result: validation best and final, then the test
    split's where a --val-split run scored it."""
    scores = [(name, _finite(result.get(key))) for key, name in (
        ("best_acc", "best validation accuracy (top-1 %)"),
        ("final_acc", "final validation accuracy (top-1 %)"))]
    test = result.get("test") if isinstance(result.get("test"), dict) else {}
    for key, score in test.items():
        top1 = _finite(score.get("top1")) if isinstance(score, dict) else None
        scores.append((f"test accuracy of the {key} weights (top-1 %)", top1))
    return [(name, value) for name, value in scores if value is not None]


def _norm_tags(options: dict) -> list:
    tags = []
    if options.get("ws"):
        tags.append("weight-standardization")
    norm = options.get("norm")
    if norm in NORM_NAMES:
        tags.append({"bn": "batch-normalization", "gn": "group-normalization",
                     "bcn": "batch-channel-normalization"}.get(norm, f"{norm}-normalization"))
    return tags


def _pair(options: dict) -> str:
    norm = options.get("norm")
    words = NORM_NAMES.get(norm, "its architecture's normalisation")
    if norm in ("gn", "bcn") and "gn_groups" in options:
        words += f" ({options['gn_groups']} groups at most per layer)"
    if options.get("ws"):
        words += f" with Weight Standardization ({options.get('ws_form', 'std')} form)"
    return words


def _body(trained: TrainedRun, facts: _Facts, output: str, fmt: str, ema: bool) -> list:
    contract, classes = trained.contract, trained.contract.classes
    recorded, sessions, script, scores = facts.recorded, facts.sessions, facts.script, \
        facts.scores
    lines = [f"# {trained.arch}", "",
             f"An image classifier: {trained.arch} from this project's "
             f"{script or 'training scripts'}, {_pair({**recorded, **trained.options})}, "
             f"{trained.num_classes} classes. "
             + ("These are the exponential moving average of its weights (--ema)."
                if ema else "These are its trained weights."),
             "", "Constructor options: `" + json.dumps(trained.options, sort_keys=True) + "`",
             "", "## Data", ""]
    split = recorded.get("val_split")
    source = (facts.dataset or ("the ImageFolder tree of its --data" if facts.dataset_known
                                else "not recorded (a run from before run.json named it)"))
    lines.append(f"Dataset: {source}; classes, in "
                 f"output order: "
                 + (", ".join(classes[:20]) + (f", ... ({len(classes)} in all)"
                                              if len(classes) > 20 else "")
                    if classes else "not recorded") + ".")
    lines += ["", (f"Validation: {split:g} of the training images held out (class-balanced); "
                   f"the test split scored once at the end." if split else
                   "Validation: the test split, every epoch (the reference's way).")]
    lines += ["", "## Training", "", "The commands that trained it (one per session):", "",
              "```"] + [" ".join(["python"] + [str(a) for a in s.get("command") or []])
                       for s in sessions] + ["```"] if sessions else [
        "", "## Training", "", "The run record is missing: the commands are unknown."]
    lines += ["", "## Results", ""]
    if scores:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.2f} |" for name, value in scores]
    else:
        lines.append("No accuracy was recorded (run.json's result is missing).")
    lines += ["", "## Input", "",
              "RGB images, " + (f"the shorter side resized to {contract.resize} and "
                                 f"centre-cropped to {contract.size} x {contract.size}"
                                 if contract.resize else
                                 f"resized to {contract.size} x {contract.size}")
              + f" ({contract.interpolation}, antialiased), as float32 NCHW, "
              f"(x / 255 - mean) / std with mean {list(contract.mean)} and std "
              f"{list(contract.std)}; the output is one logit per class."]
    lines += ["", "## How to load", "", "```python"] + _loading(trained.arch, script, output,
                                                               fmt) + ["```"]
    return lines


def _loading(arch: str, script: Optional[str], output: str, fmt: str) -> list:
    name = os.path.basename(output)
    if fmt == "safetensors":
        return ["import torch",
                f"model = torch.hub.load(\"PATH/TO/gn-ws\", \"{hub_entry(script, arch)}\", "
                f"source=\"local\", weights=\"{name}\")",
                "logits = model(images)  # images as the Input section says"]
    if fmt == "exported":
        return ["import torch", f"model = torch.export.load(\"{name}\").module()",
                "logits = model(images)  # images as the Input section says"]
    registry = "models.cifar.MODELS" if script == "cifar.py" else "models.imagenet.ARCHS"
    return ["import json, torch, models; from models.deploy import plain_convs",
            f"about = json.load(open(\"{name}.json\")); model = plain_convs({registry}["
            f"about[\"arch\"]](num_classes=about[\"num_classes\"], **about[\"options\"]))",
            f"model.load_state_dict(torch.load(\"{name}\", weights_only=True)); "
            f"logits = model.eval()(images)"]
