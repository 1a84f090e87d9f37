"""The AutoAugment family (--autoaugment, --randaugment, --trivialaugment).

On cifar.py's DeviceLoader the ops run batched, one op and magnitude per image: each batched op
gives exactly torchvision's per-image pixels on uint8 tensors (tolerance 0), every image's draws
come from (seed, epoch, image) alone, and the draws follow torchvision's policies. The DataLoader
paths use torchvision's transforms themselves."""
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
# The per-image op torchvision's three policies apply: the reference the batched ops must match.
from torchvision.transforms.autoaugment import _apply_op

import cifar
from builders import random_images
from utils.data.datasets import ArrayDataset
from utils.data.loaders import BatchFormat, CropFlip, DeviceLoader, EpochBatches
from utils.data.policies import OPS, PolicyDraws, apply_policy, draw, torchvision_transform
from utils.settings.values import AugmentPolicy
from utils.session.stages import read_settings

POLICIES = {"autoaugment-cifar10": AugmentPolicy("autoaugment", autoaugment="cifar10"),
            "autoaugment-imagenet": AugmentPolicy("autoaugment", autoaugment="imagenet"),
            "autoaugment-svhn": AugmentPolicy("autoaugment", autoaugment="svhn"),
            "randaugment-2-9": AugmentPolicy("randaugment", num_ops=2, magnitude=9),
            "randaugment-3-30": AugmentPolicy("randaugment", num_ops=3, magnitude=30),
            "trivialaugment": AugmentPolicy("trivialaugment")}

# The widest magnitudes any policy gives each op (TrivialAugment Wide's, both signs).
WIDEST = {"ShearX": 0.99, "ShearY": 0.99, "TranslateX": 32.0, "TranslateY": 32.0,
          "Rotate": 135.0, "Brightness": 0.99, "Color": 0.99, "Contrast": 0.99,
          "Sharpness": 0.99}


def photo_like(n, seed=0, size=32):
    """uint8 images with structure at several scales (smooth colour fields plus noise), so
    histogram, contrast and sharpening ops have something to act on."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (n, 3, 6, 6), generator=g).float()
    fine = torch.randn(n, 3, size, size, generator=g) * 12
    smooth = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return (smooth + fine).clamp(0, 255).to(torch.uint8)


def torchvision_pixels(images, draws):
    """Each image put through its row of ``draws`` by torchvision's own per-image op."""
    out = []
    for image, ops, magnitudes in zip(images, draws.ops, draws.magnitudes):
        for op, m in zip(ops.tolist(), magnitudes.tolist()):
            image = _apply_op(image, OPS[op], m, T.InterpolationMode.NEAREST, None)
        out.append(image)
    return torch.stack(out)


def magnitudes_for(name, n):
    if name in WIDEST:
        return torch.linspace(-WIDEST[name], WIDEST[name], n).double()
    if name == "Posterize":
        return torch.arange(n).remainder(8).add(1).double()  # 1..8 bits
    if name == "Solarize":
        return torch.linspace(0, 255, n).double()
    return torch.zeros(n, dtype=torch.float64)


@pytest.mark.parametrize("name", OPS)
def test_each_batched_op_gives_torchvisions_pixels(name):
    images = photo_like(48)
    draws = PolicyDraws(torch.full((48, 1), OPS.index(name)), magnitudes_for(name, 48)[:, None])
    out = apply_policy(images, draws)
    assert out.dtype == torch.uint8
    assert torch.equal(out, torchvision_pixels(images, draws))


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_a_policys_draws_give_torchvisions_pixels_image_by_image(policy):
    images = photo_like(64, seed=1)
    draws = draw(policy, 64, torch.Generator().manual_seed(3), (32, 32))
    assert torch.equal(apply_policy(images, draws), torchvision_pixels(images, draws))


def test_channels_last_batches_give_the_same_pixels():
    images = photo_like(16, seed=2)
    draws = draw(POLICIES["trivialaugment"], 16, torch.Generator().manual_seed(0), (32, 32))
    last = images.to(memory_format=torch.channels_last)
    assert torch.equal(apply_policy(last, draws), apply_policy(images, draws))


def space(policy):
    """torchvision's (op name -> (magnitude bins, signed)) for this policy at 32x32."""
    transform = torchvision_transform(policy)
    if policy.kind == "trivialaugment":
        return transform._augmentation_space(31)
    return transform._augmentation_space(10 if policy.kind == "autoaugment" else 31, (32, 32))


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_every_draw_is_one_torchvision_can_make(policy):
    draws = draw(policy, 4000, torch.Generator().manual_seed(0), (32, 32))
    ops = space(policy)
    for op, m in zip(draws.ops.flatten().tolist(), draws.magnitudes.flatten().tolist()):
        name = OPS[op]
        if name == "Identity":
            assert m == 0.0
            continue
        bins, signed = ops[name]
        allowed = {float(b) for b in bins.flatten()}
        assert abs(m) in allowed and (signed or m >= 0), (name, m)
        if policy.kind == "randaugment" and bins.ndim:
            assert abs(m) == float(bins[policy.magnitude])


