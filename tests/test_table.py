"""utils.settings.table and utils.settings.flag: a flag is declared once. Its entry says where
its value goes (``into``) and what a resume does with it (``on_resume``, ``before_flag``); every
typed setting has exactly one flag that feeds it; and no entry point (the scripts, bench.py,
export.py, predict.py) accepts a flag and then ignores it."""
import dataclasses
import os
import subprocess
import sys

import pytest
import torch.nn as nn

from benchmarks.step import model_settings as bench_model_settings
from builders import REPO
from models.norms import NORM_DEFAULTS, GhostBatchNorm2d, NormChoice
from utils.scripts import cifar_flags, imagenet_flags
from utils.session.build import build_model
from utils.settings.flag import UsageError
from utils.settings.resume import applied_on_resume, before_the_flag
from utils.settings.values import (CheckpointPolicy, DataSettings, DeviceSettings, ImageViews,
                                   LoopSettings, ModelSettings, RecipeSettings, Regularisers,
                                   RunSettings, Schedule)

SCRIPTS = {"cifar.py": (cifar_flags, []), "imagenet.py": (imagenet_flags, ["--data", "d"])}
TARGETS = {"model": ModelSettings, "data": DataSettings, "views": ImageViews,
           "schedule": Schedule, "regularisers": Regularisers, "recipe": RecipeSettings,
           "device": DeviceSettings, "checkpoints": CheckpointPolicy, "loop": LoopSettings,
           "run": RunSettings}
# Fields no single flag feeds: the settings objects nested in others, and what parsing derives.
COMPOSED = {"options", "flag_names", "given", "policy", "views", "schedule", "regularisers",
            "model", "data", "recipe", "device", "checkpoints", "loop", "gpu_id_given", "recorded",
            "flags", "command", "changed"}

# For every flag: (the flags it needs beside it, the flag written with a value other than its
# default). A flag added to the table without an example here fails the test below: say how a
# user writes it, and the test shows where its value lands.
EXAMPLES = {
    "alpha": (["-a", "pyramidnet"], ["--alpha", "12"]),
    "amp": ([], ["--amp", "bf16"]),
    "arch": ([], ["-a", "l_resnet18"]),
    "autoaugment": ([], ["--autoaugment", "svhn"]),
    "auto_resume": ([], ["--auto-resume"]),
    "base_channels": (["-a", "shake_shake"], ["--base-channels", "32"]),
    "base_width": (["-a", "resnext50"], ["--base-width", "8"]),
    "bcn_speed": (["--norm", "bcn", "--ghost-batch", "2"], ["--bcn-speed", "0.1"]),
    "best_by": (["--tta", "flip"], ["--best-by", "tta"]),
    "block_name": (["-a", "resnet"], ["--block-name", "Bottleneck"]),
    "cardinality": (["-a", "resnext50"], ["--cardinality", "4"]),
    "channels_last": ([], ["--channels-last"]),
    "checkpoint": ([], ["-c", "elsewhere"]),
    "clip_grad": ([], ["--clip-grad", "1"]),
    "compile": ([], ["--compile"]),
    "compressionRate": (["-a", "densenet"], ["--compressionRate", "1"]),
    "cutmix": ([], ["--cutmix", "1"]),
    "cutout": ([], ["--cutout", "8"]),
    "data": ([], ["--data", "elsewhere"]),
    "dataset": ([], ["-d", "cifar100"]),
    "decode": ([], ["--decode", "pil"]),
    "depth": (["-a", "resnet"], ["--depth", "20"]),
    "deterministic": ([], ["--deterministic"]),
    "drop": (["-a", "wrn"], ["--drop", "0.3"]),
    "dual_cutout": (["--cutout", "8"], ["--dual-cutout", "0.1"]),
    "ema": ([], ["--ema", "0.99"]),
    "epochs": ([], ["--epochs", "400"]),
    "evaluate": (["--weights", "w"], ["-e"]),
    "gamma": ([], ["--gamma", "0.2"]),
    "ghost_batch": ([], ["--ghost-batch", "2"]),
    "gn_groups": (["--norm", "gn"], ["--gn-groups", "16"]),
    "gn_narrow": (["--norm", "gn"], ["--gn-narrow", "channels"]),
    "interpolation": ([], ["--interpolation", "bicubic"]),
    "mean": ([], ["--mean", "0.5", "0.5", "0.5"]),
    "std": ([], ["--std", "0.2", "0.2", "0.2"]),
    "train_crop_size": ([], ["--train-crop-size", "160"]),
    "val_crop_size": ([], ["--val-crop-size", "160"]),
    "val_resize_size": ([], ["--val-resize-size", "300"]),
    "gpu_id": ([], ["--gpu-id", "cpu"]),
    "growthRate": (["-a", "densenet"], ["--growthRate", "24"]),
    "iter_size": ([], ["--iter-size", "2"]),
    "keep_checkpoints": ([], ["--keep-checkpoints", "2"]),
    "label_smoothing": ([], ["--label-smoothing", "0.1"]),
    "loader": ([], ["--loader", "dataloader"]),
    "lr": ([], ["--lr", "0.2"]),
    "log_every": (["--tensorboard"], ["--log-every", "10"]),
    "tensorboard": ([], ["--tensorboard"]),
    "manualSeed": ([], ["--manualSeed", "3"]),
    "mixup": ([], ["--mixup", "0.2"]),
    "momentum": ([], ["--momentum", "0.5"]),
    "nesterov": ([], ["--nesterov"]),
    "no_download": ([], ["--no-download"]),
    "no_progress": ([], ["--no-progress"]),
    "no_wd_norm": ([], ["--no-wd-norm"]),
    "norm": ([], ["--norm", "gn"]),
    "optimizer": ([], ["--optimizer", "adamw"]),
    "pretrained": ([], ["--pretrained"]),
    "randaugment": ([], ["--randaugment", "2", "9"]),
    "random_erasing": ([], ["--random-erasing", "0.5"]),
    "replace": ([], ["--replace"]),
    "resume": ([], ["--resume", "elsewhere"]),
    "ricap": ([], ["--ricap", "0.3"]),
    "save_every": ([], ["--save-every", "5"]),
    "schedule": ([], ["--schedule", "10", "20"]),
    "scheduler": ([], ["--scheduler", "cosine"]),
    "se_reduction": (["-a", "se_resnet50"], ["--se-reduction", "8"]),
    "start_epoch": ([], ["--start-epoch", "1"]),
    "sync_bn": ([], ["--sync-bn"]),
    "test_batch": ([], ["--test-batch", "50"]),
    "max_pixels": ([], ["--max-pixels", "500000000"]),
    "train_batch": ([], ["--train-batch", "64"]),
    "trivialaugment": ([], ["--trivialaugment"]),
    "tta": ([], ["--tta", "flip"]),
    "val_split": ([], ["--val-split", "0.1"]),
    "warmup_epochs": ([], ["--warmup-epochs", "1"]),
    "min_lr": (["--scheduler", "cosine"], ["--min-lr", "0.001"]),
    "no_curves": ([], ["--no-curves"]),
    "weight_decay": ([], ["--wd", "0.001"]),
    "weights": ([], ["--weights", "w"]),
    "widen_factor": (["-a", "wrn"], ["--widen-factor", "2"]),
    "workers": ([], ["-j", "1"]),
    "ws": ([], ["--ws"]),
    "ws_form": (["--ws"], ["--ws-form", "var"]),
    "zero_init_residual": (["-a", "resnet"], ["--zero-init-residual"]),
}


