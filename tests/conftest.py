"""Shared fixtures; what tests build (data, flags, recipes) lives in builders.py."""
import os

import pytest

from builders import CIFAR_NPZ


@pytest.fixture
def cifar_npz():
    if not os.path.isfile(CIFAR_NPZ):
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR_NPZ}")
    return CIFAR_NPZ
