"""--auto-resume (utils/session/auto_resume.py) and SLURM's signal, with real processes and real
signals: one command survives SIGTERM and SIGUSR1 and ends bitwise equal to a run that never
stopped, and a third call says the run is finished; another run's folder is refused; a live
run's lock is respected and a killed one's taken over; srun's variables form the process
group."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import cifar
from builders import REPO, TINY_MODEL, make_cifar_pickles, read_log_rows, tiny_run

EPOCHS = 5
ARGS = TINY_MODEL + tiny_run(seed=11, train_batch=4, test_batch=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cifar_pickles(str(tmp_path_factory.mktemp("auto")), n_train=96, n_test=16)


def command(data, run, *extra):
    return ([sys.executable, os.path.join(REPO, "cifar.py")] + ARGS +
            ["--data", data, "--epochs", str(EPOCHS), "-c", run, "--auto-resume"] + list(extra))


def stopped_by(sig, cmd, run, rows):
    """Start ``cmd``, send ``sig`` once the log has ``rows`` rows (mid-epoch of the next), and
    return the process's exit code and stderr."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    log = os.path.join(run, "log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and len(read_log_rows(log)[1]) >= rows:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_one_command_survives_sigterm_and_sigusr1_and_ends_as_if_never_stopped(data, tmp_path):
    reference = str(tmp_path / "reference")
    cifar.main(ARGS + ["--data", data, "--epochs", str(EPOCHS), "-c", reference])
    run = str(tmp_path / "run")
    cmd = command(data, run)
    code, err = stopped_by(signal.SIGTERM, cmd, run, 1)
    assert code == 143 and "stopped by SIGTERM" in err, err[-2000:]
    code, err = stopped_by(signal.SIGUSR1, cmd, run, 3)
    assert code == 138 and "stopped by SIGUSR1" in err, err[-2000:]
    finish = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert "--auto-resume: continuing the run in" in finish.stdout
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert f"the run is finished ({EPOCHS} of {EPOCHS} epochs); nothing to do" in again.stdout
    a = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    b = torch.load(os.path.join(reference, "checkpoint.pth.tar"), weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert read_log_rows(os.path.join(run, "log.txt")) == \
        read_log_rows(os.path.join(reference, "log.txt"))


def test_a_folder_of_another_run_is_refused_naming_the_difference(data, tmp_path):
    run = str(tmp_path / "run")
    cifar.main(ARGS + ["--data", data, "--epochs", "1", "-c", run])
    result = subprocess.run(command(data, run, "--lr", "0.05"), cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "holds another run (" in line and len(line.splitlines()) == 1
    assert "it was trained with --lr 0.1, this command gives --lr 0.05" in line


def test_a_live_runs_lock_is_respected_and_a_killed_ones_taken_over(data, tmp_path):
    run = str(tmp_path / "run")
    cmd = command(data, run)
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = os.path.join(run, "log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(log) and read_log_rows(log)[1]):
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # alive and holding the lock, but not finishing
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and "is in use by another run" in second.stderr
    first.kill()
    first.wait()
    assert os.path.exists(os.path.join(run, ".lock"))  # a killed run leaves its lock file
    third = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(read_log_rows(log)[1]) == EPOCHS


def test_srun_without_torchrun_forms_the_group_from_slurms_variables(data, tmp_path):
    """Two tasks as srun starts them (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID on one node):
    the run trains as two torchrun processes do, and equals one process to the DDP test's
    tolerance."""
    run, single = str(tmp_path / "srun"), str(tmp_path / "single")
    args = ARGS + ["--data", data, "--epochs", "1", "--iter-size", "2"]
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "cifar.py")] + args +
                              ["-c", run], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, SLURM_PROCID=str(rank), SLURM_NTASKS="2",
                                       SLURM_LOCALID=str(rank), SLURM_NNODES="1",
                                       SLURM_JOB_ID=str(4242 + os.getpid() % 1000),
                                       OMP_NUM_THREADS="1"))
             for rank in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    assert outs[0][0].count("Epoch: [1 | 1]") == 1 and "Epoch" not in outs[1][0]
    cifar.main(args + ["-c", single])
    a = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["state_dict"]
    b = torch.load(os.path.join(single, "checkpoint.pth.tar"), weights_only=True)["state_dict"]
    assert max((a[k] - b[k]).abs().max().item() for k in b) < 1e-5


