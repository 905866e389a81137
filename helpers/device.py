"""Dispositivo (cuda / mps / cpu) y precisión para el curso."""

from __future__ import annotations

import os

import torch

from .errors import DeviceError

DEVICE_ENV = "CURSO_LORA_DEVICE"
DEVICES = ("auto", "cuda", "mps", "cpu")


def pick_device(request: str | None = None) -> str:
    """'cuda', 'mps' o 'cpu'. ``request`` (o ``CURSO_LORA_DEVICE``) puede forzar uno; por defecto, el mejor."""
    wanted = (request or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if wanted not in DEVICES:
        raise DeviceError(
            f"No conozco el dispositivo {wanted!r}. Usa uno de: {', '.join(DEVICES)} "
            f"(en el código o en la variable {DEVICE_ENV})."
        )
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if wanted == "auto":
        return next(name for name in ("cuda", "mps", "cpu") if available[name])
    if not available[wanted]:
        raise DeviceError(
            f"Pediste {wanted!r}, pero este equipo no lo tiene. Usa 'auto' o 'cpu' "
            f"(o borra la variable {DEVICE_ENV})."
        )
    return wanted


def pick_dtype(device: str) -> torch.dtype:
    """bfloat16 en GPU CUDA que lo soporte; float32 en el resto (en CPU, bf16 es ~20x más lento)."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
