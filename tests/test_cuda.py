"""What only a CUDA GPU can show; every test here is skipped, saying why, on a machine without
one (CI's). Run on a lent GPU machine with: python -m pytest -q tests/test_cuda.py

Every model trains a step in fp32, bf16 and fp16 (with its GradScaler), NCHW and channels-last;
compiled, the step is one graph, and as CUDA graphs it trains as the eager model does; no batch
of a training epoch makes the host wait for the GPU; the device loaders give on CUDA what they
give on the CPU; the scripts run an epoch on one GPU and under torchrun; what a GPU run saves
loads on the CPU; and --gpu-id selects the GPU it names."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import imagenet
import models
from builders import REPO, make_cifar_pickles, random_images, read_log_rows
from models import create_model
from test_device_decode import batches_of, imagenet_py_loaders, smooth_tree  # noqa: F401
from test_models import CIFAR_SMALL
from utils.data.datasets import CIFAR_MEAN, CIFAR_STD
from utils.data.loaders import BatchFormat, CropFlip, DeviceLoader, EpochBatches
from utils.session.stages import read_settings
from utils.settings.values import AugmentPolicy, RecipeSettings, Regularisers, Schedule
from utils.train.engine import evaluate, train_one_epoch
from utils.settings.values import LoopSettings
from utils.train.plan import TrainPlan
from utils.train.recipe import autocast, make_recipe
from utils.train.stopping import StepControl, StopSignal

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
    from utils.data.policies import apply_policy, draw
    images = photo_like(64, seed=1).cuda()
    draws = draw(POLICIES[policy], 64, torch.Generator().manual_seed(3), (32, 32)).to("cuda")
    out = apply_policy(images, draws)
    assert out.is_cuda and torch.equal(out, torchvision_pixels(images, draws))


MODELS = ([("cifar", arch) for arch in sorted(models.cifar.MODELS)] +
          [("imagenet", "l_resnet50"), ("imagenet", "l_resnext50")])
REGISTRIES = {"cifar": models.cifar.MODELS, "imagenet": models.imagenet.MODELS}


# fp16's GradScaler skips a step whose gradients overflow and halves its scale, from 2**16: the
# vgg_bn models' first steps overflow (seen on an H200), so the scaler gets 16 halvings to settle.
SCALER_TRIES = 17


def training_step(section, arch, amp, channels_last, compile_model=False):
    """An SGD step of the model on CUDA (under fp16, the first one its GradScaler takes); returns
    (loss, the largest parameter change)."""
    torch.manual_seed(0)
    kwargs = CIFAR_SMALL.get(arch, {}) if section == "cifar" else {}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(REGISTRIES[section], arch, num_classes=10, **kwargs)
    model = model.cuda().to(memory_format=fmt).train()
    before = [p.detach().clone() for p in model.parameters()]
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    size = 32 if section == "cifar" else 224
    x = torch.randn(4, 3, size, size, device="cuda").to(memory_format=fmt)
    y = torch.randint(0, 10, (4,), device="cuda")
    for _ in range(SCALER_TRIES if scaler else 1):
        optimizer.zero_grad(set_to_none=True)
        with autocast("cuda", amp):
            loss = nn.functional.cross_entropy(step_model(x), y)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        change = max((p.detach() - b).abs().max().item()
                     for p, b in zip(model.parameters(), before))
        if change > 0:
            break
    return loss.item(), change


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
@pytest.mark.parametrize("section, arch", MODELS, ids=[a for _, a in MODELS])
def test_every_model_trains_a_step_on_cuda(section, arch, amp, channels_last):
    loss, change = training_step(section, arch, amp, channels_last)
    assert torch.isfinite(torch.tensor(loss)) and change > 0


@pytest.mark.parametrize("section, arch", [("cifar", "l_resnet"), ("cifar", "resnet"),
                                           ("imagenet", "l_resnet50")])
def test_the_compiled_bf16_channels_last_step_is_one_graph_on_cuda(section, arch):
    torch._dynamo.reset()
    kwargs = CIFAR_SMALL.get(arch, {}) if section == "cifar" else {}
    model = create_model(REGISTRIES[section], arch, num_classes=10, **kwargs).cuda().train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    with autocast("cuda", "bf16"):
        explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    loss, change = training_step(section, arch, "bf16", True, compile_model=True)
    assert torch.isfinite(torch.tensor(loss)) and change > 0


class SyncChecked:
    """``loader`` with CUDA's sync debug mode at "error" from its first batch until it is
    exhausted: a host sync in the loader's or the engine's per-batch work raises there."""

    def __init__(self, loader):
        self.loader, self.device = loader, loader.device

    def batch_sizes(self):
        return self.loader.batch_sizes()

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        batches = iter(self.loader)
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield from batches
        finally:
            torch.cuda.set_sync_debug_mode("default")


# fp16 is left out: GradScaler reads its inf check back to the host before every optimizer step
# it does not fuse into the optimizer (torch's foreach SGD is not fused).
SYNC_FREE_RECIPES = {
    "plain": RecipeSettings(),
    "bf16-clip-ema-cosine": RecipeSettings(amp="bf16", clip_grad=5.0, ema=0.99, schedule=Schedule(
        "cosine", epochs=2, warmup_epochs=0.5), label_smoothing=0.1),
    "cutout-erasing-mixup": RecipeSettings(regularisers=Regularisers(cutout=8, random_erasing=0.5,
                                                                     mixup=1.0)),
    "cutmix": RecipeSettings(regularisers=Regularisers(cutmix=1.0)),
    "ricap": RecipeSettings(regularisers=Regularisers(ricap=0.3)),
    "dual-cutout": RecipeSettings(regularisers=Regularisers(cutout=8, dual_cutout=0.1)),
    "accumulate": RecipeSettings(iter_size=2),
}


@pytest.mark.parametrize("policy", [AugmentPolicy(), AugmentPolicy("autoaugment", "cifar10")],
                         ids=["crop-flip", "autoaugment"])
@pytest.mark.parametrize("recipe", SYNC_FREE_RECIPES.values(), ids=SYNC_FREE_RECIPES.keys())
def test_no_batch_of_a_training_epoch_makes_the_host_wait_for_the_gpu(recipe, policy):
    """The device loader and the engine's per-batch work (regularisers, step, schedule, EMA,
    meters, non-finite check) only queue work on the GPU; the host syncs once an epoch."""
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = create_model(models.cifar.MODELS, "l_resnet", num_classes=10, depth=8).to(device)
    loader = DeviceLoader(random_images(96), EpochBatches(96, 16, True, seed=1), device,
                          BatchFormat(CIFAR_MEAN, CIFAR_STD), CropFlip(policy=policy))
    steps = make_recipe(model, recipe, 10, len(loader))
    plan = TrainPlan(epochs=2, loop=LoopSettings(show_progress=False))
    with StopSignal() as stop:  # the step control fit() passes: signals, recovery saves
        control = StepControl(stop, 0.0, lambda *position: None)
        for epoch in range(2):  # the first warms up (cuDNN, allocators), the second is checked
            loader.set_epoch(epoch)
            train_one_epoch(model, SyncChecked(loader) if epoch else loader, steps, plan, epoch,
                            control)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cuda_graphs_train_and_evaluate_as_the_eager_model_does():
    """--compile reduce-overhead replays each step as CUDA graphs (re-recorded for the short
    last batch): three epochs of the engine and an evaluation with flip TTA (two calls of the
    model per batch) give the eager model's numbers."""
    device = torch.device("cuda")
    numbers = {}
    for mode in (None, "reduce-overhead"):
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = create_model(models.cifar.MODELS, "l_resnet", num_classes=10, depth=8).to(device)
        called = torch.compile(model, mode=mode) if mode else model
        train = DeviceLoader(random_images(100), EpochBatches(100, 32, True, seed=1), device,
                             BatchFormat(CIFAR_MEAN, CIFAR_STD), CropFlip())
        test = DeviceLoader(random_images(40, seed=1), EpochBatches(40, 16, False), device,
                            BatchFormat(CIFAR_MEAN, CIFAR_STD))
        steps = make_recipe(model, RecipeSettings(), 10, len(train))
        losses = []
        for epoch in range(3):
            train.set_epoch(epoch)
            plan = TrainPlan(epochs=3, loop=LoopSettings(show_progress=False))
            losses.append(train_one_epoch(called, train, steps, plan, epoch)[0])
        numbers[mode] = losses + [evaluate(called, test, nn.CrossEntropyLoss(),
                                           show_progress=False, tta=True)[0]]
    assert numbers["reduce-overhead"] == pytest.approx(numbers[None], rel=2e-2)