def test_srun_on_several_nodes_without_master_addr_says_what_to_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "RANK")}
    env.update(SLURM_PROCID="0", SLURM_NTASKS="4", SLURM_NNODES="2", SLURM_LOCALID="0")
    result = subprocess.run([sys.executable, os.path.join(REPO, "cifar.py"), "--data",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 2
    assert "set MASTER_ADDR to the first node's address" in result.stderr


@pytest.mark.parametrize("variables,words", [
    (dict(SLURM_PROCID="5", SLURM_NTASKS="2"), "SLURM_PROCID=5 is not a task of SLURM_NTASKS=2"),
    (dict(SLURM_PROCID="0", SLURM_NTASKS="two"), "SLURM_NTASKS='two' is not a whole number"),
    (dict(SLURM_PROCID="-1", SLURM_NTASKS="2"), "SLURM_PROCID=-1 must be at least 0"),
    (dict(SLURM_PROCID="0", SLURM_NTASKS="2", SLURM_LOCALID="x"), "SLURM_LOCALID='x'"),
])
def test_slurms_variables_are_checked_like_flags(tmp_path, variables, words):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK"))}
    result = subprocess.run([sys.executable, os.path.join(REPO, "cifar.py"), "--data",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**env, **variables})
    assert result.returncode == 2 and words in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_a_lone_task_of_two_waits_a_bounded_time_and_says_why(data, tmp_path):
    """A plain python line in an sbatch script with --ntasks 2: one process of a world of 2,
    whose partner never comes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK"))}
    env.update(SLURM_PROCID="0", SLURM_NTASKS="2", SLURM_JOB_ID=str(5000 + os.getpid() % 1000),
               WS_SLURM_WAIT="2")
    result = subprocess.run([sys.executable, os.path.join(REPO, "cifar.py")] + ARGS +
                            ["--data", data, "--epochs", "1", "-c", str(tmp_path / "r")],
                            cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "waits up to 2 s for the other 1 task(s)" in result.stderr
    assert "did not join" in result.stderr and "start it with srun" in result.stderr
    assert "Traceback" not in result.stderr


def test_scripts_that_make_no_process_group_ignore_slurms_variables(tmp_path):
    env = dict(os.environ, SLURM_PROCID="7", SLURM_NTASKS="nonsense")
    result = subprocess.run([sys.executable, os.path.join(REPO, "predict.py"), "--resume",
                             str(tmp_path / "none"), "x.png"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=env)
    assert "SLURM" not in result.stderr and "Traceback" not in result.stderr
    assert "no checkpoint found" in result.stderr or "no such file" in result.stderr, \
        result.stderr


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_on_this_machine_train_as_one_process(data, tmp_path):
    """--nnodes 2 with the c10d rendezvous on 127.0.0.1: two "machines" of one process each."""
    run, single = str(tmp_path / "nodes"), str(tmp_path / "single")
    args = ARGS + ["--data", data, "--epochs", "1", "--iter-size", "2"]
    endpoint = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                               "--node_rank", str(rank), "--nproc_per_node", "1",
                               "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint,
                               "--rdzv_id", "two-nodes", os.path.join(REPO, "cifar.py")] +
                              args + ["-c", run], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
             for rank in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    cifar.main(args + ["-c", single])
    a = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)["state_dict"]
    b = torch.load(os.path.join(single, "checkpoint.pth.tar"), weights_only=True)["state_dict"]
    assert max((a[k] - b[k]).abs().max().item() for k in b) < 1e-5



def test_torchrun_restarts_a_killed_worker_and_the_run_ends_as_if_never_stopped(data, tmp_path):
    """torchrun --max-restarts 1 with --auto-resume: a worker SIGKILLed mid-run, torchrun
    restarts the group with the same command (its processes meet under a store prefix of the
    attempt: utils.distributed), and the run continues from its last epoch's checkpoint. Equal
    to an uninterrupted 2-process run bitwise: a resume from an epoch's end is exact, every
    draw being a function of seed, epoch and image."""
    epochs = 4
    args = ARGS + ["--data", data, "--epochs", str(epochs)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    reference = str(tmp_path / "reference")
    subprocess.run(launcher + [os.path.join(REPO, "cifar.py")] + args + ["-c", reference],
                   cwd=REPO, check=True, capture_output=True, timeout=300, env=env)
    run = str(tmp_path / "run")
    proc = subprocess.Popen(launcher + ["--max-restarts", "1", os.path.join(REPO, "cifar.py")] +
                            args + ["-c", run, "--auto-resume"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = os.path.join(run, "log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(log) and read_log_rows(log)[1]):
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "cifar.py"],
                             capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[1]), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "--auto-resume: continuing the run in" in out
    a = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=True)
    b = torch.load(os.path.join(reference, "checkpoint.pth.tar"), weights_only=True)
    assert a["epoch"] == epochs
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert read_log_rows(log) == read_log_rows(os.path.join(reference, "log.txt"))
