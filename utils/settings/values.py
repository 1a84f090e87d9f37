"""The typed settings of a run: the values the flags are parsed into (utils.settings.flags builds
them from the table), and that every layer below the scripts reads. Each is a frozen dataclass of
plain values that checks itself on construction (a ValueError says what is wrong); none does any
work: the layers that use them (utils.train, utils.data, utils.session) hold the behaviour.

    ModelSettings   -a and its options, micro-batches, synchronised BatchNorm
    DataSettings    where the data is, how it is loaded and batched, the augmentation policy
    RecipeSettings  how the run trains: optimizer, LR Schedule, regularisers, EMA, precision
    DeviceSettings  --gpu-id and the speed flags of model preparation
    CheckpointPolicy  which checkpoints a run keeps
    LoopSettings    how the epoch loop shows and records itself (TTA, progress, TensorBoard)
    RunSettings     all of the above, and what this invocation does (resume, evaluate, folder)
"""
import dataclasses
from typing import Optional

__all__ = ["DEFAULT_MAX_PIXELS", "OPTIMIZERS", "AUTOAUGMENT_POLICIES", "MAGNITUDE_BINS", "AMP_MODES", "COMPILE_MODES",
           "INTERPOLATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "MAX_IMAGE_SIDE", "Schedule",
           "Regularisers",
           "AugmentPolicy", "ImageViews", "RecipeSettings", "DataSettings",
           "ModelSettings", "DeviceSettings", "CheckpointPolicy", "LoopSettings",
           "RunSettings"]

OPTIMIZERS = ("sgd", "adamw", "lars")
AUTOAUGMENT_POLICIES = ("cifar10", "imagenet", "svhn")
MAGNITUDE_BINS = 31  # RandAugment's and TrivialAugment's torchvision default
AMP_MODES = ("none", "bf16", "fp16")
# torch.compile's modes; reduce-overhead and max-autotune replay the step as CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
POLICY_KINDS = ("none", "autoaugment", "randaugment", "trivialaugment")
# imagenet.py's resampling filters: antialiased on every decode path.
INTERPOLATIONS = ("bilinear", "bicubic")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The largest side imagenet.py crops or resizes to: 4096 x 4096 float images are 200 MB each,
# already more than a batch of them fits anywhere; the papers use 224 to 600.
MAX_IMAGE_SIDE = 4096


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The LR plan: ``name`` step (x ``gamma`` at each of ``milestones``, in epochs) or cosine
    (to ``min_lr`` at ``epochs``), after ``warmup_epochs`` of linear warmup (may be
    fractional)."""
    name: str = "step"
    epochs: int = 300
    milestones: tuple = (150, 225)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0

    @property
    def per_iteration(self) -> bool:
        """Whether the LR changes every optimizer step (cosine, warmup), not once an epoch."""
        return self.name != "step" or self.warmup_epochs > 0


@dataclasses.dataclass(frozen=True)
class Regularisers:
    """The batch regularisers a run asked for (0 = off): Cutout square size, Random Erasing
    probability, and at most one mixing method (mixup / CutMix alpha, RICAP beta, Dual-Cutout
    alpha, which also needs a cutout size). An impossible combination is a ValueError."""
    cutout: int = 0
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ricap: float = 0.0
    dual_cutout: float = 0.0

    def __post_init__(self) -> None:
        mixing = [n for n, v in (("mixup", self.mixup), ("cutmix", self.cutmix),
                                 ("ricap", self.ricap), ("dual-cutout", self.dual_cutout)) if v]
        if len(mixing) > 1:
            raise ValueError(f"choose one of {', '.join('--' + m for m in mixing)}")
        if self.dual_cutout and not self.cutout:
            raise ValueError("--dual-cutout needs --cutout SIZE for the size of its squares")

    @property
    def enabled(self) -> bool:
        return any(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class AugmentPolicy:
    """--autoaugment POLICY, --randaugment N M or --trivialaugment; ``kind`` "none" is off.
    (utils.data.policies draws and applies it.)"""
    kind: str = "none"
    autoaugment: str = "imagenet"
    num_ops: int = 2
    magnitude: int = 9

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
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


@dataclasses.dataclass(frozen=True)
class RecipeSettings:
    """What a recipe is made of, as values (the recipe flag group of the scripts). The defaults
    are the reference's CIFAR recipe. ``amp`` and ``iter_size`` live here and nowhere else among
    the settings: the Recipe made of them (utils.train.recipe) holds the scaler, the autocast
    dtype and the accumulation."""
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    no_wd_norm: bool = False
    schedule: Schedule = Schedule()
    iter_size: int = 1
    label_smoothing: float = 0.0
    regularisers: Regularisers = Regularisers()
    ema: float = 0.0
    amp: str = "none"
    clip_grad: float = 0.0


@dataclasses.dataclass(frozen=True)
class ImageViews:
    """imagenet.py's input (torchvision's reference-script flags): RandomResizedCrop to
    ``train_crop``; for evaluation Resize(``val_resize``) of the shorter side then
    CenterCrop(``val_crop``); the resampling ``interpolation``; and the per-channel ``mean`` and
    ``std`` of the normalisation. The defaults are ImageNet's 224 / 256 / 224, bilinear."""
    train_crop: int = 224
    val_resize: int = 256
    val_crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.val_crop > self.val_resize:
            raise ValueError(f"--val-crop-size {self.val_crop} is larger than --val-resize-size "
                             f"{self.val_resize}: the centre crop must fit in the resized image")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"--interpolation takes one of {', '.join(INTERPOLATIONS)}, got "
                             f"{self.interpolation!r}")


