"""Fine-tuning onto other classes (utils/train/fine_tune.py): --weights of a run with 5 classes
into a model of 3 loads every tensor but the classifier, which keeps its fresh initialisation;
one line names what was left out and both counts; run.json and the checkpoint record it; another
backbone is still one line, exit 2."""
import json
import os

import pytest
import torch

import cifar
import models
from builders import make_image_folder, one_line_failure
from utils.scripts import cifar_flags, imagenet_flags
from utils.session.build import build_model, load_initial_weights
from utils.session.stages import read_settings
from utils.settings.flag import UsageError
from utils.train.checkpoint import Checkpoint, save_checkpoint
from utils.train.fine_tune import classifier_keys


def saved_network(flags, argv, num_classes, folder):
    """A checkpoint of this project (arch, class count, flags) of a freshly built network."""
    settings = read_settings(flags, argv).settings
    network = build_model(flags.archs, settings.model, num_classes)
    os.makedirs(folder, exist_ok=True)
    checkpoint = Checkpoint(state_dict=network.state_dict(), acc=0.0, best_acc=0.0, rng={},
                            optimizer={}, arch=settings.model.arch,
                            num_classes=num_classes, args=settings.recorded)
    return save_checkpoint(checkpoint, False, folder), network


def fine_tuned(flags, argv, path, num_classes):
    settings = read_settings(flags, argv).settings
    network = build_model(flags.archs, settings.model, num_classes)
    fresh = {k: v.clone() for k, v in network.state_dict().items()}
    loaded = load_initial_weights(network, path, num_classes)
    return network, fresh, loaded


