"""The AutoAugment family: AutoAugment (Cubuk et al., 2019; its CIFAR-10, ImageNet and SVHN
policies), RandAugment (Cubuk et al., 2020) and TrivialAugment Wide (Mueller & Hutter, 2021),
with the ops, magnitude bins and sub-policies of torchvision's transforms.

A policy is used in one of two ways:
- ``torchvision_transform()``: torchvision's own transform, per image, for the DataLoader paths
  (cifar.py --loader dataloader, imagenet.py's PIL path), seeded per image like the crops.
- ``draw`` + ``apply_policy``: on cifar.py's DeviceLoader. ``draw`` gives every image of an epoch
  its ops and magnitudes at once, as (N, K) tensors indexed by image (K = ops applied in
  sequence: 2 for AutoAugment's sub-policies, N for RandAugment, 1 for TrivialAugment); a
  skipped AutoAugment op becomes Identity. ``apply_policy`` applies a batch's rows with the
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
from . import image_ops
from .transfer import to_device

__all__ = ["OPS", "AUTOAUGMENT_POLICIES", "AugmentPolicy", "PolicyDraws", "apply_policy"]

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
       "Invert")
OP = {name: k for k, name in enumerate(OPS)}
AUTOAUGMENT_POLICIES = ("cifar10", "imagenet", "svhn")
MAGNITUDE_BINS = 31  # RandAugment's and TrivialAugment's torchvision default


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


@dataclasses.dataclass(frozen=True)
class AugmentPolicy:
    """--autoaugment POLICY, --randaugment N M or --trivialaugment; ``kind`` "none" is off."""
    kind: str = "none"
    autoaugment: str = "imagenet"
    num_ops: int = 2
    magnitude: int = 9

    def __post_init__(self) -> None:
        if self.kind not in ("none", "autoaugment", "randaugment", "trivialaugment"):
            raise ValueError(f"unknown augmentation policy {self.kind!r}")
        if self.autoaugment not in AUTOAUGMENT_POLICIES:
            raise ValueError(f"--autoaugment takes one of {', '.join(AUTOAUGMENT_POLICIES)}, "
                             f"got {self.autoaugment!r}")
        if self.num_ops < 1:
            raise ValueError(f"--randaugment N must be at least 1, got {self.num_ops}")
        if not 0 <= self.magnitude < MAGNITUDE_BINS:
            raise ValueError(f"--randaugment M must be in 0..{MAGNITUDE_BINS - 1} (torchvision's "
                             f"{MAGNITUDE_BINS} magnitude bins), got {self.magnitude}")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def torchvision_transform(self) -> Optional[torch.nn.Module]:
        """torchvision's transform of this policy (None when off), for PIL images or uint8
        tensors."""
        if self.kind == "autoaugment":
            return T.AutoAugment(T.AutoAugmentPolicy(self.autoaugment))
        if self.kind == "randaugment":
            return T.RandAugment(self.num_ops, self.magnitude, MAGNITUDE_BINS)
        if self.kind == "trivialaugment":
            return T.TrivialAugmentWide(MAGNITUDE_BINS)
        return None

    def _space(self, transform, size):
        """torchvision's ops of this policy in its order, as (op indices (S,), signed (S,),
        magnitude bins (S, bins) float64, zero for ops without a magnitude)."""
        if self.kind == "trivialaugment":
            space = transform._augmentation_space(MAGNITUDE_BINS)
        else:
            bins = 10 if self.kind == "autoaugment" else MAGNITUDE_BINS
            space = transform._augmentation_space(bins, size)
        bins = max(m.numel() for m, _ in space.values())
        ops = torch.tensor([OP[name] for name in space])
        signed = torch.tensor([s for _, s in space.values()])
        magnitudes = torch.stack([m.double().expand(bins) if m.ndim == 0 else m.double()
                                  for m, _ in space.values()])
        return list(space), ops, signed, magnitudes

    def epoch_draws(self, n: int, seed: int, epoch: int, size: Sequence[int]) -> PolicyDraws:
        """The draws of ``n`` images for ``epoch``, from the run's POLICY stream: row i is
        image i's, whatever batch it lands in."""
        return self.draw(n, stream_generator(seed, epoch, POLICY), size)

    def draw(self, n: int, generator: torch.Generator, size: Sequence[int]) -> PolicyDraws:
        """PolicyDraws for ``n`` images of ``size`` (H, W) from ``generator``."""
        transform = self.torchvision_transform()
        names, ops, signed, magnitudes = self._space(transform, size)
        if self.kind == "autoaugment":
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
            k = self.num_ops if self.kind == "randaugment" else 1
            kinds = torch.randint(len(names), (n, k), generator=generator)
            if self.kind == "randaugment":
                bins = torch.full((n, k), self.magnitude)
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
