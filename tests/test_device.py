"""Dispositivo, precisión, argumentos de SFTConfig, MPS y presupuestos según el dispositivo."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from trl import SFTConfig

from helpers.device import pick_device, pick_dtype
from helpers.errors import DeviceError
from helpers.training import sft_device_args


def test_cpu_is_float32():
    assert pick_device("cpu") == "cpu"
    assert pick_dtype("cpu") == torch.float32


def test_auto_picks_an_available_device(monkeypatch):
    monkeypatch.delenv("CURSO_LORA_DEVICE", raising=False)
    expected = next(name for name, ok in [("cuda", torch.cuda.is_available()),
                                          ("mps", torch.backends.mps.is_available()), ("cpu", True)] if ok)
    assert pick_device() == expected


def test_unknown_device_request(monkeypatch):
    with pytest.raises(DeviceError, match="No conozco el dispositivo 'tpu'"):
        pick_device("tpu")
    monkeypatch.setenv("CURSO_LORA_DEVICE", "gpu")
    with pytest.raises(DeviceError, match="CURSO_LORA_DEVICE"):
        pick_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="esta máquina tiene CUDA")
def test_unavailable_device_request():
    with pytest.raises(DeviceError, match="este equipo no lo tiene"):
        pick_device("cuda")


def test_sft_config_on_cpu_builds_without_bf16(tmp_path):
    args = sft_device_args("cpu")
    assert args["bf16"] is False and args["use_cpu"] is True
    assert args["activation_checkpointing"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ningún argumento obsoleto
        config = SFTConfig(output_dir=str(tmp_path), **args)
    assert config.bf16 is False and config.activation_checkpointing is False


def test_default_sft_config_is_the_trap_we_avoid(tmp_path):
    """El valor por defecto de SFTConfig pide bf16; en una CPU sin soporte falla (por eso sft_device_args)."""
    if torch.cuda.is_available():
        pytest.skip("con GPU el valor por defecto es válido")
    with pytest.raises(ValueError):
        SFTConfig(output_dir=str(tmp_path))


@pytest.fixture
def fake_mac(monkeypatch):
    """Un Mac con MPS y sin CUDA. Qué hace el paso de prueba en MPS lo decide cada prueba."""
    from helpers import device

    monkeypatch.delenv("CURSO_LORA_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for cached in (device.mps_problem, device._warn_mps_fallback):
        cached.cache_clear()
    yield device
    for cached in (device.mps_problem, device._warn_mps_fallback):
        cached.cache_clear()


def test_mps_is_used_when_the_probe_passes(fake_mac, monkeypatch):
    steps = []
    monkeypatch.setattr(fake_mac, "tiny_step", steps.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pick_device() == "mps" and pick_device("mps") == "mps"
    assert steps == ["mps"]  # se prueba una sola vez por proceso


def test_broken_mps_falls_back_to_cpu_with_a_spanish_message(fake_mac, monkeypatch):
    def broken(device):
        raise NotImplementedError("The operator 'aten::isin' is not currently implemented for the MPS device")

    monkeypatch.setattr(fake_mac, "tiny_step", broken)
    with pytest.warns(RuntimeWarning, match=r"MPS.*aten::isin.*El curso usa la CPU"):
        assert pick_device() == "cpu"
    assert sft_device_args()["use_cpu"] is True  # el entrenamiento también va a la CPU
    with pytest.raises(DeviceError, match=r"Pediste 'mps', pero un paso de prueba falló.*Usa 'cpu'"):
        pick_device("mps")


def test_the_probe_runs_what_training_and_generation_need():
    from helpers.device import tiny_step

    tiny_step("cpu")  # en CPU funciona: en MPS, lo mismo dice si el backend sirve


def test_mps_fallback_is_set_before_torch_loads():
    code = "import os, sys, helpers; print(os.environ['PYTORCH_ENABLE_MPS_FALLBACK'], 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"]


@pytest.mark.parametrize(("device", "expected"), [("cuda", [32, 48, 120]), ("cpu", [8, 16, 32]),
                                                  ("mps", [8, 16, 32])])
def test_budgets_grow_only_on_cuda(device, expected):
    from helpers.device import GPU_BUDGET_FACTOR, scaled_budget

    assert GPU_BUDGET_FACTOR == 4
    # lote sin límite; filas de validación (48 en el conjunto) y de prueba (120): nunca más de las que hay
    assert [scaled_budget(device, 8), scaled_budget(device, 16, limit=48),
            scaled_budget(device, 32, limit=120)] == expected
