"""Dispositivo, precisión y argumentos de SFTConfig."""

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
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
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
