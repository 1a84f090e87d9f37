"""utils.settings.flags: every flag is in a group that says whether checkpoints record it; a
resumed run takes back exactly the recorded flags; impossible values are refused before any
data."""
import pytest
import torch

import cifar
import imagenet
from builders import TINY_MODEL, help_of_each_option, make_cifar_pickles, tiny_run
from models import imagenet as imagenet_models
from utils.settings.values import AugmentPolicy
from utils.settings.architecture import check_arch
from utils.settings.flag import PER_RUN, RECORDED, UsageError
from utils.session.stages import read_settings
from utils.scripts import script_flags_for

SCRIPTS = {"cifar": (cifar.cifar_flags, []), "imagenet": (imagenet.imagenet_flags, ["--data", "."])}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_is_recorded_or_deliberately_per_run(script):
    make, argv = SCRIPTS[script]
    flags = make()
    settings, _ = read_settings(flags, argv)  # parse refuses a flag of no group
    recorded, per_run = flags.dests(RECORDED), flags.dests(PER_RUN)
    assert not recorded & per_run
    # What a checkpoint records is the recorded groups' flags, all of them and only them.
    assert set(settings.recorded) == recorded
    for name in ("arch", "depth", "train_batch", "lr", "schedule", "mixup", "ema", "amp",
                 "manualSeed", "iter_size", "epochs"):
        assert name in recorded
    for name in ("resume", "evaluate", "gpu_id", "checkpoint", "workers", "test_batch",
                 "start_epoch", "compile", "channels_last", "weights", "no_progress", "data"):
        assert name in per_run


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_flag_added_outside_the_groups_is_refused(script):
    make, argv = SCRIPTS[script]
    flags = make()
    flags.parser.add_argument("--new-recipe-knob", type=float, default=0.5)
    with pytest.raises(RuntimeError, match="new_recipe_knob.*no flag group"):
        read_settings(flags, argv)