# The most pixels an image file may have unless --max-pixels says otherwise: Pillow's own
# decompression-bomb limit, twice its Image.MAX_IMAGE_PIXELS (1024 ** 3 // 4 // 3 = 89,478,485).
DEFAULT_MAX_PIXELS = 2 * (1024 ** 3 // 4 // 3)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Where the data is (``root``, and cifar.py's ``dataset`` and ``download``), how it is
    loaded (cifar.py's ``loader``, imagenet.py's ``decode``, ``workers`` processes) and batched
    (``train_batch``, ``test_batch``), the augmentation ``policy`` of its training images, and
    the share of them held out for validation (``val_split``, 0: none, the test split is
    evaluated every epoch as in the reference), imagenet.py's input ``views``, and the most
    pixels an image file may have (``max_pixels``); None for a flag the script does not have."""
    root: str
    workers: int
    train_batch: int
    test_batch: int
    dataset: Optional[str] = None
    download: bool = False
    loader: Optional[str] = None
    decode: Optional[str] = None
    policy: AugmentPolicy = AugmentPolicy()
    val_split: float = 0.0
    views: ImageViews = ImageViews()
    max_pixels: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """-a and its options: ``options`` maps a constructor keyword to its flag's value,
    ``flag_names`` that keyword to the flag, ``given`` the keywords written on the command line
    (an architecture that does not take one of them is refused, not silently built without it);
    ``ghost_batch`` (micro-batches of N images, 0: off) and ``sync_bn``, which the session's
    build applies to the network the constructor returns."""
    arch: str
    options: dict
    flag_names: dict
    given: frozenset
    ghost_batch: int = 0
    sync_bn: bool = False


@dataclasses.dataclass(frozen=True)
class DeviceSettings:
    """--gpu-id (and whether it was written) and the speed flags of model preparation. (The
    precision, --amp, is the recipe's: RecipeSettings.amp.)"""
    gpu_id: str
    gpu_id_given: bool
    channels_last: bool
    compile: Optional[str] = None  # torch.compile's mode; None: eager
    deterministic: bool = False


@dataclasses.dataclass(frozen=True)
class CheckpointPolicy:
    """Which checkpoints a run keeps: the last ``keep`` epochs' own copies besides
    checkpoint.pth.tar (0: none), a recovery checkpoint every ``save_every`` minutes (0: none),
    and model_best.pth.tar by the plain validation accuracy (``best_by`` "valid") or the flip
    TTA one ("tta"). (--keep-checkpoints, --save-every, --best-by.)"""
    keep: int = 0
    save_every: float = 0.0
    best_by: str = "valid"


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """How the epoch loop shows and records itself: each epoch also evaluated with flip
    test-time augmentation (``tta``, a log column), progress lines (``show_progress``),
    TensorBoard files (``tensorboard``) with the step's loss every ``log_every`` optimizer steps
    (0: epochs only), the curves of log.txt drawn at the end (``curves``). (--tta,
    --no-progress, --tensorboard, --log-every, --no-curves; these defaults are the flags'.)"""
    tta: bool = False
    show_progress: bool = True
    curves: bool = True
    tensorboard: bool = False
    log_every: int = 50


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything a run was asked to do, as typed values (``auto_resume`` was decided on before:
    utils.settings.flags.Invocation); ``recorded`` is what its checkpoints
    record (the recorded groups' flags), ``flags`` every flag's value and ``command`` the script
    and its command line (for run.json); ``changed``: the recorded flags a --resume gave anew,
    {name: [the checkpoint's value, this run's]}, which take effect from its first epoch."""
    model: ModelSettings
    data: DataSettings
    recipe: RecipeSettings
    device: DeviceSettings
    seed: Optional[int]
    start_epoch: int
    resume: str
    evaluate: bool
    weights: str
    run_folder: str
    checkpoints: CheckpointPolicy
    loop: LoopSettings
    replace: bool
    recorded: dict
    flags: dict
    command: tuple
    changed: dict = dataclasses.field(default_factory=dict)
    pretrained: bool = False
    auto_resume: bool = False

    @property
    def epochs(self) -> int:
        return self.recipe.schedule.epochs

    def with_seed(self, seed: int) -> "RunSettings":
        """The settings with the run's seed decided (recorded, so a resume draws the same)."""
        return dataclasses.replace(self, seed=seed, recorded={**self.recorded, "manualSeed": seed},
                                   flags={**self.flags, "manualSeed": seed})
