"""utils.session (device, build): the device is chosen before anything asks CUDA; models are built from
the flags."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import cifar
from builders import REPO
from utils.settings.flag import UsageError
from utils.session.build import build_model, prepare_model
from utils.session.stages import read_settings

# Every CUDA query of the run records what CUDA_VISIBLE_DEVICES said at that moment; CUDA reads
# it once, at its first query, so a query before --gpu-id set it would train on the wrong GPU.
WATCH_CUDA = textwrap.dedent("""
    import json, os, sys
    import torch
    seen = []
    def watch(name, answer):
        def query(*args, **kwargs):
            seen.append([name, os.environ.get("CUDA_VISIBLE_DEVICES")])
            return answer
        return query
    for name, answer in [("is_available", False), ("device_count", 0), ("init", None),
                         ("is_initialized", False), ("current_device", 0)]:
        setattr(torch.cuda, name, watch(name, answer))
    sys.path.insert(0, os.environ["REPO"])
    import cifar
    from utils.cli import run_main
    try:
        run_main(cifar.main, sys.argv[1:])
    finally:
        print(json.dumps(seen), file=sys.stderr)
""")


def test_amp_fp16_with_gpu_id_asks_cuda_nothing_before_gpu_id_is_set(tmp_path):
    env = dict(os.environ, REPO=REPO, CUDA_VISIBLE_DEVICES="5,6,7")
    result = subprocess.run(
        [sys.executable, "-c", WATCH_CUDA, "--amp", "fp16", "--gpu-id", "1", "-a", "resnet",
         "--depth", "8", "--data", str(tmp_path / "none"), "--no-download", "-c",
         str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    import json
    seen = json.loads(result.stderr.strip().splitlines()[-1])
    assert seen, "CUDA was never asked which GPUs there are"
    assert all(visible == "1" for _, visible in seen), seen
    # No GPU here: the run stops at the device, saying so, before any data is looked for.
    assert result.returncode == 2 and "--gpu-id 1: no such CUDA GPU" in result.stderr


def test_defaults_of_flags_an_architecture_does_not_take_are_left_unused():
    settings, _ = read_settings(cifar.cifar_flags(), ["-a", "resnet", "--depth", "8"])
    assert settings.model.options["cardinality"] == 8  # the default, left unused
    assert build_model(cifar.models.cifar.MODELS, settings.model, 10).fc.out_features == 10


def test_an_impossible_model_is_a_usage_error_naming_the_architecture():
    settings, _ = read_settings(cifar.cifar_flags(), ["-a", "l_wrn", "--depth", "11"])
    with pytest.raises(UsageError, match="l_wrn: wrn needs depth = 6n\\+4"):
        build_model(cifar.models.cifar.MODELS, settings.model, 10)


@pytest.mark.parametrize("argv, mode", [
    ([], None), (["--compile"], "default"), (["--compile", "-a", "resnet"], "default"),
    (["--compile", "reduce-overhead"], "reduce-overhead"),
    (["--compile=max-autotune"], "max-autotune")])
def test_compile_hands_torch_compile_its_mode(monkeypatch, argv, mode):
    settings, _ = read_settings(cifar.cifar_flags(), ["-a", "resnet", "--depth", "8"] + argv)
    assert settings.device.compile == mode
    modes = []
    monkeypatch.setattr(torch, "compile", lambda model, mode: modes.append(mode) or model)
    model = build_model(cifar.models.cifar.MODELS, settings.model, 10)
    prepare_model(model, torch.device("cpu"), 0, settings.device)
    assert modes == ([mode] if mode else [])


def test_an_unknown_compile_mode_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        read_settings(cifar.cifar_flags(), ["--compile", "fast"])
    assert exit_info.value.code == 2
    assert "argument --compile: invalid choice: 'fast'" in capsys.readouterr().err


def test_deterministic_chooses_deterministic_kernels_before_cuda_starts():
    code = textwrap.dedent("""
        import os, torch
        from utils.session.device import select_device
        from utils.settings.values import DeviceSettings
        select_device(DeviceSettings("cpu", True, False, None, deterministic=True))
        print(torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark, os.environ["CUBLAS_WORKSPACE_CONFIG"])
    """)
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.split() == ["True", "True", "False", ":4096:8"]


def test_a_deterministic_run_says_so_in_run_json(tmp_path):
    import json
    from builders import TINY_MODEL, make_cifar_pickles, tiny_run
    data = make_cifar_pickles(str(tmp_path / "d"), n_train=16, n_test=8)
    run = str(tmp_path / "run")
    subprocess.run([sys.executable, os.path.join(REPO, "cifar.py")] + TINY_MODEL + tiny_run(1) +
                   ["--data", data, "--epochs", "1", "-c", run, "--deterministic"], cwd=tmp_path,
                   check=True, capture_output=True, timeout=300)
    with open(os.path.join(run, "run.json")) as f:
        assert json.load(f)["flags"]["deterministic"] is True