@pytest.mark.parametrize("policy", [AugmentPolicy(), AugmentPolicy("trivialaugment")],
                         ids=["crop-flip", "trivialaugment"])
def test_device_loader_batches_on_cuda_equal_the_cpu_ones(policy):
    data = random_images(40)
    batches = {}
    for device in ("cpu", "cuda"):
        loader = DeviceLoader(data, EpochBatches(40, 16, True, seed=3), device,
                              BatchFormat(CIFAR_MEAN, CIFAR_STD, channels_last=True),
                              CropFlip(policy=policy))
        loader.set_epoch(2)
        batches[device] = torch.cat([x.cpu() for x, _ in loader])
    torch.testing.assert_close(batches["cuda"], batches["cpu"], rtol=0, atol=1e-6)


def test_decode_device_on_cuda_matches_the_pil_path(smooth_tree):  # noqa: F811
    pytest.importorskip("torchcodec", reason="--decode device decodes with torchcodec")
    settings, _ = read_settings(imagenet.imagenet_flags(), 
        ["--data", smooth_tree, "--train-batch", "6", "--test-batch", "6", "--decode", "device",
         "-j", "0"])
    _, loaders = imagenet.imagenet_loaders(settings.data, torch.device("cuda"), 5, False)
    train, val = loaders.train, loaders.test
    train.set_epoch(2)
    pil_train, pil_val = imagenet_py_loaders(smooth_tree, "pil", 6, epoch=2)
    for on_gpu, on_cpu in ((train, pil_train), (val, pil_val)):
        a = torch.cat([x.cpu() for x, _ in on_gpu])
        assert (a - batches_of(on_cpu)).abs().mean() < 0.05  # nvJPEG vs PIL: a few grey levels


