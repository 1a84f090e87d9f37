"""hubconf.py: every architecture of both scripts is a torch.hub entry point, with docstrings and
dependencies; each builds the network as its script does, fresh from keyword options or from a
weights file (a checkpoint, export.py's safetensors, a state_dict) with the run's outputs."""
import os

import pytest
import torch

import export
from builders import REPO
from utils.scripts import cifar_flags, imagenet_flags, script_flags_for
from utils.session.build import build_model
from utils.session.trained import load_trained
from utils.train.checkpoint import Checkpoint

# One architecture of each family, small, with its script and model flags.
FAMILIES = [
    ("cifar.py", "l_resnet", ["--depth", "8", "--gn-groups", "4"]),
    ("cifar.py", "l_preresnet", ["--depth", "8"]),
    ("cifar.py", "l_resnext", ["--depth", "11", "--cardinality", "2", "--widen-factor", "1"]),
    ("cifar.py", "l_wrn", ["--depth", "10", "--widen-factor", "1"]),
    ("cifar.py", "l_pyramidnet", ["--depth", "8", "--alpha", "12"]),
    ("cifar.py", "l_shake_shake", ["--depth", "8", "--base-channels", "8"]),
    ("cifar.py", "l_se_resnet", ["--depth", "8"]),
    ("cifar.py", "densenet", ["--depth", "10", "--growthRate", "4"]),
    ("cifar.py", "vgg11", ["--ws"]),
    ("cifar.py", "alexnet", []),
    ("imagenet.py", "l_resnet18", []),
    ("imagenet.py", "l_resnext50", ["--cardinality", "2"]),
    ("imagenet.py", "mobilenet_v2", ["--norm", "gn", "--ws"]),
    ("imagenet.py", "alexnet", []),
]


def hub_load(entry, **kwargs):
    return torch.hub.load(REPO, entry, source="local", trust_repo=True, verbose=False, **kwargs)


def saved_run(tmp_path, script, arch, flags, classes=3):
    """A checkpoint of an untrained network as ``script`` records one (its recorded flags, class
    names, normalisation and the script in its run record), in a run folder."""
    parser = script_flags_for(arch, script)
    settings = parser.settings(parser.parse(["-a", arch] + flags + ["--data", str(tmp_path)]))
    torch.manual_seed(0)
    model = build_model(parser.archs, settings.model, classes)
    with torch.no_grad():  # norms away from their initial 1 and 0, so a lost weight shows
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn_like(tensor))
    folder = tmp_path / "run"
    folder.mkdir()
    checkpoint = Checkpoint(state_dict=model.state_dict(), epoch=1, acc=0.0, best_acc=0.0,
                            arch=arch,
                            num_classes=classes, classes=[f"c{i}" for i in range(classes)],
                            normalisation={"mean": [0.5] * 3, "std": [0.25] * 3},
                            args=settings.recorded,
                            run={"sessions": [{"command": [script, "-a", arch] + flags}]})
    torch.save({k: v for k, v in checkpoint.to_dict().items() if v is not None},
               folder / "checkpoint.pth.tar")  # no optimizer, schedule or RNG: never trained
    return str(folder)


def outputs(model, size):
    torch.manual_seed(1)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, size, size))


def test_every_architecture_of_both_scripts_is_an_entry_point(monkeypatch):
    # torch.hub.list reads GitHub repositories only; here it reads this checkout.
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: REPO)
    entries = set(torch.hub.list("this/checkout", verbose=False))
    expected = ({f"cifar_{arch}" for arch in cifar_flags().archs}
                | set(imagenet_flags().archs))
    assert entries == expected
    assert "l_resnet50" in entries and "cifar_l_resnet" in entries and "cifar_alexnet" in entries
    import hubconf  # torch.hub.help reads GitHub only: the docstrings are read here
    assert "weights:" in hubconf.l_resnet50.__doc__ and "imagenet.py -a l_resnet50" in \
        hubconf.l_resnet50.__doc__
    assert set(hubconf.dependencies) <= {"torch", "torchvision", "numpy", "matplotlib",
                                         "progress"}


