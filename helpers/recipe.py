"""La receta del entrenamiento principal: un solo sitio para los valores del cuaderno y de la orden.

El cuaderno `lora_finetuning` importa estas constantes en su celda de parámetros y
``python -m helpers.train`` las usa como valores por defecto, así que ambos entrenan igual.
``lora_config`` y ``sft_config`` construyen los objetos de PEFT y TRL de esa receta.

El lote es siempre **global**: ejemplos por paso de optimización, sumando todos los procesos. Con N
procesos y A pasos de acumulación, cada proceso recibe ``lote / (N × A)`` ejemplos por pasada.
"""

from __future__ import annotations

import os

SEED = 0
# Medido en el formato con puntos (``TRAINED_FORMAT``, el que entrena el cuaderno), en las 120 fechas de
# prueba (CPU de 2 núcleos, diciembre de 2026): 40 pasos de lote 8 a 1e-3 constante aciertan 109/120 (90,8 %;
# IC 95 % de Wilson 84,3–94,8 %). Probado alrededor: a 2e-3 constante, 103 a los 16 pasos, 107 a los 32 y
# 109 a los 40; a 1e-3, 76 a los 16, 106 a los 32 y 107 a los 48; con tasa lineal decreciente desde 2e-3,
# 104 en 24 pasos, 107 en 32 y 108 en 40. Nada llega antes ni más alto: los fallos que quedan son casi todos
# el cero de un día de una cifra («2.09.2008» por «02.09.2008»).
MAIN_STEPS = 40  # pasos de optimización
MAIN_BATCH = 8  # ejemplos por paso (lote global)
MAIN_LR = 1e-3  # tasa de aprendizaje
LR_SCHEDULER = "constant"  # la tasa no cambia: con los mismos pasos, el mismo calendario en 1 o N procesos
EVAL_EVERY = 10  # cada cuántos pasos se mide la pérdida de validación
VALIDATION_ROWS = 16  # filas de validación para esa pérdida

LORA_RANK = 8
LORA_ALPHA = 16  # escala alpha / r = 2
LORA_DROPOUT = 0.0
LORA_TARGETS = "all-linear"  # todas las capas lineales de los bloques (no lm_head)


def lora_config(r: int = LORA_RANK, alpha: float = LORA_ALPHA, target_modules=LORA_TARGETS,
                dropout: float = LORA_DROPOUT, **overrides):
    """La `LoraConfig` de la receta (``overrides`` para cualquier otro argumento de `LoraConfig`)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                      bias="none", task_type="CAUSAL_LM", **overrides)


def world_size() -> int:
    """Número total de procesos del entrenamiento: ``WORLD_SIZE`` (lo pone `accelerate launch`) o 1."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def per_device_batch(batch: int, processes: int = 1, accumulation: int = 1) -> int:
    """Lote de cada proceso en cada pasada para que el lote global sea ``batch``.

    ``batch = por_proceso × procesos × acumulación``; si no es divisible, lanza `ValueError`.
    """
    share = processes * accumulation
    if batch <= 0 or share <= 0 or batch % share:
        raise ValueError(
            f"El lote global ({batch}) debe ser un múltiplo positivo de procesos × acumulación "
            f"({processes} × {accumulation} = {share}): cada proceso recibe lote / (procesos × "
            f"acumulación) ejemplos. Prueba con --lote {max(share, batch - batch % share)} o cambia la "
            "acumulación."
        )
    return batch // share


def sft_config(output_dir, *, steps: int = MAIN_STEPS, batch: int = MAIN_BATCH, lr: float = MAIN_LR,
               accumulation: int = 1, processes: int | None = None, eval_every: int | None = EVAL_EVERY,
               device: str | None = None, **overrides):
    """El `SFTConfig` de la receta. ``batch`` es el lote global; ``processes`` por defecto `world_size()`.

    ``eval_every=None`` no mide la pérdida de validación. ``overrides`` cambia cualquier otro argumento
    (``disable_tqdm=True``, ``seed=1``...). Lo que depende del dispositivo sale de `sft_device_args`.
    """
    from trl import SFTConfig

    from .training import sft_device_args

    processes = world_size() if processes is None else processes
    args = {
        "output_dir": str(output_dir),
        "max_steps": steps,
        "per_device_train_batch_size": per_device_batch(batch, processes, accumulation),
        "gradient_accumulation_steps": accumulation,
        "learning_rate": lr,
        "lr_scheduler_type": LR_SCHEDULER,
        "logging_steps": 1,
        "eval_strategy": "steps" if eval_every else "no",
        "eval_steps": eval_every or None,
        "per_device_eval_batch_size": VALIDATION_ROWS,
        "save_strategy": "no",
        "seed": SEED,
        "ddp_find_unused_parameters": False,  # varios procesos: LoRA usa todos sus parámetros en cada paso
        **sft_device_args(device),
    }
    return SFTConfig(**{**args, **overrides})
