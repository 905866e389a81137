"""Entrenamiento: argumentos de `SFTConfig` que encajan con el dispositivo, e historial de pérdidas."""

from __future__ import annotations

import contextlib
import threading

import psutil
import torch

from .device import pick_device, pick_dtype


def sft_device_args(device: str | None = None) -> dict:
    """Argumentos de `SFTConfig` para el dispositivo: precisión, CPU y checkpointing.

    En CPU: float32 (`SFTConfig` por defecto pide bf16 y falla sin GPU; y en una CPU sin AMX bf16 se
    emula: con solo AVX2 medimos unas 20 veces más lento) y sin *activation checkpointing* (ahorra
    memoria que aquí sobra y cuesta tiempo en cada paso: ``make bench`` lo mide).
    ``activation_checkpointing`` es el nombre actual de ``gradient_checkpointing`` (obsoleto en
    transformers 5).
    """
    device = pick_device(device)
    bf16 = pick_dtype(device) == torch.bfloat16
    return {
        "use_cpu": device == "cpu",
        "bf16": bf16,
        "fp16": False,
        "activation_checkpointing": device == "cuda",
        "report_to": "none",
        "dataloader_pin_memory": device == "cuda",
    }


def score_only_labelled_tokens() -> bool:
    """Que el `SFTTrainer` calcule la pérdida solo en los tokens con etiqueta también en CPU y MPS.

    Sin Triton, TRL 1.16 pasa por la capa de salida (`lm_head`, una salida por token del vocabulario)
    *todas* las posiciones del lote y después descarta las del prompt y del relleno; con Triton (GPU)
    solo pasa las que cuentan. Esto le pide lo segundo en CPU y MPS: la misma pérdida y los mismos
    gradientes en menos tiempo por paso (``make bench`` lo mide). Llamarla más de una vez no cambia nada.
    Devuelve False, sin tocar nada, si la versión de TRL ya no tiene ese punto de enganche.
    """
    from trl.trainer import utils

    current = getattr(utils, "_use_triton", None)
    if current is None:
        return False
    if getattr(current, "_curso_lora", False):
        return True

    def compact_positions(device) -> bool:  # decide solo qué posiciones se puntúan, no el kernel
        return device.type in ("cpu", "mps") or current(device)

    compact_positions._curso_lora = True
    utils._use_triton = compact_positions
    return True


def loss_history(trainer) -> dict[str, list]:
    """Pérdidas registradas por el `Trainer`: pasos y valores de entrenamiento y de validación."""
    history = {"train_step": [], "train_loss": [], "eval_step": [], "eval_loss": []}
    for entry in trainer.state.log_history:
        for kind in ("train", "eval"):
            key = "loss" if kind == "train" else "eval_loss"
            if key in entry:
                history[f"{kind}_step"].append(entry["step"])
                history[f"{kind}_loss"].append(entry[key])
    return history


@contextlib.contextmanager
def peak_memory(every: float = 0.01):
    """Mide el pico de memoria (bytes) del bloque: GPU si hay CUDA, si no la RSS del proceso.

    Uso: ``with peak_memory() as mem: ...`` y después ``mem["peak_bytes"]``. Sin CUDA, un hilo lee
    con `psutil` la memoria residente del proceso cada ``every`` segundos (Linux, macOS y Windows).
    """
    result = {"peak_bytes": 0}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        yield result
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
        return
    process, done = psutil.Process(), threading.Event()
    peak = process.memory_info().rss

    def sample():
        nonlocal peak
        while not done.wait(every):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["peak_bytes"] = max(peak, process.memory_info().rss)
