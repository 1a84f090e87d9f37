"""Shared test fixtures: where ../shared lives, and tiny datasets the tests make themselves."""
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("WS_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
MODELS_JSON = os.path.join(SHARED, "reference", "models.json")
CIFAR_NPZ = os.path.join(SHARED, "data", "cifar10-jpeg.npz")


def load_reference_models():
    """The reference's model facts, or None where ../shared is not beside the checkout."""
    if not os.path.isfile(MODELS_JSON):
        return None
    with open(MODELS_JSON) as f:
        return json.load(f)


@pytest.fixture
def cifar_npz():
    if not os.path.isfile(CIFAR_NPZ):
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR_NPZ}")
    return CIFAR_NPZ
