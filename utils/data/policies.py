"""The AutoAugment family: AutoAugment (Cubuk et al., 2019; its CIFAR-10, ImageNet and SVHN
policies), RandAugment (Cubuk et al., 2020) and TrivialAugment Wide (Mueller & Hutter, 2021),
with the ops, magnitude bins and sub-policies of torchvision's transforms.

A policy is used in one of two ways:
- ``torchvision_transform(policy)``: torchvision's own transform, per image, for the
  DataLoader paths (cifar.py --loader dataloader, imagenet.py's PIL path), seeded per image like
  the crops.
- ``draw`` (``epoch_draws``) + ``apply_policy``: on cifar.py's DeviceLoader. ``draw`` gives
  every image of an epoch its ops and magnitudes at once, as (N, K) tensors indexed by image
  (K = ops applied in sequence: 2 for AutoAugment's sub-policies, N for RandAugment, 1 for
  TrivialAugment); a skipped AutoAugment op becomes Identity. ``apply_policy`` applies a batch's rows with the
  batched ops of image_ops: per slot, one affine resample for the geometric ops, one blend, one
  table lookup.

The tables (which ops, their magnitude bins, AutoAugment's sub-policies and probabilities) are
read from torchvision's transforms, so the two paths cannot drift apart. The draws follow the
same distribution as torchvision's: a uniform sub-policy and each op with its probability; N
uniform ops at bin M; one uniform op at a uniform bin; signed magnitudes negated with
probability 1/2. The interpolation is torchvision's default, nearest, with black fill.
"""
import dataclasses
from typing import Optional, Sequence, Union

import torch
import torchvision.transforms as T

from ..seeding import POLICY, stream_generator
from ..settings.values import MAGNITUDE_BINS, AugmentPolicy
from . import image_ops
from .transfer import to_device

__all__ = ["OPS", "PolicyDraws", "torchvision_transform", "draw", "epoch_draws", "apply_policy"]

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
       "Invert")
OP = {name: k for k, name in enumerate(OPS)}


@dataclasses.dataclass(frozen=True)
class PolicyDraws:
    """Per image of an epoch (rows), the index into OPS and the signed magnitude of each of its
    K ops, applied left to right."""
    ops: torch.Tensor         # (N, K) int64
    magnitudes: torch.Tensor  # (N, K) float64

    def rows(self, index: torch.Tensor) -> "PolicyDraws":
        return PolicyDraws(self.ops[index], self.magnitudes[index])

    def to(self, device: Union[str, torch.device]) -> "PolicyDraws":
        return PolicyDraws(to_device(self.ops, device), to_device(self.magnitudes, device))


def torchvision_transform(policy: AugmentPolicy) -> Optional[torch.nn.Module]:
    """torchvision's transform of ``policy`` (None when off), for PIL images or uint8 tensors."""
    if policy.kind == "autoaugment":
        return T.AutoAugment(T.AutoAugmentPolicy(policy.autoaugment))
    if policy.kind == "randaugment":
        return T.RandAugment(policy.num_ops, policy.magnitude, MAGNITUDE_BINS)
    if policy.kind == "trivialaugment":
        return T.TrivialAugmentWide(MAGNITUDE_BINS)
    return None


def _space(policy: AugmentPolicy, transform, size):
    """torchvision's ops of ``policy`` in its order, as (op indices (S,), signed (S,), magnitude
    bins (S, bins) float64, zero for ops without a magnitude)."""
    if policy.kind == "trivialaugment":
        space = transform._augmentation_space(MAGNITUDE_BINS)
    else:
        bins = 10 if policy.kind == "autoaugment" else MAGNITUDE_BINS
        space = transform._augmentation_space(bins, size)
    bins = max(m.numel() for m, _ in space.values())
    ops = torch.tensor([OP[name] for name in space])
    signed = torch.tensor([s for _, s in space.values()])
    magnitudes = torch.stack([m.double().expand(bins) if m.ndim == 0 else m.double()
                              for m, _ in space.values()])
    return list(space), ops, signed, magnitudes


def epoch_draws(policy: AugmentPolicy, n: int, seed: int, epoch: int,
                size: Sequence[int]) -> PolicyDraws:
    """The draws of ``n`` images for ``epoch``, from the run's POLICY stream: row i is image
    i's, whatever batch it lands in."""
    return draw(policy, n, stream_generator(seed, epoch, POLICY), size)