def shares(draws, slot):
    counts = torch.bincount(draws.ops[:, slot], minlength=len(OPS)).double()
    return counts / counts.sum()


def test_random_and_trivial_augment_choose_ops_uniformly_with_either_sign():
    for policy in (POLICIES["randaugment-2-9"], POLICIES["trivialaugment"]):
        draws = draw(policy, 40000, torch.Generator().manual_seed(1), (32, 32))
        names = list(space(policy))
        for slot in range(draws.ops.shape[1]):
            share = shares(draws, slot)
            for name in names:
                assert abs(share[OPS.index(name)] - 1 / len(names)) < 0.01, (policy, name)
        signed = torch.isin(draws.ops, torch.tensor([OPS.index(n) for n in WIDEST]))
        nonzero = draws.magnitudes[signed & (draws.magnitudes != 0)]
        assert abs((nonzero < 0).double().mean() - 0.5) < 0.01


def test_autoaugment_applies_each_op_with_its_probability():
    policy = POLICIES["autoaugment-cifar10"]
    draws = draw(policy, 60000, torch.Generator().manual_seed(2), (32, 32))
    table = torchvision_transform(policy).policies
    # Expected share of each op in each slot: a uniform sub-policy, then its op with prob. p.
    for slot in range(2):
        expected = torch.zeros(len(OPS), dtype=torch.float64)
        for sub in table:
            name, p, _ = sub[slot]
            expected[OPS.index(name)] += p / len(table)
            expected[OPS.index("Identity")] += (1 - p) / len(table)
        assert (shares(draws, slot) - expected).abs().max() < 0.01


def policy_images_by_index(batch_size, policy, epoch=1, seed=7):
    data = ArrayDataset(photo_like(20, seed=4), torch.zeros(20, dtype=torch.long), ["x"])
    loader = DeviceLoader(data, EpochBatches(len(data), batch_size, True, seed), "cpu",
                          BatchFormat((0.5,) * 3, (0.25,) * 3), CropFlip(policy=policy))
    loader.set_epoch(epoch)
    idx = torch.cat(list(loader.batches))
    x = torch.cat([b for b, _ in loader])
    return x[idx.argsort()]


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_device_loader_draws_depend_on_seed_epoch_and_image_only(policy):
    a = policy_images_by_index(3, policy)
    assert torch.equal(a, policy_images_by_index(8, policy))  # not on the batch layout
    assert torch.equal(a, policy_images_by_index(20, policy))
    assert not torch.equal(a, policy_images_by_index(3, policy, epoch=2))
    assert not torch.equal(a, policy_images_by_index(3, policy, seed=8))


def test_the_policy_follows_the_crops_and_leaves_their_draws_alone():
    data = ArrayDataset(photo_like(20, seed=4), torch.zeros(20, dtype=torch.long), ["x"])
    plain = DeviceLoader(data, EpochBatches(20, 20, True, 7), "cpu",
                         BatchFormat((0.0,) * 3, (1 / 255,) * 3), CropFlip())
    policy = POLICIES["autoaugment-svhn"]
    with_policy = DeviceLoader(data, EpochBatches(20, 20, True, 7), "cpu",
                               BatchFormat((0.0,) * 3, (1 / 255,) * 3), CropFlip(policy=policy))
    for loader in (plain, with_policy):
        loader.set_epoch(3)
    cropped, _ = next(iter(plain))
    augmented, _ = next(iter(with_policy))
    idx = next(iter(with_policy.batches))
    expected = apply_policy(cropped.round().to(torch.uint8), with_policy.policy_draws().rows(idx))
    assert torch.equal(augmented.round().to(torch.uint8), expected)
    assert not torch.equal(augmented, cropped)


def cifar_train_loader(argv, loader):
    settings, _ = read_settings(cifar.cifar_flags(), ["--loader", loader, "-j", "0"] + argv)
    data = random_images(12)
    return cifar.cifar_loaders(data, data, settings.data, "cpu", 3, False).train


@pytest.mark.parametrize("flags, transform", [
    (["--autoaugment", "svhn"], T.AutoAugment(T.AutoAugmentPolicy.SVHN)),
    (["--randaugment", "3", "5"], T.RandAugment(3, 5)),
    (["--trivialaugment"], T.TrivialAugmentWide())], ids=["aa", "ra", "ta"])
def test_the_dataloader_path_uses_torchvisions_transform_after_crop_and_flip(flags, transform):
    loader = cifar_train_loader(flags, "dataloader")
    steps = loader.loader.dataset.transform.transforms
    assert [type(t) for t in steps] == [T.RandomCrop, T.RandomHorizontalFlip, type(transform),
                                        T.PILToTensor]
    assert repr(steps[2]) == repr(transform)


def test_the_device_path_gets_the_policy_of_the_flags():
    loader = cifar_train_loader(["--randaugment", "3", "5"], "device")
    assert loader.policy == AugmentPolicy("randaugment", num_ops=3, magnitude=5)
    assert cifar_train_loader([], "device").policy.enabled is False