def typed(settings: RunSettings) -> RunSettings:
    """The typed values alone: not the raw flag values, the command line or what was written."""
    return dataclasses.replace(settings, flags={}, command=(), recorded={},
                               model=dataclasses.replace(settings.model, given=frozenset()))


def settings_of(script, argv):
    make, base = SCRIPTS[script]
    flags = make()
    return flags.settings(flags.parse(base + argv))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_says_where_its_value_goes(script):
    for name, flag in SCRIPTS[script][0]().flags.items():
        assert flag.into, f"{flag.long} has no destination (into)"
        if flag.target != "options":
            fields = {f.name for f in dataclasses.fields(TARGETS[flag.target])} \
                if flag.target in TARGETS else {"autoaugment", "randaugment", "trivialaugment"}
            assert flag.field in fields, f"{flag.long}: {flag.into} is no field"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_setting_has_one_flag_that_feeds_it(script):
    flags = SCRIPTS[script][0]().flags.values()
    for target, cls in TARGETS.items():
        for field in dataclasses.fields(cls):
            if field.name in COMPOSED:
                continue
            feeding = [flag.long for flag in flags if flag.into == f"{target}.{field.name}"]
            has_default = field.default is not dataclasses.MISSING
            assert len(feeding) == 1 or (not feeding and has_default), \
                f"{cls.__name__}.{field.name} is fed by {feeding or 'no flag'}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_flag_is_accepted_and_ignored(script):
    """Each flag written with another value lands in the typed settings, or is refused in one
    line that names it; and each lands somewhere in at least one script."""
    names = set(SCRIPTS[script][0]().flags)
    assert names <= set(EXAMPLES), f"no example for {sorted(names - set(EXAMPLES))}"
    for name in sorted(names):
        companions, written = EXAMPLES[name]
        try:
            before = typed(settings_of(script, companions))
            after = settings_of(script, companions + written)
        except UsageError as refusal:
            assert written[0] in str(refusal) or "architecture" in str(refusal), (name, refusal)
            continue
        assert typed(after) != before, f"{script} {' '.join(written)} changed no setting"


