"""docs/flags.md's table of every flag, made from the table's entries (utils.settings.table and
each script's own): its names, group, each script's default, the values it takes and what a
``--resume`` does with it. ``python -m utils.scripts`` writes it between the page's markers; a
test holds the page to it, so the documented defaults and ranges are the code's."""
from typing import Any, Mapping

from .flag import Flag, Range

__all__ = ["BEGIN", "END", "flags_table", "with_table"]

BEGIN = "<!-- flags table: made by `python -m utils.scripts` from the flag entries; do not edit -->"
END = "<!-- end of the flags table -->"

_RESUME_WORDS = {"refuse": "kept; another value refused", "apply": "kept; may be given anew",
                 "recall": "the run's, unless written", "keep": "this command's"}


def flags_table(scripts: Mapping[str, Any]) -> str:
    """The markdown table of every flag of ``scripts`` ({script name: ScriptFlags}), in the
    order the first script declares them, then the flags only a later one has."""
    names = list(dict.fromkeys(name for flags in scripts.values() for name in flags.flags))
    header = ("| flag | group | " + " | ".join(f"default, {script}" for script in scripts)
              + " | values | on `--resume` |")
    rows = [header, "|" + " --- |" * (4 + len(scripts))]
    for name in names:
        present = {script: flags for script, flags in scripts.items() if name in flags.flags}
        flag = next(iter(present.values())).flags[name]
        defaults = [_default(flags.flags[name], flags.default_of(flags.flags[name]),
                             flags.spec.workers)
                    if script in present else "(no such flag)"
                    for script, flags in scripts.items()]
        rows.append(f"| {_names(flag)} | {flag.group} | " + " | ".join(defaults)
                    + f" | {_values(flag)} | {_RESUME_WORDS[flag.on_resume]} |")
    return "\n".join(rows)


def with_table(page: str, table: str) -> str:
    """``page`` with ``table`` between its BEGIN and END markers (a ValueError without them)."""
    if BEGIN not in page or END not in page:
        raise ValueError(f"the page has no {BEGIN!r} ... {END!r} markers")
    before, rest = page.split(BEGIN, 1)
    return f"{before}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"


def _names(flag: Flag) -> str:
    return ", ".join(f"`{name}`" for name in flag.names)


def _default(flag: Flag, value: Any, workers: int) -> str:
    if flag.kind == "switch":
        return "off"
    if flag.name == "workers" and value is None:  # utils.settings.flags.default_workers
        return f"the cores, at most {workers}"
    if value is None or value == "":
        return "(the architecture's)" if flag.kind == "bool" else "(none)"
    if isinstance(value, (list, tuple)):
        return "`" + " ".join(map(str, value)) + "`" if value else "(none)"
    return f"`{value}`"


def _values(flag: Flag) -> str:
    if flag.kind in ("switch", "bool"):
        return "on/off"
    if flag.choices:
        return " \\| ".join(f"`{choice}`" for choice in flag.choices)
    rule = flag.rule
    kind = {float: "number", int: "integer"}.get(flag.kind, "text")
    text = f"{kind} {_range(rule)}" if rule else kind
    if flag.nargs not in (None, "?"):
        text += f" (nargs {flag.nargs})"
    return text


def _range(rule: Range) -> str:
    low = (f"≥ {_number(rule.least)}" if rule.least is not None
           else f"> {_number(rule.above)}" if rule.above is not None else "")
    high = (f"≤ {_number(rule.most)}" if rule.most is not None
            else f"< {_number(rule.below)}" if rule.below is not None else "")
    text = ", ".join(part for part in (low, high) if part)
    return text + (" (0: off)" if rule.zero_is_off else "")


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
