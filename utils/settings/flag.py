"""What a flag is: a ``Flag`` (names, group, type, default, range, help, where its value goes,
what a resume does with it), the ``Range`` a number flag takes, the groups that say whether a
checkpoint records a flag, and ``UsageError``, the one error of a flag or combination that cannot
work. The flags themselves are declared in utils.settings.table (and utils.scripts)."""
import dataclasses
import math
from typing import Any, Callable, Optional

__all__ = ["RECORDED", "PER_RUN", "GROUPS", "GROUP_KINDS", "TARGETS", "INT_MAX",
           "NOT_RECORDED_BEFORE", "ON_RESUME", "RESUME_REFUSAL", "UsageError", "Range", "Flag",
           "at_least", "NON_NEGATIVE", "NON_NEGATIVE_INT", "POSITIVE", "FRACTION"]

RECORDED, PER_RUN = "recorded", "per-run"
# Every flag belongs to one group, and the group says whether a checkpoint records it.
GROUPS = (("model", RECORDED, "model (recorded in checkpoints)"),
          ("dataset", RECORDED, "dataset (recorded in checkpoints)"),
          ("recipe", RECORDED, "training recipe (recorded in checkpoints)"),
          ("data", PER_RUN, "data files and loading"),
          ("run", PER_RUN, "this run: resume, evaluate, device, speed"),
          ("output", PER_RUN, "output"))
GROUP_KINDS = {name: kind for name, kind, _ in GROUPS}  # group -> RECORDED or PER_RUN
# Where a flag's value can go (``Flag.into``, "TARGET.FIELD"): a keyword of the model's
# constructor, or a field of one of the typed settings of utils.settings.values.
TARGETS = ("options", "model", "data", "views", "policy", "schedule", "regularisers", "recipe",
           "device", "checkpoints", "loop", "run")
# The most an integer flag may be: what torch's int64 indexing and the machine can take.
INT_MAX = 2 ** 31 - 1
# ``Flag.before_flag`` when a checkpoint without the flag needs nothing put in its place.
NOT_RECORDED_BEFORE = object()
# What a --resume does with a flag: for a recorded flag written again with another value,
# "refuse" or "apply"; for a per-run flag, "recall" takes the run record's value back unless the
# command line writes one, and "keep" leaves it to the command line.
ON_RESUME = ("refuse", "apply", "recall", "keep")
RESUME_REFUSAL = ("{flag} {new}: the checkpoint was trained with {flag} {old}, and a resumed "
                  "run continues its recipe (its optimizer, schedule and draws hold the old "
                  "value); resume without {flag}, or {start_anew}")


class UsageError(Exception):
    """A flag or combination of flags that cannot work; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number flag takes, and the words that refuse one outside them.

    ``least`` / ``most``: inclusive bounds; ``above``: an exclusive lower bound; ``below``: an
    exclusive upper one. ``words`` picks the phrasing (at-least, non-negative, positive,
    interval, span; or a format of its own with {flag} and {value}) and ``note`` follows it; a
    flag whose value 0 means off (``zero_is_off``) is checked only when set."""
    least: Optional[float] = None
    most: Optional[float] = None
    above: Optional[float] = None
    below: Optional[float] = None
    words: str = "at-least"
    note: str = ""
    zero_is_off: bool = False

    def problem(self, flag: str, value: float) -> Optional[str]:
        """The refusal of ``value`` for ``flag``, or None when it is in range."""
        if self.zero_is_off and value == 0:
            return None
        low_ok = ((self.least is None or value >= self.least)
                  and (self.above is None or value > self.above))
        high_ok = ((self.most is None or value <= self.most)
                   and (self.below is None or value < self.below))
        if low_ok and high_ok:
            return None
        if "{" in self.words:  # a phrasing of its own
            return self.words.format(flag=flag, value=value)
        if self.words == "interval":
            low = "(" if self.above is not None else "["
            high = ")" if self.below is not None else "]"
            lo = self.above if self.above is not None else self.least
            hi = self.below if self.below is not None else self.most
            text = f"{flag} must be in {low}{_num(lo)}, {_num(hi)}{high}, got {value}"
        elif not high_ok:  # past the top: the bound said alone, as for every integer flag
            text = f"{flag} must be at most {self.most:,}, got {value:,}"
        elif self.words == "span":
            text = f"{flag} must be in {_num(self.least)} .. {_num(self.most)}, got {value}"
        elif self.words == "non-negative":
            text = f"{flag} must be >= 0, got {value}"
        elif self.words == "positive":
            text = f"{flag} must be positive, got {value}"
        else:
            text = f"{flag} must be at least {_num(self.least)}, got {value}"
        return text + self.note


