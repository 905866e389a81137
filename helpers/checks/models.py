"""Lo que las comprobaciones preguntan a un modelo: ¿es un PeftModel? ¿qué capas LoRA lleva dentro?"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path


def is_peft_model(obj) -> bool:
    from peft import PeftModel

    return isinstance(obj, PeftModel)


@contextlib.contextmanager
def adapter_off(model):
    """``model.disable_adapter()`` sin efectos: al salir, cada parámetro vuelve a su ``requires_grad``.

    Al salir, PEFT reactiva el adaptador y lo marca entrenable (``set_adapter``): una comprobación no debe
    cambiar así el modelo del alumno.
    """
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        with model.disable_adapter():
            yield model
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def lora_layers(model) -> list:
    """Pares (nombre, capa) con LoRA inyectado: las capas que ``unload()`` y ``merge_and_unload()`` quitan."""
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


@functools.cache
def base_checkpoint() -> dict | None:
    """{clave: archivo .safetensors} del modelo base local; None si no está en una carpeta local."""
    from ..model import base_model_path

    folder = Path(base_model_path())
    if not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {k: str(folder / f) for k, f in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(single), "pt") as f:
        return dict.fromkeys(f.keys(), str(single))
