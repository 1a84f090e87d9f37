"""Results over seeds: run folders grouped, each group's final and best validation accuracy as
mean +- std, median and n, and its mean curve with a min-max band.

A group is either named with a glob (``LABEL=GLOB``), or, by default, made of the runs whose
recorded flags (run.json's ``recorded``) are equal once the seed is set aside: the flags that
differ between groups name them ("arch=l_resnet"). std is the sample standard deviation
(n - 1 in the denominator); None (n/a) for a single run, where it is undefined.
"""
import dataclasses
import glob
import json
import os
import statistics
from typing import Iterable, Optional, Sequence

from ..files import read_regular
from .logger import LogError, read_log
from .columns import VALID_ACC

__all__ = ["Run", "read_run", "read_record", "scored_test_split", "distinct_folders",
           "group_by_flags", "group_by_globs", "Stats", "stats", "final_and_best", "mean_curve"]

COLUMN = VALID_ACC
IGNORED = ("manualSeed",)  # what differs between the runs of one group


@dataclasses.dataclass(frozen=True)
class Run:
    """A run folder as summarize.py reads it: its Valid Acc. per epoch, the flags its run.json
    records (empty without one), the epochs it was asked to train (None: unknown), and, for a
    run that held out a validation split, the test split's top-1 of its final and best weights
    ({"final": %, "best": %}; empty otherwise)."""
    folder: str
    accuracies: tuple
    recorded: dict
    planned_epochs: Optional[int] = None
    test: dict = dataclasses.field(default_factory=dict)

    @property
    def unfinished(self) -> bool:
        return self.planned_epochs is not None and len(self.accuracies) < self.planned_epochs


# run.json holds a run's flags and a few lines per session: kilobytes.
MAX_RECORD_BYTES = 16 * 2 ** 20


def read_record(path: str) -> dict:
    """run.json, checked like a flag: a JSON object whose "recorded" is a dict of flags (and
    "epochs" among them, if any, a whole number). One LogError line naming the file and the
    field otherwise, also for a file that does not parse or nests beyond reason."""
    try:
        record = json.loads(read_regular(path, MAX_RECORD_BYTES))
    except RecursionError:
        raise LogError(f"{path} is not a run record: it nests deeper than JSON a run writes") \
            from None
    except (OSError, ValueError) as e:
        raise LogError(f"{path} is not a run record: {e}") from e
    if not isinstance(record, dict):
        raise LogError(f"{path} is not a run record: it holds a {type(record).__name__}")
    recorded = record.get("recorded") or {}
    if not isinstance(recorded, dict):
        raise LogError(f"{path} has a malformed 'recorded': a {type(recorded).__name__}")
    epochs = recorded.get("epochs")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool)
                               or epochs < 1):
        raise LogError(f"{path} has a malformed 'recorded': epochs is {epochs!r}")
    return record


def scored_test_split(record: dict, path: str) -> dict:
    """{"final" | "best" | "ema": top-1 %} of run.json's result.test (empty without one),
    each a finite number from 0 to 100, else one LogError line naming the file."""
    result = record.get("result")
    test = result.get("test") if isinstance(result, dict) else None
    if test is None:
        return {}
    if not isinstance(test, dict):
        raise LogError(f"{path} has a malformed 'result': its test is {test!r}")
    scores = {}
    for name, score in test.items():
        top1 = score.get("top1") if isinstance(score, dict) else None
        if (not isinstance(top1, (int, float)) or isinstance(top1, bool)
                or not 0 <= top1 <= 100):
            raise LogError(f"{path} has a malformed 'result': test {name} is {score!r}")
        scores[name] = float(top1)
    return scores


def read_run(folder: str) -> Run:
    """A run folder's accuracies (log.txt) and recorded flags (run.json, when there is one)."""
    names, numbers = read_log(os.path.join(folder, "log.txt"))
    if COLUMN not in names or not numbers[COLUMN]:
        raise LogError(f"{folder}/log.txt has no {COLUMN!r} rows")
    path = os.path.join(folder, "run.json")
    record = read_record(path) if os.path.isfile(path) else {}
    recorded = record.get("recorded") or {}
    return Run(folder, tuple(numbers[COLUMN]), recorded, recorded.get("epochs"),
               scored_test_split(record, path))


def distinct_folders(folders: list) -> list:
    """``folders`` with each real folder once (a folder named twice, or through a link, is one
    run)."""
    seen, out = set(), []
    for folder in folders:
        real = os.path.realpath(folder)
        if real not in seen:
            seen.add(real)
            out.append(folder)
    return out


def group_by_flags(runs: list[Run]) -> dict[str, list[Run]]:
    """{label: [runs]}: runs with equal recorded flags (seed aside) together, labelled by the
    flags that differ between groups ("all" when none do)."""
    for run in runs:
        if not run.recorded:
            raise LogError(f"{run.folder} has no run.json to group by: name the groups with "
                           f"--group LABEL=GLOB")
    keys = sorted({k for run in runs for k in run.recorded} - set(IGNORED))
    differing = [k for k in keys if len({json.dumps(run.recorded.get(k)) for run in runs}) > 1]
    groups = {}
    for run in runs:
        label = " ".join(f"{k}={run.recorded.get(k)}" for k in differing) or "all"
        groups.setdefault(label, []).append(run)
    return groups


def group_by_globs(patterns: Sequence[str]) -> dict[str, list[Run]]:
    """{label: [runs]} of ``LABEL=GLOB`` patterns, each run folder a match of its glob."""
    groups = {}
    for pattern in patterns:
        label, sep, expression = pattern.rpartition("=")  # a label may hold "=", a glob rarely
        if not sep or not label or not expression:
            raise ValueError(f"--group takes LABEL=GLOB, got {pattern!r}")
        folders = distinct_folders(sorted(p for p in glob.glob(os.path.expanduser(expression))
                                          if os.path.isdir(p)))
        if not folders:
            raise ValueError(f"--group {pattern}: no run folder matches {expression}")
        groups[label] = [read_run(folder) for folder in folders]
    return groups


@dataclasses.dataclass(frozen=True)
class Stats:
    """n, mean, sample std (None for n = 1) and median of some accuracies."""
    n: int
    mean: float
    std: Optional[float]
    median: float


def stats(values: Iterable[float]) -> Stats:
    values = list(values)
    return Stats(len(values), statistics.fmean(values),
                 statistics.stdev(values) if len(values) > 1 else None, statistics.median(values))


def final_and_best(runs: Sequence[Run]) -> tuple[Stats, Stats]:
    """(Stats of the final accuracies, Stats of the best accuracies) of ``runs``."""
    return stats(run.accuracies[-1] for run in runs), stats(max(run.accuracies) for run in runs)


def mean_curve(runs: Sequence[Run]) -> tuple[list[float], list[float], list[float]]:
    """(mean, low, high) per epoch over ``runs``, as long as the shortest of them."""
    length = min(len(run.accuracies) for run in runs)
    columns = [[run.accuracies[e] for run in runs] for e in range(length)]
    return ([statistics.fmean(c) for c in columns], [min(c) for c in columns],
            [max(c) for c in columns])
