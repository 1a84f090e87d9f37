"""A training run launched by srun with several tasks and no torchrun: SLURM's variables,
checked as flags are, turned into torchrun's, so the process group forms as under torchrun.

Only the training scripts read them (utils.cli.run_main with ``joins_group``): predict.py,
export.py and the rest make no process group, so a job's variables never concern them. Each
variable is a whole number in its range or one line names it (a traceback or a rank that waits
for ever otherwise), and the task of rank 0 waits for the others at most ``SLURM_WAIT_SECONDS``
(``WS_SLURM_WAIT`` in the environment, default 300) with a line saying whom it waits for: a
plain ``python`` line of an sbatch script with ``--ntasks 2`` is one process, whose partner
never comes.
"""
import datetime
import os
import sys
from typing import Optional

import torch.distributed as dist

__all__ = ["SlurmError", "adopt_slurm_environment", "slurm_group_store"]

ADOPTED = "WS_FROM_SLURM"  # set in the environment once SLURM's variables were adopted


class SlurmError(Exception):
    """SLURM variables a process group cannot be formed from: the message names the variable
    and says what to set."""


def _number(env: dict, name: str, least: int, default: Optional[str] = None) -> int:
    text = env.get(name, default)
    try:
        value = int(str(text).split("(")[0])  # SLURM_TASKS_PER_NODE-style "2(x3)"
    except ValueError:
        raise SlurmError(f"{name}={text!r} is not a whole number: check the job's environment "
                         f"(srun sets it)") from None
    if value < least:
        raise SlurmError(f"{name}={value} must be at least {least}")
    return value


def wait_seconds(env: dict) -> int:
    return _number(env, "WS_SLURM_WAIT", 1, "300")


def adopt_slurm_environment(environ: Optional[dict] = None) -> bool:
    """torchrun's variables from SLURM's (RANK from SLURM_PROCID, WORLD_SIZE from SLURM_NTASKS,
    LOCAL_RANK from SLURM_LOCALID, LOCAL_WORLD_SIZE from the tasks on this node) where srun
    started several tasks and no torchrun did. MASTER_ADDR is kept when set, else 127.0.0.1
    for a job on one node (a job on several nodes must set it: one line says how); MASTER_PORT
    is kept, else one derived from SLURM_JOB_ID, the same for every task. Returns whether
    SLURM's variables were adopted (``environ``: os.environ by default, changed in place); a
    variable that is not a whole number in its range is a SlurmError naming it."""
    env = os.environ if environ is None else environ
    if "RANK" in env or "SLURM_PROCID" not in env or _number(env, "SLURM_NTASKS", 1, "1") < 2:
        return False
    tasks = _number(env, "SLURM_NTASKS", 1)
    rank = _number(env, "SLURM_PROCID", 0)
    if rank >= tasks:
        raise SlurmError(f"SLURM_PROCID={rank} is not a task of SLURM_NTASKS={tasks} (ranks 0 "
                         f"to {tasks - 1})")
    nodes = _number(env, "SLURM_NNODES", 1, env.get("SLURM_JOB_NUM_NODES", "1"))
    local = _number(env, "SLURM_LOCALID", 0, "0")
    per_node = _number(env, "SLURM_NTASKS_PER_NODE", 1, str(max(1, tasks // nodes)))
    job = _number(env, "SLURM_JOB_ID", 0, "0")
    wait_seconds(env)
    if "MASTER_ADDR" not in env:
        if nodes > 1:
            raise SlurmError("srun started this job's tasks on several nodes: set MASTER_ADDR to "
                             "the first node's address in the sbatch script, e.g. export "
                             "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | "
                             "head -n 1), or launch with torchrun")
        env["MASTER_ADDR"] = "127.0.0.1"
    env.setdefault("MASTER_PORT", str(20000 + job % 20000))
    env.update(RANK=str(rank), WORLD_SIZE=str(tasks), LOCAL_RANK=str(local),
               LOCAL_WORLD_SIZE=str(per_node), **{ADOPTED: "1"})
    return True


def slurm_group_store() -> dict:
    """init_process_group's store for a group adopted from SLURM, whose rank 0 waits for the
    other tasks at most wait_seconds() and says so; nothing ({}) otherwise (torchrun's env://).
    No task joining in time is a SlurmError that says why that happens."""
    env = os.environ
    if env.get(ADOPTED) != "1":
        return {}
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    seconds = wait_seconds(env)
    address = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    if rank == 0:
        print(f"=> rank 0 of {world} (SLURM_PROCID of SLURM_NTASKS={world}) waits up to "
              f"{seconds} s for the other {world - 1} task(s) at {address}", file=sys.stderr,
              flush=True)
    try:
        store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world, rank == 0,
                              timeout=datetime.timedelta(seconds=seconds),
                              wait_for_workers=True)
    except (RuntimeError, dist.DistError) as e:
        raise SlurmError(f"the other tasks of SLURM_NTASKS={world} did not join at {address} "
                         f"within {seconds} s: a plain `python` line in an sbatch script with "
                         f"--ntasks {world} is one process; start it with srun (or torchrun), "
                         f"or set WS_SLURM_WAIT for a slower start") from e
    return dict(store=store, rank=rank, world_size=world)
