"""Construye los adaptadores LoRA preentrenados de ``adapters/`` y lo que el cuaderno de carga recibe "de un compañero".

Los tres publicados aprenden la misma entrada (una fecha escrita en español) con respuestas distintas:
``adapters/iso`` -> ``2021-03-05``, ``adapters/us`` -> ``03/05/2021``, ``adapters/en`` -> ``March 5, 2021``.
El cuaderno ``load_lora_adapter_example`` los carga, los cambia y los fusiona.

``adapters/misterio/{x,y,z}``: tres adaptadores más, sin etiqueta, para el ejercicio 🦁 del cuaderno. Cada uno
se entrena aparte (su propia semilla, otras capas: ``k_proj`` y ``o_proj``, y se para a medio entrenar, así
que acierta la mayoría de las fechas pero no todas) con un formato que el constructor sortea al construirlo y
**no escribe en ningún sitio**: ni en el nombre, ni en la configuración, ni en la salida. Lo que responde
cada uno solo se sabe preguntándole (y eso hace la comprobación). Pueden repetir formato.

Los fusionados "de tres compañeros" del ejercicio 🐕 se hacen al momento en el cuaderno
(``helpers.colleagues``); los hechos de los publicados (formatos, carpetas, forma) están en ``helpers.shipped``.

Uso: ``python -m helpers.authoring.build_adapters`` (o ``make adapters``); ``--formats iso`` para construir solo
uno, ``--formats misterio`` para los tres sin etiqueta. Entrena con ``SFTTrainer`` en CPU y float32 con
una semilla fija, así que los tres publicados salen iguales en cada ejecución en la misma máquina (los
de ``misterio`` cambian de formato en cada construcción). Cada carpeta queda en el formato estándar de
PEFT: ``adapter_config.json`` + ``adapter_model.safetensors`` (nada de pickle, nada más).

La receta está en las constantes de este módulo; ``lora_config()`` y ``adapter_config_dict()``
devuelven lo que el constructor escribe, para que una prueba compare los adaptadores publicados
con la receta sin volver a entrenar.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from ..shipped import (
    ADAPTER_FILES,
    ADAPTER_FORMATS,
    ADAPTERS_DIR,
    BASE_MODEL_NAME,
    LORA_ALPHA,
    LORA_R,
    MYSTERY_NAMES,
    MYSTERY_SUBDIR,
    MYSTERY_TARGET_MODULES,
    TARGET_MODULES,
    adapter_dir,
    mystery_dir,
)

# La receta (igual para los tres formatos; su forma, r, alpha y capas, está en helpers.shipped)
SEED = 0
LORA_DROPOUT = 0.0
LEARNING_RATE = 4e-3
BATCH_SIZE = 8
MAX_STEPS = 96
WARMUP_STEPS = 4
LR_SCHEDULER = "linear"
BUILD_DEVICE = "cpu"  # CPU y float32: el mismo resultado en cada ejecución

MYSTERY_SEEDS = {"x": 101, "y": 202, "z": 303}  # otra semilla que los publicados (0) y otra para cada uno
# A medio entrenar: aciertan la mayoría en su formato, no todas, así que su columna de respuestas no es la
# clave (`expected`) y solo se obtiene generando. Cuánto cuesta depende del formato (a 24 pasos medimos 66 % en
# uno y 96 % en otros dos), así que se para en cuanto acierta MYSTERY_TARGET de MYSTERY_CHECK_ROWS fechas de
# validación, mirando cada MYSTERY_CHECK_EVERY pasos desde MYSTERY_FIRST_CHECK; como mucho MYSTERY_STEPS pasos.
MYSTERY_STEPS = 24
MYSTERY_TARGET = 0.6
MYSTERY_CHECK_ROWS = 24
MYSTERY_FIRST_CHECK, MYSTERY_CHECK_EVERY = 6, 2

def lora_config(target_modules=TARGET_MODULES):
    """La ``LoraConfig`` con la que se entrenan los adaptadores."""
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                      target_modules=list(target_modules), task_type="CAUSAL_LM")


def sft_config(output_dir: Path | str, device: str = BUILD_DEVICE, seed: int = SEED, steps: int | None = None):
    """La ``SFTConfig`` del entrenamiento (pasos, lote, tasa de aprendizaje, semilla)."""
    from trl import SFTConfig

    from ..training import sft_device_args

    return SFTConfig(output_dir=str(output_dir), max_steps=steps or MAX_STEPS, per_device_train_batch_size=BATCH_SIZE,
                     learning_rate=LEARNING_RATE, lr_scheduler_type=LR_SCHEDULER, warmup_steps=WARMUP_STEPS,
                     seed=seed, data_seed=seed, logging_steps=8, save_strategy="no",
                     **sft_device_args(device))


def _jsonable(config: dict) -> dict:
    """Como lo escribe ``save_pretrained``, pero con los conjuntos ordenados (archivo reproducible)."""
    return {key: sorted(value) if isinstance(value, (set, frozenset)) else value
            for key, value in sorted(config.items())}


def adapter_config_dict(target_modules=TARGET_MODULES) -> dict:
    """El contenido exacto de ``adapter_config.json`` que escribe el constructor."""
    config = lora_config(target_modules)
    config.base_model_name_or_path = BASE_MODEL_NAME
    config.inference_mode = True
    return _jsonable(config.to_dict())


def _finalize(saved: Path, target_modules=TARGET_MODULES) -> None:
    """Deja solo los dos archivos estándar, con la configuración de la receta."""
    for extra in saved.iterdir():
        if extra.name not in ADAPTER_FILES:
            extra.unlink()  # README.md (tarjeta del modelo vacía) y cualquier otro extra
    written = json.loads((saved / "adapter_config.json").read_text())
    expected = adapter_config_dict(target_modules)
    written.update(base_model_name_or_path=BASE_MODEL_NAME)
    # PEFT escribe los conjuntos (target_modules) como listas en un orden que cambia de un proceso a otro
    set_fields = {k for k, v in lora_config(target_modules).to_dict().items() if isinstance(v, (set, frozenset))}
    written.update({k: sorted(written[k]) for k in set_fields if isinstance(written.get(k), list)})
    if _jsonable(written) != expected:
        changed = sorted(k for k in set(written) | set(expected) if written.get(k) != expected.get(k))
        raise RuntimeError(f"adapter_config.json no coincide con la receta en: {', '.join(changed)}")
    (saved / "adapter_config.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    for name in ADAPTER_FILES:
        os.chmod(saved / name, 0o644)


def _stop_when_good_enough(fmt: str, tokenizer, target: float):
    """Un callback que para el entrenamiento en cuanto el modelo acierta ``target`` de las fechas de validación."""
    from transformers import TrainerCallback

    from ..data import answer, make_splits
    from ..evaluation import exact_match, generate

    rows = make_splits(fmt)["validation"].select(range(MYSTERY_CHECK_ROWS))
    prompts, expected = [r["prompt"] for r in rows], [answer(r) for r in rows]

    class StopWhenGoodEnough(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if step >= MYSTERY_FIRST_CHECK and (step - MYSTERY_FIRST_CHECK) % MYSTERY_CHECK_EVERY == 0:
                hits = exact_match(generate(model, tokenizer, prompts), expected)
                control.should_training_stop = hits >= target * len(prompts)
            return control

    return StopWhenGoodEnough()


def _train(fmt: str, target: Path, device: str, seed: int, steps: int, target_modules, label: str,
           stop_at: float | None = None):
    """Entrena un adaptador de ``fmt`` y lo escribe (de forma atómica) en ``target``; devuelve (modelo, tokenizador).

    ``stop_at``: parar antes, en cuanto acierte esa fracción de las fechas de validación (los sin etiqueta).
    """
    import torch
    import transformers
    from trl import SFTTrainer

    from ..data import make_splits
    from ..model import load_base_model

    target.parent.mkdir(parents=True, exist_ok=True)
    transformers.set_seed(seed)
    model, tokenizer = load_base_model(device, dtype=torch.float32)
    splits = make_splits(fmt)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        trainer = SFTTrainer(model=model, args=sft_config(Path(tmp) / "trainer", device, seed, steps),
                             train_dataset=splits["train"], processing_class=tokenizer,
                             peft_config=lora_config(target_modules),
                             callbacks=[_stop_when_good_enough(fmt, tokenizer, stop_at)] if stop_at else None)
        start = time.perf_counter()
        trainer.train()
        print(f"[{label}] entrenado en {time.perf_counter() - start:.0f} s ({trainer.state.global_step} pasos)")
        staging = Path(tmp) / target.name
        trainer.model.save_pretrained(staging)
        _finalize(staging, target_modules)
        if target.exists():
            target.rename(Path(tmp) / "anterior")  # se borra al salir del bloque
        staging.rename(target)
    size = (target / "adapter_model.safetensors").stat().st_size
    print(f"[{label}] escrito {target} ({size / 1e6:.1f} MB)")
    return trainer.model, tokenizer


def build(fmt: str, root: Path | str = ADAPTERS_DIR, device: str = BUILD_DEVICE, evaluate: bool = True) -> Path:
    """Entrena el adaptador de ``fmt`` y lo escribe (de forma atómica) en ``root/fmt``."""
    target = adapter_dir(fmt, root)
    model, tokenizer = _train(fmt, target, device, SEED, MAX_STEPS, TARGET_MODULES, fmt)
    if evaluate:
        _print_test(model, tokenizer, fmt, f"[{fmt}] test")
    return target


def build_mystery(name: str, root: Path | str = ADAPTERS_DIR, device: str = BUILD_DEVICE, fmt: str | None = None,
                  evaluate: bool = True, steps: int | None = None) -> Path:
    """Entrena el adaptador sin etiqueta ``name`` con un formato sorteado (o ``fmt``, en las pruebas).

    El formato sorteado no se escribe ni se imprime: la salida dice cuánto acierta en *su* formato, sin
    nombrarlo.
    """
    target = mystery_dir(name, root)
    chosen = fmt or random.SystemRandom().choice(ADAPTER_FORMATS)
    model, tokenizer = _train(chosen, target, device, MYSTERY_SEEDS[name], steps or MYSTERY_STEPS,
                              MYSTERY_TARGET_MODULES, name, stop_at=MYSTERY_TARGET)
    if evaluate:
        _print_test(model, tokenizer, chosen, f"[{name}] test, en su formato")
    return target


def _print_test(model, tokenizer, fmt: str, heading: str):
    """Imprime ``heading`` y el acierto del modelo en las fechas de prueba de ``fmt``."""
    from ..data import make_splits
    from ..evaluation import evaluate as run_eval

    print(f"{heading}: {run_eval(model, tokenizer, make_splits(fmt)['test'], progress=False)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=[*ADAPTER_FORMATS, MYSTERY_SUBDIR],
                        choices=[*ADAPTER_FORMATS, MYSTERY_SUBDIR],
                        help=f"qué construir ({MYSTERY_SUBDIR}: los tres sin etiqueta)")
    parser.add_argument("--out", default=str(ADAPTERS_DIR), help="carpeta raíz (por defecto adapters/)")
    parser.add_argument("--device", default=BUILD_DEVICE, help="cpu (reproducible) o auto")
    parser.add_argument("--no-eval", action="store_true", help="no evaluar en test al terminar")
    args = parser.parse_args(argv)
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    device = None if args.device == "auto" else args.device
    for fmt in args.formats:
        if fmt == MYSTERY_SUBDIR:
            for name in MYSTERY_NAMES:
                build_mystery(name, args.out, device, evaluate=not args.no_eval)
        else:
            build(fmt, args.out, device, evaluate=not args.no_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
