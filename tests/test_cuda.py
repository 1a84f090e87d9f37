"""What only a CUDA GPU can show; every test here is skipped, saying why, on a machine without
one (CI's). Run on a lent GPU machine with: python -m pytest -q tests/test_cuda.py"""
import os
import subprocess
import sys

import pytest
import torch

from builders import REPO, make_cifar_pickles

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (none on this machine)")


def test_sync_bn_under_one_process_equals_plain_batch_norm(tmp_path):
    """With one process SyncBatchNorm's statistics are the batch's own: the same training."""
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=64, n_test=16)
    args = ["-a", "resnet", "--depth", "8", "--data", data, "--epochs", "1", "--train-batch",
            "16", "--no-progress", "--manualSeed", "3"]
    runs = {}
    for name, extra in (("plain", []), ("sync", ["--sync-bn"])):
        runs[name] = str(tmp_path / name)
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=1", os.path.join(REPO, "cifar.py")] + args + extra +
                       ["-c", runs[name]], cwd=REPO, check=True, timeout=600)
    a, b = (torch.load(os.path.join(r, "checkpoint.pth.tar"), weights_only=True)["state_dict"]
            for r in runs.values())
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


@pytest.mark.parametrize("policy", ["autoaugment-cifar10", "randaugment-2-9", "trivialaugment"])
def test_the_batched_policy_on_cuda_gives_torchvisions_pixels_there(policy):
    """The device path's ops on the GPU against torchvision's per-image ops on the GPU."""
    from test_policies import POLICIES, photo_like, torchvision_pixels
    from utils.data.policies import apply_policy
    images = photo_like(64, seed=1).cuda()
    draws = POLICIES[policy].draw(64, torch.Generator().manual_seed(3), (32, 32)).to("cuda")
    out = apply_policy(images, draws)
    assert out.is_cuda and torch.equal(out, torchvision_pixels(images, draws))