def cifar_run(tmp_path, name, extra, launcher=()):
    """A 1-epoch cifar.py run of resnet-8 on CUDA in a subprocess; returns its folder."""
    data = make_cifar_pickles(str(tmp_path / "data"), n_train=64, n_test=16)
    run = str(tmp_path / name)
    subprocess.run(list(launcher) + [os.path.join(REPO, "cifar.py"), "-a", "resnet", "--depth",
                                     "8", "--data", data, "--epochs", "1", "--train-batch", "16",
                                     "--no-progress", "--manualSeed", "3", "-c", run] + extra,
                   cwd=REPO, check=True, timeout=600)
    return run


@pytest.mark.parametrize("launcher", [
    (sys.executable,), (sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=1")], ids=["gpu-id-0", "torchrun-nccl"])
def test_a_cifar_epoch_on_one_gpu_and_its_checkpoint_loads_on_the_cpu(tmp_path, launcher):
    run = cifar_run(tmp_path, "run", ["--gpu-id", "0", "--amp", "fp16"], launcher)
    _, rows = read_log_rows(os.path.join(run, "log.txt"))
    assert len(rows) == 1
    with open(os.path.join(run, "run.json")) as f:
        assert json.load(f)["sessions"][0]["gpus"]  # the session saw the GPU
    # What the GPU run saved is evaluated on the CPU (fp16 autocast is CUDA's: --amp none).
    subprocess.run([sys.executable, os.path.join(REPO, "cifar.py"), "-e", "--resume", run,
                    "--gpu-id", "cpu", "--amp", "none", "--data", str(tmp_path / "data"),
                    "--no-progress"], cwd=REPO, check=True, timeout=600)


def test_gpu_id_selects_the_gpu_it_names():
    """--gpu-id N makes physical GPU N the run's cuda:0 (by UUID, so alike cards still differ)."""
    last = torch.cuda.device_count() - 1
    expected = str(torch.cuda.get_device_properties(last).uuid)
    code = ("import torch; from utils.session.device import select_device; "
            "from utils.settings.values import DeviceSettings; "
            f"device, _ = select_device(DeviceSettings('{last}', True, False, None)); "
            "print(torch.cuda.get_device_properties(device).uuid)")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == expected