def test_every_flag_is_accepted_by_one_script_at_least():
    accepted = set()
    for script in SCRIPTS:
        for name in SCRIPTS[script][0]().flags:
            companions, written = EXAMPLES[name]
            try:
                settings_of(script, companions + written)
                accepted.add(name)
            except UsageError:
                pass
    assert set(EXAMPLES) == accepted, sorted(set(EXAMPLES) - accepted)


def test_what_a_resume_does_with_a_flag_comes_from_its_entry():
    flags = cifar_flags().flags
    applied = applied_on_resume(flags)
    assert {"epochs", "lr", "momentum", "weight_decay", "ema", "amp", "autoaugment"} <= applied
    assert not {"train_batch", "iter_size", "schedule", "gamma", "manualSeed", "norm", "ws",
                "optimizer", "scheduler", "tta"} & applied
    assert before_the_flag(flags) == {"gn_groups": 32, "gn_narrow": "channels", "ws_form": "std"}
    # Only recorded flags say anything to a resume: a per-run flag is this run's own.
    per_run = {"workers", "test_batch", "gpu_id", "checkpoint", "resume", "data"}
    assert not per_run & applied


def test_the_norm_defaults_come_from_norm_choice_but_cifar_groups():
    """NormChoice holds the norms' defaults (the GroupNorm paper's G=32); cifar.py's own default
    is G=8, for its networks of 16 to 64 channels (TRAINING.md: at 32 every layer of them is
    split into groups of two channels, and GN+WS starts slower than BN)."""
    flags = cifar_flags().flags
    assert NORM_DEFAULTS == {"norm": "bn", "gn_groups": 32, "gn_narrow": "pairs",
                             "bcn_speed": 0.01}
    for name in ("gn_groups", "gn_narrow", "bcn_speed"):
        assert flags[name].default == getattr(NormChoice, name)
    for arch in ("resnet", "l_resnet"):
        settings = settings_of("cifar.py", ["-a", arch])
        assert settings.model.options["gn_groups"] == 8
    assert settings_of("imagenet.py", ["-a", "l_resnet50"]).model.options["gn_groups"] == 32
    help_text = cifar_flags().parser.format_help()
    assert "(default: 8)" in help_text and "(default: 0.01)" in help_text
    assert "(default: 32)" in imagenet_flags().parser.format_help()


def test_bench_builds_the_model_training_builds():
    """bench.py reads the model flags with the scripts' parser and builds through
    build_model: micro-batches apply, and what cannot apply is refused."""
    archs, choice, _ = bench_model_settings(["-a", "resnet", "--depth", "8",
                                             "--ghost-batch", "2"])
    model = build_model(archs, choice, 10, device=None)
    assert any(isinstance(m, GhostBatchNorm2d) for m in model.modules())
    archs, choice, _ = bench_model_settings(["-a", "resnet", "--depth", "8", "--sync-bn"])
    import torch
    with pytest.raises(UsageError, match="--sync-bn needs CUDA GPUs under torchrun"):
        build_model(archs, choice, 10, torch.device("cpu"))
    with pytest.raises(UsageError, match="--ghost-batch needs batch statistics"):
        bench_model_settings(["-a", "l_resnet", "--ghost-batch", "2"])


def test_bench_step_times_a_model_with_its_micro_batches_beside_the_same_without(capsys):
    from benchmarks.cli import main
    main(["step", "-a", "resnet", "--depth", "8", "--ghost-batch", "2", "--batch", "4",
          "--device", "cpu", "--warmup", "0", "--windows", "1", "--steps", "1", "--no-twin"])
    out = capsys.readouterr().out
    assert "resnet-8 ghost-batch=2 amp=none" in out
    assert "ratio: resnet-8 ghost-batch=2 amp=none channels_last=False compile=none is" in out


@pytest.mark.parametrize("tool, argv", [
    ("bench.py", ["pipeline", "cifar", "--depth", "8"]),
    ("bench.py", ["overhead", "--ghost-batch", "2"]),
    ("export.py", ["--resume", "nowhere", "-o", "x.pt2", "--depth", "8"]),
    ("predict.py", ["--resume", "nowhere", "--depth", "8", "x.jpg"]),
])
def test_a_tool_refuses_a_flag_it_does_not_use(tool, argv, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, tool)] + argv, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


def test_a_model_without_batch_norm_refuses_ghost_batches_at_build():
    archs, choice, _ = bench_model_settings(["-a", "resnet", "--depth", "8"])
    choice = dataclasses.replace(choice, ghost_batch=2, options={**choice.options, "norm": "gn"})
    with pytest.raises(UsageError, match="--ghost-batch needs batch statistics; resnet has no"):
        build_model(archs, choice, 10)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in
                   build_model(archs, dataclasses.replace(choice, ghost_batch=0), 10).modules())
