"""Lo que las comprobaciones preguntan a un modelo: ¿es un PeftModel? ¿qué capas LoRA lleva dentro?"""

from __future__ import annotations


def is_peft_model(obj) -> bool:
    from peft import PeftModel

    return isinstance(obj, PeftModel)


def lora_layers(model) -> list:
    """Pares (nombre, capa) con LoRA inyectado: las capas que ``unload()`` y ``merge_and_unload()`` quitan."""
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
