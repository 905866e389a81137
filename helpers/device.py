"""Dispositivo (cuda / mps / cpu), precisión y presupuestos de los cuadernos según el dispositivo."""

from __future__ import annotations

import functools
import os
import warnings

import torch

from .errors import DeviceError

DEVICE_ENV = "CURSO_LORA_DEVICE"
DEVICES = ("auto", "cuda", "mps", "cpu")


def pick_device(request: str | None = None) -> str:
    """'cuda', 'mps' o 'cpu'. ``request`` (o ``CURSO_LORA_DEVICE``) puede forzar uno; si no, el mejor."""
    wanted = (request or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if wanted not in DEVICES:
        raise DeviceError(
            f"No conozco el dispositivo {wanted!r}. Usa uno de: {', '.join(DEVICES)} "
            f"(en el código o en la variable {DEVICE_ENV})."
        )
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if wanted == "auto":
        device = next(name for name in ("cuda", "mps", "cpu") if available[name])
        if device == "mps" and mps_problem():
            _warn_mps_fallback(mps_problem())
            return "cpu"
        return device
    if not available[wanted]:
        raise DeviceError(
            f"Pediste {wanted!r}, pero este equipo no lo tiene. Usa 'auto' o 'cpu' "
            f"(o borra la variable {DEVICE_ENV})."
        )
    if wanted == "mps" and mps_problem():
        raise DeviceError(
            f"Pediste 'mps', pero un paso de prueba falló en él ({mps_problem()}). Usa 'cpu' "
            f"(o 'auto', que entonces elige la CPU)."
        )
    return wanted


@functools.cache
def mps_problem() -> str | None:
    """None si un paso diminuto de entrenamiento y de generación funciona en MPS (Apple); si no, el error.

    Se prueba una vez por proceso. Las operaciones que MPS aún no tiene pasan a la CPU si
    ``PYTORCH_ENABLE_MPS_FALLBACK=1`` estaba puesta al importar torch (lo hace ``import helpers``).
    """
    try:
        tiny_step("mps")
    except RuntimeError as error:  # un fallo del backend (NotImplementedError incluido): se usa la CPU
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def tiny_step(device: str) -> None:
    """Lo que hace el curso al entrenar y al generar, en pequeño: embedding, lineal, pérdida, gradiente."""
    tokens = torch.tensor([[1, 2, 3, 0]], device=device)
    embedding, head = torch.nn.Embedding(4, 8).to(device), torch.nn.Linear(8, 4).to(device)
    logits = head(torch.nn.functional.silu(embedding(tokens)))
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    next_token = logits[:, -1].argmax(-1, keepdim=True)
    finished = torch.isin(next_token, torch.tensor([0], device=device))
    torch.cat([tokens, next_token], dim=1).cumsum(-1).masked_fill(finished, 0).cpu()


@functools.cache
def _warn_mps_fallback(problem: str) -> None:  # una sola vez por proceso
    warnings.warn(
        f"Este Mac tiene GPU (MPS), pero un paso de prueba falló en ella ({problem}). "
        "El curso usa la CPU: funciona igual, solo más despacio.",
        RuntimeWarning,
        stacklevel=3,
    )


def pick_dtype(device: str) -> torch.dtype:
    """bfloat16 en GPU CUDA que lo soporte; float32 en el resto (en una CPU sin AMX, bf16 se emula y es lento)."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


GPU_BUDGET_FACTOR = 4  # con CUDA, lotes y filas de evaluación ×4; en CPU y MPS, tal cual


def scaled_budget(device: str, value: int, limit: int | None = None) -> int:
    """El presupuesto ``value`` para ``device``: ×4 con CUDA (sin pasar de ``limit``), igual en CPU y MPS.

    Para los tamaños de lote y las filas que se evalúan, que una GPU procesa en paralelo. Los pasos y
    las tasas de aprendizaje no se escalan: las curvas y las comparaciones del cuaderno siguen valiendo.
    ``limit`` es lo que hay, p. ej. el tamaño del conjunto del que se toman las filas.
    """
    scaled = value * GPU_BUDGET_FACTOR if device == "cuda" else value
    return scaled if limit is None else min(scaled, limit)