def test_resume_takes_back_the_recorded_flags_only(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "data"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    cifar.main(TINY_MODEL + tiny_run(seed=7, train_batch=8, test_batch=4) +
               ["--data", data, "--epochs", "1", "-c", run, "--lr", "0.05", "--cutout", "4"])
    saved = torch.load(f"{run}/checkpoint.pth.tar", weights_only=True)["args"]
    assert saved["lr"] == 0.05 and saved["manualSeed"] == 7 and "test_batch" not in saved
    settings, _ = read_settings(cifar.cifar_flags(), ["--resume", run, "--lr", "0.2"])
    assert settings.model.arch == "l_resnet" and settings.model.options["depth"] == 8
    assert settings.recipe.lr == 0.2  # written again: the command line wins
    assert settings.recipe.regularisers.cutout == 4 and settings.seed == 7
    assert settings.data.test_batch == 100  # per-run: this run's default, not the saved one
    assert settings.run_folder == run


def test_a_policy_flag_on_resume_replaces_the_checkpoints_policy(tmp_path):
    data = make_cifar_pickles(str(tmp_path / "data"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    cifar.main(TINY_MODEL + tiny_run(seed=7, train_batch=8, test_batch=4) +
               ["--data", data, "--epochs", "1", "-c", run, "--randaugment", "2", "9"])
    saved = torch.load(f"{run}/checkpoint.pth.tar", weights_only=True)["args"]
    assert saved["randaugment"] == [2, 9] and saved["autoaugment"] is None
    resumed, _ = read_settings(cifar.cifar_flags(), ["--resume", run])
    assert resumed.data.policy == AugmentPolicy("randaugment", num_ops=2, magnitude=9)
    # The three flags are one choice: another one written replaces it, with no conflict.
    changed, _ = read_settings(cifar.cifar_flags(), ["--resume", run, "--autoaugment", "cifar10"])
    assert changed.data.policy == AugmentPolicy("autoaugment", autoaugment="cifar10")


@pytest.mark.parametrize("script, argv, message", [
    (cifar.cifar_flags, ["-a", "resnet", "--depth", "20", "--cardinality", "16"],
     "--cardinality does not apply to resnet (it takes --block-name, --depth, "
     "--zero-init-residual and the norm flags --norm, --ws, --ws-form, --gn-groups, "
     "--gn-narrow, --bcn-speed)"),
    (cifar.cifar_flags, ["-a", "l_resnet", "--depth", "20", "--drop", "0.3"],
     "--drop does not apply to l_resnet"),
    (imagenet.imagenet_flags, ["-a", "resnet18", "--data", ".", "--depth", "16"],
     "--depth does not apply to resnet18 (it takes --zero-init-residual and the norm flags "
     "--norm, --ws, --ws-form, --gn-groups, --gn-narrow, --bcn-speed)"),
    (imagenet.imagenet_flags, ["-a", "l_resnet50", "--data", ".", "--depth", "101"],
     "--depth does not apply to l_resnet50 (it takes --zero-init-residual and the norm "
     "flags --ws-form, --gn-groups, --gn-narrow)"),
])
def test_a_model_flag_the_architecture_does_not_take_is_refused(script, argv, message):
    with pytest.raises(UsageError) as error:
        read_settings(script(), argv)
    assert message in str(error.value)


def test_unknown_arch_names_the_closest():
    with pytest.raises(UsageError, match="did you mean.*l_resnet50"):
        check_arch("l_resnet05", sorted(imagenet_models.MODELS))


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--mixup", "0.2", "--ricap", "1"], "choose one of --mixup, --ricap"),
    (["--test-batch", "0"], "--test-batch must be at least 1"),
    (["-a", "resnt"], "did you mean resnet"),
])
def test_impossible_values_are_refused_at_parse(argv, message):
    with pytest.raises(UsageError, match=message):
        read_settings(cifar.cifar_flags(), argv)


def test_a_milestone_the_run_never_reaches_is_warned_about(capsys):
    read_settings(cifar.cifar_flags(), ["--epochs", "2", "--schedule", "81", "122"])
    assert capsys.readouterr().err.splitlines() == [
        "warning: --schedule milestone(s) 81 122 at or past --epochs 2 never lower the LR in "
        "this run"]
    for argv in (["--epochs", "164", "--schedule", "81", "122"],
                 ["--epochs", "2", "--scheduler", "cosine"],
                 ["-e", "--epochs", "2", "--weights", "w.pth"]):
        read_settings(cifar.cifar_flags(), argv)
        assert capsys.readouterr().err == "", argv


def test_loader_workers_default_to_the_cores_each_process_has(monkeypatch):
    import utils.settings.flags
    monkeypatch.setattr(utils.settings.flags.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    settings, _ = read_settings(imagenet.imagenet_flags(), ["--data", "."])
    assert settings.data.workers == 2  # not the reference's 32 on a 2-core machine
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert read_settings(imagenet.imagenet_flags(), ["--data", "."])[0].data.workers == 1
    monkeypatch.setattr(utils.settings.flags.os, "sched_getaffinity", lambda pid: set(range(128)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert read_settings(imagenet.imagenet_flags(), ["--data", "."])[0].data.workers == 32
    assert read_settings(cifar.cifar_flags(), [])[0].data.workers == 4
    assert read_settings(imagenet.imagenet_flags(), ["--data", ".", "-j", "7"])[0].data.workers == 7


@pytest.mark.parametrize("script, argv", [
    ("cifar", ["-a", "resnet", "--depth", "20", "--norm", "gn", "--ws", "--gn-groups", "8"]),
    ("imagenet", ["-a", "l_resnet50", "--ghost-batch", "0"]),
    ("imagenet", ["-a", "resnet50", "--norm", "bcn", "--ghost-batch", "2"])])
def test_the_model_flags_alone_give_the_runs_model_settings(script, argv):
    """bench.py and export.py build a network from model flags with no --data to invent."""
    flags = script_flags_for(argv[1])
    run_argv = argv + (["--data", "somewhere"] if script == "imagenet" else [])
    assert flags.model_settings(argv) == read_settings(flags, run_argv)[0].model


def test_model_flags_alone_are_checked_as_a_runs_are():
    flags = script_flags_for("l_resnet50")
    with pytest.raises(UsageError, match="--norm and --ws do not apply"):
        flags.model_settings(["-a", "l_resnet50", "--norm", "bn"])
    with pytest.raises(UsageError, match="unknown architecture 'resnet5'"):
        flags.model_settings(["-a", "resnet5"])
    with pytest.raises(UsageError, match="--ghost-batch needs batch statistics"):
        flags.model_settings(["-a", "resnet50", "--norm", "gn", "--ghost-batch", "2"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_the_architectures_and_the_defaults(script):
    make, _ = SCRIPTS[script]
    flags = make()
    options = help_of_each_option(flags.parser.format_help())
    arch = options["-a"]
    assert all(name in arch for name in flags.archs), arch  # every -a choice, by name
    for name in ("--depth", "--cardinality", "--widen-factor", "--gamma", "--momentum",
                 "--lr", "--epochs", "--schedule"):
        assert "(default: " in options[name], (name, options[name])
    if script == "cifar":
        assert "(default: cifar10)" in options["-d"]