def _num(value):
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10 ** 6 else f"{value:g}"


def at_least(n: int, most: int = INT_MAX) -> Range:
    return Range(least=n, most=most)


NON_NEGATIVE = Range(least=0, words="non-negative")
NON_NEGATIVE_INT = Range(least=0, most=INT_MAX, words="non-negative")
POSITIVE = Range(above=0, words="positive")
FRACTION = Range(least=0, below=1, words="interval")  # [0, 1)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag.

    ``names``: its option strings; ``group``: one of GROUPS; ``kind``: int, float, str, or
    "switch" (store_true), "bool" (--x/--no-x); ``script_default``: the name of the script's
    default that replaces ``default`` (epochs, train_batch, ...); ``range``: what a number may be
    (ints are at most INT_MAX without one); ``choices``, ``nargs``, ``metavar``, ``dest``,
    ``const``, ``required``: argparse's.

    ``into``: where the value goes, "TARGET.FIELD" (TARGETS): "options.depth" is the ``depth``
    keyword of the model's constructor, "recipe.lr" RecipeSettings.lr, and so on; ``convert``
    turns the parsed value into the field's (``--no-progress`` into ``show_progress``).

    For the recorded groups: ``on_resume`` is what a --resume does when the flag is written
    again with another value: "refuse" (the checkpoint's state holds the old value; one line
    says so, ``refusal`` its words) or "apply" (it takes effect from the resumed epoch, and the
    run record names it); ``before_flag`` the value that rebuilds a checkpoint written before
    the flag existed. For the per-run groups: "keep" (the default there: the command line's
    value, written or not) or "recall" (not written, the value the run record names, so a
    resumed run reads and draws its data as the run did; ``must_exist``: a recalled path that
    is gone is one line asking for the flag)."""
    names: tuple
    group: str
    help: str
    kind: Any = str
    default: Any = None
    range: Optional[Range] = None
    choices: Optional[tuple] = None
    nargs: Any = None
    metavar: Any = None
    dest: Optional[str] = None
    const: Any = None
    required: bool = False
    script_default: Optional[str] = None
    into: Optional[str] = None
    convert: Optional[Callable] = None
    on_resume: Optional[str] = None
    refusal: str = RESUME_REFUSAL
    before_flag: Any = NOT_RECORDED_BEFORE
    must_exist: bool = False

    def __post_init__(self) -> None:
        if self.into is not None and self.into.split(".")[0] not in TARGETS:
            raise ValueError(f"{self.long}: into={self.into!r} names no target of {TARGETS}")
        if self.on_resume is None:  # a dataclass is frozen: its default is set here, once
            object.__setattr__(self, "on_resume", "keep" if self.per_run else "refuse")
        if self.on_resume not in (("recall", "keep") if self.per_run else ("refuse", "apply")):
            raise ValueError(f"{self.long}: on_resume {self.on_resume!r} is not one of its "
                             f"group's ({ON_RESUME})")

    @property
    def per_run(self) -> bool:
        """Whether the flag is of a group a checkpoint does not record."""
        return GROUP_KINDS[self.group] == PER_RUN

    @property
    def name(self) -> str:
        """The dest: argparse's name of the value."""
        if self.dest:
            return self.dest
        return self.long[2:].replace("-", "_")

    @property
    def long(self) -> str:
        return next(n for n in self.names if n.startswith("--"))

    @property
    def target(self) -> Optional[str]:
        """The settings object the value goes into (TARGETS), or None."""
        return self.into.split(".")[0] if self.into else None

    @property
    def field(self) -> Optional[str]:
        """The field (or constructor keyword) of ``target`` the value goes into."""
        return self.into.split(".", 1)[1] if self.into else None

    @property
    def option(self) -> Optional[str]:
        """The keyword of the model constructors this flag sets, for a model option."""
        return self.field if self.target == "options" else None

    def value(self, parsed: Any) -> Any:
        """The settings field's value of the ``parsed`` one."""
        return self.convert(parsed) if self.convert else parsed

    @property
    def rule(self) -> Optional[Range]:
        """The Range a number value must be in: ``range``, or for an integer flag without one
        at most INT_MAX; None for a flag that takes no number or has no bound."""
        return self.range or (Range(most=INT_MAX) if self.kind is int else None)

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` cannot be this flag's (its range, finiteness), or None."""
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                return f"{self.long} must be a finite number, got {v}"
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rule = self.rule
                problem = rule.problem(self.long, v) if rule else None
                if problem:
                    return problem
        return None