def draw(policy: AugmentPolicy, n: int, generator: torch.Generator,
         size: Sequence[int]) -> PolicyDraws:
    """PolicyDraws of ``policy`` for ``n`` images of ``size`` (H, W) from ``generator``."""
    transform = torchvision_transform(policy)
    names, ops, signed, magnitudes = _space(policy, transform, size)
    if policy.kind == "autoaugment":
        table = transform.policies
        index = {name: k for k, name in enumerate(names)}
        sub_ops = torch.tensor([[index[op] for op, _, _ in sub] for sub in table])
        sub_p = torch.tensor([[p for _, p, _ in sub] for sub in table], dtype=torch.float64)
        sub_bin = torch.tensor([[b or 0 for _, _, b in sub] for sub in table])
        choice = torch.randint(len(table), (n,), generator=generator)
        applied = torch.rand(n, 2, generator=generator, dtype=torch.float64) <= sub_p[choice]
        kinds, bins = sub_ops[choice], sub_bin[choice]
        chosen = torch.where(applied, ops[kinds], OP["Identity"])
    else:
        k = policy.num_ops if policy.kind == "randaugment" else 1
        kinds = torch.randint(len(names), (n, k), generator=generator)
        if policy.kind == "randaugment":
            bins = torch.full((n, k), policy.magnitude)
        else:
            bins = torch.randint(MAGNITUDE_BINS, (n, k), generator=generator)
        chosen = ops[kinds]
    negate = signed[kinds] & (torch.randint(2, kinds.shape, generator=generator) == 1)
    magnitude = magnitudes[kinds, bins]
    magnitude = torch.where(chosen == OP["Identity"], 0.0,
                            torch.where(negate, -magnitude, magnitude))
    return PolicyDraws(chosen, magnitude)


def _geometric(images, op, m):
    """Shears (centred on the top-left corner, shear angle atan(m)), translations by int(m)
    pixels and rotations by m degrees about the centre, as torchvision's _apply_op asks of
    F.affine and F.rotate; every other image gets the identity matrix."""
    b, _, h, w = images.shape
    zero = torch.zeros_like(m)
    shear_angle = torch.rad2deg(torch.atan(m))
    is_shear = (op == OP["ShearX"]) | (op == OP["ShearY"])
    angle = torch.where(op == OP["Rotate"], -m, zero)  # rotate() turns the other way
    translate = torch.stack([torch.where(op == OP["TranslateX"], m.trunc(), zero),
                             torch.where(op == OP["TranslateY"], m.trunc(), zero)], 1)
    shear = torch.stack([torch.where(op == OP["ShearX"], shear_angle, zero),
                         torch.where(op == OP["ShearY"], shear_angle, zero)], 1)
    center = torch.stack([torch.where(is_shear, -0.5 * w, zero),
                          torch.where(is_shear, -0.5 * h, zero)], 1)
    return image_ops.affine(images, image_ops.inverse_affine(angle, translate, shear, center))


def _blends(images, op, m):
    """Brightness, Color (saturation), Contrast and Sharpness with factor 1 + m; factor 1 (the
    image itself) for every other op."""
    is_blend = ((op == OP["Brightness"]) | (op == OP["Color"]) | (op == OP["Contrast"]) |
                (op == OP["Sharpness"]))
    factor = torch.where(is_blend, 1.0 + m, 1.0)
    grey = image_ops.grayscale(images).float()
    degenerate = torch.where(
        (op == OP["Brightness"]).view(-1, 1, 1, 1), 0.0, torch.where(
            (op == OP["Color"]).view(-1, 1, 1, 1), grey, torch.where(
                (op == OP["Contrast"]).view(-1, 1, 1, 1), grey.mean(dim=(1, 2, 3), keepdim=True),
                image_ops.smoothed(images).float())))
    return image_ops.blend(images, degenerate, factor)


def _tables(images, op, m):
    """Posterize (m bits), Solarize (threshold m), Invert, AutoContrast and Equalize as
    per-channel tables; the identity table for every other op."""
    tables = image_ops.identity_tables(images)
    for name, make in (("Posterize", lambda: image_ops.posterize_tables(images, m)),
                       ("Solarize", lambda: image_ops.solarize_tables(images, m)),
                       ("Invert", lambda: image_ops.invert_tables(images)),
                       ("AutoContrast", lambda: image_ops.autocontrast_tables(images)),
                       ("Equalize", lambda: image_ops.equalize_tables(images))):
        tables = torch.where((op == OP[name]).view(-1, 1, 1), make(), tables)
    return image_ops.apply_tables(images, tables)


def apply_policy(images: torch.Tensor, draws: PolicyDraws) -> torch.Tensor:
    """A uint8 batch (B, 3, H, W) with image i put through its row of ``draws`` (PolicyDraws of
    B rows on the batch's device), op by op. Each image has one op per slot, and each kind of
    op leaves the images of the other kinds unchanged, so a slot is three batched passes."""
    for k in range(draws.ops.shape[1]):
        op, m = draws.ops[:, k], draws.magnitudes[:, k]
        images = _tables(_blends(_geometric(images, op, m), op, m), op, m)
    return images
