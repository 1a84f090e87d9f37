"""Shared fixtures; what tests build (data, flags, recipes) lives in builders.py."""
import os
import tempfile

import pytest

from builders import CIFAR_NPZ


@pytest.fixture(autouse=True, scope="session")
def temporary_files_stay_in_pytests_folder(tmp_path_factory):
    """What the code under test and its subprocesses (torchrun's torchelastic_* folders,
    bench.py's scratch) put in the temporary directory goes under pytest's own, which pytest
    prunes, instead of piling up in /tmp run after run."""
    folder = str(tmp_path_factory.mktemp("tmpdir"))
    previous_env, previous_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    yield
    tempfile.tempdir = previous_dir
    if previous_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous_env


@pytest.fixture
def cifar_npz():
    if not os.path.isfile(CIFAR_NPZ):
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR_NPZ}")
    return CIFAR_NPZ
