"""Whether a saved optimizer, scheduler or AMP scaler state is one of the object it is loaded
into. torch's schedulers take any dict (their load_state_dict updates the object's attributes),
so a damaged or mismatched state would load and replay a wrong learning rate: the check is
ours, made before loading."""
import math
from typing import Any, Optional

__all__ = ["state_misfit"]


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "flag" if isinstance(value, bool) else "none"
    if isinstance(value, (int, float)):
        return "number"
    return next((name for kind, name in ((dict, "dict"), (list, "list"), (tuple, "list"),
                                         (str, "text")) if isinstance(value, kind)),
                type(value).__name__)


def state_misfit(state: dict, fresh: dict) -> Optional[str]:
    """Why a saved optimizer, scheduler or scaler ``state`` cannot be the state of the object
    whose own state is ``fresh``, or None: every public entry of ``fresh`` must be there, of the
    same kind (a finite number, a list of as many items, a dict). Entries only the saved state
    has are let be: torch versions add and drop private ones."""
    for key, value in fresh.items():
        if key.startswith("_") or value is None:
            continue
        if key not in state:
            return f"it has no {key!r}"
        saved = state[key]
        if _kind(saved) != _kind(value):
            return f"its {key!r} is {saved!r}, not a {_kind(value)}"
        if _kind(value) == "list" and len(saved) != len(value):
            return f"its {key!r} holds {len(saved)} items where this run has {len(value)}"
        if _kind(value) == "number" and not math.isfinite(saved):
            return f"its {key!r} is {saved!r}"
    return None
