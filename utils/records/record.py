"""The record of a run, run.json in its folder: what was run, with what, where and when, and,
once it ends, how it did. Written when training starts and rewritten (atomically) when it ends;
every checkpoint holds the record as it was when training started, under ``run``.

    flags     every flag's value; recorded: the flags a checkpoint records (utils.settings.flags)
    sessions  one per start (the first run, then each --resume), each with
              command (the script and its command line), started (ISO time), host,
              versions (python, torch, torchvision, CUDA, cuDNN; None without them),
              gpus (their names), commit (of this checkout; None outside one), changed (the
              recorded flags a --resume gave anew: from, to, and the epoch they apply from), and
              wall_seconds: its time in the epoch loop as of its last checkpoint (a session
              stopped by a signal or a crash counts up to the checkpoint it left)
    result    at the end: best and final validation accuracy, epochs done, and wall_seconds:
              the sum over the sessions
    classes   the class names, in label order
    dataset   the named dataset its images are (cifar.py's -d read from that dataset's own
              files); null for an ImageFolder tree (imagenet.py's, or cifar.py's on one)
"""
import datetime
import json
import os
import platform
import socket
from typing import Optional, Sequence

import torch
import torchvision

from ..atomic import atomic_write

__all__ = ["session", "new_record", "write_record", "finish_record", "git_commit",
           "with_session_time", "script_of"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit(repo: str = REPO) -> Optional[str]:
    """The commit HEAD names in ``repo``'s .git (a branch ref, packed or loose, or a detached
    hash), read from the files: no git program needed. None outside a checkout."""
    git = os.path.join(repo, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        if os.path.isfile(os.path.join(git, ref)):
            with open(os.path.join(git, ref)) as f:
                return f.read().strip()
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        pass
    return None


def session(script: str, argv: Sequence[str]) -> dict:
    """This start of a run: its command line and where, when and with what it runs."""
    cuda = torch.cuda.is_available()
    return {
        "command": [os.path.basename(script)] + list(argv),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        # Plain strings: torch.__version__ is a TorchVersion, which a weights-only load of a
        # checkpoint holding this record would refuse.
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__),
                     "torchvision": str(torchvision.__version__),
                     "cuda": str(torch.version.cuda) if torch.version.cuda else None,
                     "cudnn": torch.backends.cudnn.version() if cuda else None},
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda else [],
        "commit": git_commit(),
        "wall_seconds": 0.0,
    }


def new_record(script: str, argv: list, flags: dict, recorded: dict,
               previous: Optional[dict] = None, changed: Optional[dict] = None) -> dict:
    """The record of a run starting now (``flags``: every flag's value); a resumed run passes
    the ``previous`` record (its checkpoint's) and adds a session to it, which names the
    recorded flags it gave anew (``changed``: {flag: {from, to, from_epoch}})."""
    sessions = list((previous or {}).get("sessions", []))
    this = session(script, argv)
    if changed:
        this["changed"] = dict(changed)
    return {"flags": dict(flags), "recorded": dict(recorded), "sessions": sessions + [this],
            "result": None}


def write_record(folder: str, record: dict) -> None:
    """run.json in ``folder``, atomically (a kill never leaves half a file)."""
    text = json.dumps(record, indent=2, default=str) + "\n"
    atomic_write(os.path.join(folder, "run.json"), lambda f: f.write(text.encode()))


def with_session_time(record: dict, seconds: float) -> dict:
    """``record`` with its last session's wall_seconds set to ``seconds``."""
    sessions = list(record.get("sessions") or [{}])
    sessions[-1] = {**sessions[-1], "wall_seconds": round(seconds, 3)}
    return {**record, "sessions": sessions}


def finish_record(folder: str, record: dict, *, best_acc: float, final_acc: float,
                  epochs: int, test: Optional[dict] = None) -> dict:
    """The record with its result (the wall time: the sum of its sessions'; with a held-out
    split, ``test``: the test split's scores of the final, EMA and best weights), rewritten in
    ``folder``; returns it."""
    total = sum(float(s.get("wall_seconds") or 0.0) for s in record["sessions"])
    result = {"best_acc": best_acc, "final_acc": final_acc, "epochs": epochs,
              "wall_seconds": round(total, 3)}
    if test is not None:
        result["test"] = test
    record = {**record, "result": result}
    write_record(folder, record)
    return record


def script_of(record: dict) -> Optional[str]:
    """The script that ran a run, as its record names it (the last session's command), or None
    for a record without one (a reference checkpoint's, a damaged one)."""
    sessions = record.get("sessions") if isinstance(record, dict) else None
    last = sessions[-1] if isinstance(sessions, list) and sessions else None
    command = last.get("command") if isinstance(last, dict) else None
    script = command[0] if isinstance(command, list) and command else None
    return script if isinstance(script, str) else None