@pytest.mark.parametrize("script, arch, flags", FAMILIES,
                         ids=[f"{s[:-3]}-{a}" for s, a, _ in FAMILIES])
def test_a_safetensors_export_loads_through_the_hub_with_the_runs_outputs(tmp_path, script, arch,
                                                                         flags):
    run = saved_run(tmp_path, script, arch, flags)
    shared = str(tmp_path / "m.safetensors")
    assert export.main(["--resume", run, "-o", shared, "--format", "safetensors"]) == 0
    entry = f"cifar_{arch}" if script == "cifar.py" else arch
    size = 32 if script == "cifar.py" else 64
    expected = outputs(load_trained(run).model, size)
    model = hub_load(entry, weights=shared)
    assert not model.training
    assert torch.allclose(outputs(model, size), expected, rtol=1e-5, atol=1e-6)
    from_checkpoint = hub_load(entry, weights=run)  # a run folder works alike
    assert torch.allclose(outputs(from_checkpoint, size), expected, rtol=1e-5, atol=1e-6)


def test_options_build_the_scripts_network_and_a_state_dict_loads_into_it():
    model = hub_load("cifar_l_resnet", depth=8, gn_groups=4)
    assert model.training and model.fc.out_features == 10
    parser = cifar_flags()
    twin = build_model(parser.archs, parser.model_settings(
        ["-a", "l_resnet", "--depth", "8", "--gn-groups", "4"]), 10)
    assert model.state_dict().keys() == twin.state_dict().keys()
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in twin.state_dict().items()}
    loaded = hub_load("cifar_l_resnet", weights=state, depth=8, gn_groups=4)
    assert not loaded.training
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    wide = hub_load("resnet18", num_classes=5, norm="gn", ws=True)
    assert wide.fc.out_features == 5


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(depth=7), ValueError, "depth"),
    (dict(colour="red"), TypeError, "unexpected keyword 'colour'"),
    (dict(norm="xn"), ValueError, "--norm takes one of bn, gn"),
    (dict(depth="20"), ValueError, "--depth takes int values"),
    (dict(num_classes=0), ValueError, "a model has at least 1 class"),
    (dict(depth=[8, 14]), ValueError, "--depth takes one value, not a list"),
    (dict(ws=None), ValueError, "ws=None: True or False"),
], ids=["bad-depth", "unknown-keyword", "bad-choice", "bad-type", "no-classes", "a-list",
        "none"])
def test_a_wrong_option_is_an_error_naming_it(kwargs, error, words):
    with pytest.raises(error) as raised:
        hub_load("cifar_l_resnet", **kwargs)
    assert words in str(raised.value)


def test_a_file_that_records_its_model_must_be_loaded_by_its_entry_point(tmp_path):
    run = saved_run(tmp_path, "cifar.py", "l_resnet", ["--depth", "8"])
    with pytest.raises(ValueError, match="entry point 'cifar_l_resnet'"):
        hub_load("cifar_l_preresnet", weights=run)
    with pytest.raises(ValueError, match="entry point 'cifar_l_resnet'"):
        hub_load("l_resnet18", weights=run)
    with pytest.raises(ValueError, match=r"give none beside it \(depth given\)"):
        hub_load("cifar_l_resnet", weights=run, depth=20)
    assert os.path.isdir(run)


@pytest.mark.parametrize("entry, make", [("cifar_resnext", cifar_flags),
                                         ("resnet18", imagenet_flags)])
def test_an_entry_point_at_its_defaults_is_its_scripts_default_network(entry, make):
    """What a user types first, torch.hub.load(REPO, ENTRY): the network the script builds
    with every model flag at its default."""
    parser = make()
    arch = entry.removeprefix("cifar_")
    twin = build_model(parser.archs, parser.model_settings(["-a", arch]),
                       10 if entry.startswith("cifar_") else 1000)
    model = hub_load(entry)
    assert type(model) is type(twin)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in twin.state_dict().items()}