CASES = {
    "cifar l_resnet": (cifar_flags, ["-a", "l_resnet", "--depth", "8"]),
    "imagenet l_resnet18": (imagenet_flags, ["-a", "l_resnet18", "--data", "d"]),
    "torchvision resnet18 gn+ws": (imagenet_flags, ["-a", "resnet18", "--norm", "gn", "--ws",
                                                    "--data", "d"]),
    "torchvision mobilenet_v2": (imagenet_flags, ["-a", "mobilenet_v2", "--data", "d"]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_five_class_run_fine_tunes_onto_three_classes(case, tmp_path, capsys):
    make, argv = CASES[case]
    path, source = saved_network(make(), argv, 5, str(tmp_path / "five"))
    network, fresh, loaded = fine_tuned(make(), argv, path, 3)
    state, before = network.state_dict(), source.state_dict()
    head = [k for k in state if state[k].shape != before[k].shape]
    assert head and set(loaded.fresh) == set(head)
    assert all(state[k].shape[0] == 3 and before[k].shape[0] == 5 for k in head)
    for key, tensor in state.items():  # the new head as built; every other tensor the source's
        assert torch.equal(tensor, fresh[key] if key in head else before[key]), key
    line = capsys.readouterr().out
    assert f"fine-tuned from 5 to 3 classes: left out and freshly initialised {', '.join(head)}" \
        in line
    assert (loaded.from_classes, loaded.to_classes) == (5, 3)


def test_the_same_class_count_loads_every_tensor():
    flags = cifar_flags()
    settings = read_settings(flags, ["-a", "resnet", "--depth", "8"]).settings
    a = build_model(flags.archs, settings.model, 10)
    b = build_model(flags.archs, settings.model, 10)
    loaded = load_initial_weights(b, a.state_dict(), 10)
    assert loaded.fresh == () and all(torch.equal(a.state_dict()[k], v)
                                      for k, v in b.state_dict().items())


def test_another_backbone_is_still_one_line_naming_the_keys(tmp_path):
    path, _ = saved_network(imagenet_flags(), ["-a", "resnet18", "--data", "d"], 5,
                            str(tmp_path / "r18"))
    settings = read_settings(imagenet_flags(), ["-a", "resnet34", "--data", "d"]).settings
    network = build_model(models.imagenet.ARCHS, settings.model, 3)
    with pytest.raises(UsageError, match=r"--weights .*does not fit the model; missing keys: "
                                         r"layer1\.2\."):
        load_initial_weights(network, path, 3)


def test_only_the_classifiers_tensors_count_as_the_head():
    own = {"conv.weight": torch.zeros(16, 3, 3, 3), "fc.weight": torch.zeros(3, 64),
           "fc.bias": torch.zeros(3), "other": torch.zeros(3, 5)}
    theirs = {"conv.weight": torch.zeros(16, 3, 3, 3), "fc.weight": torch.zeros(5, 64),
              "fc.bias": torch.zeros(5), "other": torch.zeros(3, 4)}
    assert classifier_keys(own, theirs, 3) == ["fc.weight", "fc.bias"]


def test_cifar_py_fine_tunes_a_run_onto_a_folder_of_other_classes(tmp_path, capsys):
    """End to end, as a user types it: train, then --weights into data of another class count:
    the run trains, says what is fresh, and records it with the class names. An image folder's
    model has the folder's classes (5, then 3), whatever -d names."""
    five = make_image_folder(str(tmp_path / "five"), classes=("a", "b", "c", "d", "e"))
    three = make_image_folder(str(tmp_path / "three"), classes=("x", "y", "z"), seed=1)
    common = ["-a", "l_resnet", "--depth", "8", "--epochs", "1", "--train-batch", "4",
              "--test-batch", "4", "--no-progress", "--manualSeed", "1"]
    source = str(tmp_path / "source")
    cifar.main(common + ["-d", "cifar100", "--data", five, "-c", source])
    assert torch.load(os.path.join(source, "checkpoint.pth.tar"),
                      weights_only=True)["num_classes"] == 5
    target = str(tmp_path / "target")
    capsys.readouterr()
    weights = os.path.join(source, "checkpoint.pth.tar")
    cifar.main(common + ["--data", three, "-c", target, "--weights", weights])
    out = capsys.readouterr().out
    assert "fine-tuned from 5 to 3 classes: left out and freshly initialised fc.weight, " \
           "fc.bias" in out
    with open(os.path.join(target, "run.json")) as f:
        record = json.load(f)
    assert record["initial_weights"] == {"file": weights, "classes": {"from": 5, "to": 3},
                                         "fresh": ["fc.weight", "fc.bias"]}
    assert record["classes"] == ["x", "y", "z"]
    saved = torch.load(os.path.join(target, "checkpoint.pth.tar"), weights_only=True)
    assert saved["classes"] == record["classes"] and saved["num_classes"] == 3
    assert saved["run"]["initial_weights"]["fresh"] == ["fc.weight", "fc.bias"]

    # --weights with --resume would be overwritten by the resume: refused, naming both.
    code, line = one_line_failure(cifar.main, common + ["--resume", target, "--epochs", "2",
                                                        "--data", three, "--weights", weights],
                                  capsys)
    assert code == 2 and "--weights with --resume" in line
    # -e --weights onto another class count would score a fresh classifier: refused.
    code, line = one_line_failure(cifar.main, common + ["-e", "--data", three, "--weights",
                                                        weights], capsys)
    assert code == 2 and "the classifier would be fresh" in line


def test_pretrained_weights_fine_tune_onto_another_class_count(monkeypatch):
    """--pretrained on 3 classes: torchvision's 1000-class weights (made here, offline, by a
    seeded torchvision builder in place of the download) but the classifier; with --norm gn
    the BatchNorm layers are fresh GroupNorms, and the line says so."""
    import torchvision
    from utils.session.build import pretrained_model
    real = torchvision.models.get_model

    def offline(name, weights=None, **options):
        torch.manual_seed(0)
        return real(name, **options)
    monkeypatch.setattr(torchvision.models, "get_model", offline)
    settings = read_settings(imagenet_flags(), ["-a", "resnet18", "--norm", "gn", "--ws",
                                                "--pretrained", "--data", "d"]).settings
    network, loaded = pretrained_model(models.imagenet.ARCHS, settings.model, 3)
    assert (loaded.from_classes, loaded.to_classes) == (1000, 3)
    assert loaded.fresh == ("fc.weight", "fc.bias", "its 20 BatchNorm layers, now --norm gn "
                                                    "layers")
    pretrained = offline("resnet18")
    assert torch.equal(network.conv1.weight, pretrained.conv1.weight)
    assert torch.equal(network.layer4[1].conv2.weight, pretrained.layer4[1].conv2.weight)
    assert network.fc.out_features == 3


@pytest.mark.parametrize("arch", sorted(models.cifar.MODELS))
def test_every_cifar_family_fine_tunes_only_its_classifier(arch):
    """Every architecture cifar.py offers, 5 classes onto 3: exactly the classifier is fresh."""
    from models import create_model
    from test_models import CIFAR_SMALL
    options = CIFAR_SMALL.get(arch, {"depth": 8} if "resnet" in arch else {})
    torch.manual_seed(0)
    source = create_model(models.cifar.MODELS, arch, num_classes=5, **options)
    target = create_model(models.cifar.MODELS, arch, num_classes=3, **options)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    loaded = load_initial_weights(target, source.state_dict(), 3)
    state, before = target.state_dict(), source.state_dict()
    head = {k for k in state if state[k].shape != before[k].shape}
    assert head and set(loaded.fresh) == head
    assert all(torch.equal(v, fresh[k] if k in head else before[k]) for k, v in state.items())
