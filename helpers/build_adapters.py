"""Construye los adaptadores LoRA preentrenados de ``adapters/``: uno por formato de salida.

Los tres aprenden la misma entrada (una fecha escrita en español) con respuestas distintas:
``adapters/iso`` -> ``2021-03-05``, ``adapters/us`` -> ``03/05/2021``, ``adapters/en`` -> ``March 5, 2021``.
El cuaderno ``load_lora_adapter_example`` los carga, los cambia y los fusiona.

Uso: ``python -m helpers.build_adapters`` (o ``make adapters``); ``--formats iso`` para construir solo
uno. Entrena con ``SFTTrainer`` en CPU y float32 con una semilla fija, así que el resultado es el
mismo en cada ejecución en la misma máquina. Cada carpeta queda en el formato estándar de PEFT:
``adapter_config.json`` + ``adapter_model.safetensors`` (nada de pickle, nada más).

La receta está en las constantes de este módulo; ``lora_config()`` y ``adapter_config_dict()``
devuelven lo que el constructor escribe, para que una prueba compare los adaptadores publicados
con la receta sin volver a entrenar.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .paths import COURSE_ROOT

ADAPTERS_DIR = COURSE_ROOT / "adapters"
ADAPTER_FORMATS = ("iso", "us", "en")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Lo que figura como modelo base en adapter_config.json: el nombre del modelo del curso en el Hub,
# no una ruta de esta máquina. PeftModel.from_pretrained(base, carpeta) usa el `base` que se le pasa.
BASE_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

# La receta (igual para los tres formatos)
SEED = 0
LORA_R = 8
LORA_ALPHA = 16
LORA_DROPOUT = 0.0
TARGET_MODULES = ("q_proj", "v_proj")
LEARNING_RATE = 4e-3
BATCH_SIZE = 8
MAX_STEPS = 96
WARMUP_STEPS = 4
LR_SCHEDULER = "linear"
BUILD_DEVICE = "cpu"  # CPU y float32: el mismo resultado en cada ejecución


def adapter_dir(fmt: str, root: Path | str = ADAPTERS_DIR) -> Path:
    """Carpeta del adaptador de un formato ('iso', 'us' o 'en')."""
    if fmt not in ADAPTER_FORMATS:
        raise ValueError(f"No hay adaptador para el formato {fmt!r}. Usa uno de: {', '.join(ADAPTER_FORMATS)}.")
    return Path(root) / fmt


MYSTERY_NAMES = ("a", "b", "c")


def mystery_adapters(destination: Path | str, seed: int = 0) -> dict[str, str]:
    """Copias de los tres adaptadores con nombres sin pista (``a``, ``b``, ``c``), en un orden que fija ``seed``.

    Para el ejercicio 🦁 del cuaderno de carga: quien lo hace decide qué formato produce cada uno mirando
    sus respuestas. Devuelve {nombre: carpeta}. Volver a llamarla reescribe las mismas copias.
    """
    import random
    import shutil

    order = list(ADAPTER_FORMATS)
    random.Random(f"misterio-{seed}").shuffle(order)
    folders = {}
    for name, fmt in zip(MYSTERY_NAMES, order):
        folder = Path(destination) / name
        folder.mkdir(parents=True, exist_ok=True)
        for file in ADAPTER_FILES:
            shutil.copyfile(adapter_dir(fmt) / file, folder / file)
        folders[name] = str(folder)
    return folders


def lora_config():
    """La ``LoraConfig`` con la que se entrenan los adaptadores."""
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                      target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM")


def sft_config(output_dir: Path | str, device: str = BUILD_DEVICE):
    """La ``SFTConfig`` del entrenamiento (pasos, lote, tasa de aprendizaje, semilla)."""
    from trl import SFTConfig

    from .training import sft_device_args

    return SFTConfig(output_dir=str(output_dir), max_steps=MAX_STEPS, per_device_train_batch_size=BATCH_SIZE,
                     learning_rate=LEARNING_RATE, lr_scheduler_type=LR_SCHEDULER, warmup_steps=WARMUP_STEPS,
                     seed=SEED, data_seed=SEED, logging_steps=8, save_strategy="no",
                     **sft_device_args(device))


def _jsonable(config: dict) -> dict:
    """Como lo escribe ``save_pretrained``, pero con los conjuntos ordenados (archivo reproducible)."""
    return {key: sorted(value) if isinstance(value, (set, frozenset)) else value
            for key, value in sorted(config.items())}


def adapter_config_dict() -> dict:
    """El contenido exacto de ``adapter_config.json`` que escribe el constructor."""
    config = lora_config()
    config.base_model_name_or_path = BASE_MODEL_NAME
    config.inference_mode = True
    return _jsonable(config.to_dict())


def _finalize(saved: Path) -> None:
    """Deja solo los dos archivos estándar, con la configuración de la receta."""
    for extra in saved.iterdir():
        if extra.name not in ADAPTER_FILES:
            extra.unlink()  # README.md (tarjeta del modelo vacía) y cualquier otro extra
    written = json.loads((saved / "adapter_config.json").read_text())
    expected = adapter_config_dict()
    written.update(base_model_name_or_path=BASE_MODEL_NAME)
    # PEFT escribe los conjuntos (target_modules) como listas en un orden que cambia de un proceso a otro
    set_fields = {k for k, v in lora_config().to_dict().items() if isinstance(v, (set, frozenset))}
    written.update({k: sorted(written[k]) for k in set_fields if isinstance(written.get(k), list)})
    if _jsonable(written) != expected:
        changed = sorted(k for k in set(written) | set(expected) if written.get(k) != expected.get(k))
        raise RuntimeError(f"adapter_config.json no coincide con la receta en: {', '.join(changed)}")
    (saved / "adapter_config.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    for name in ADAPTER_FILES:
        os.chmod(saved / name, 0o644)


def build(fmt: str, root: Path | str = ADAPTERS_DIR, device: str = BUILD_DEVICE, evaluate: bool = True) -> Path:
    """Entrena el adaptador de ``fmt`` y lo escribe (de forma atómica) en ``root/fmt``."""
    import torch
    import transformers
    from trl import SFTTrainer

    from .data import make_splits
    from .model import load_base_model

    target = adapter_dir(fmt, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    transformers.set_seed(SEED)
    model, tokenizer = load_base_model(device, dtype=torch.float32)
    splits = make_splits(fmt)
    with tempfile.TemporaryDirectory(prefix=f".{fmt}-", dir=target.parent) as tmp:
        trainer = SFTTrainer(model=model, args=sft_config(Path(tmp) / "trainer", device),
                             train_dataset=splits["train"], processing_class=tokenizer, peft_config=lora_config())
        start = time.perf_counter()
        trainer.train()
        print(f"[{fmt}] entrenado en {time.perf_counter() - start:.0f} s ({MAX_STEPS} pasos)")
        staging = Path(tmp) / fmt
        trainer.model.save_pretrained(staging)
        _finalize(staging)
        if target.exists():
            target.rename(Path(tmp) / "anterior")  # se borra al salir del bloque
        staging.rename(target)
    if evaluate:
        from .evaluation import evaluate as run_eval

        result = run_eval(trainer.model, tokenizer, splits["test"], progress=False)
        print(f"[{fmt}] test: {result}")
    size = (target / "adapter_model.safetensors").stat().st_size
    print(f"[{fmt}] escrito {target} ({size / 1e6:.1f} MB)")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=list(ADAPTER_FORMATS), choices=ADAPTER_FORMATS)
    parser.add_argument("--out", default=str(ADAPTERS_DIR), help="carpeta raíz (por defecto adapters/)")
    parser.add_argument("--device", default=BUILD_DEVICE, help="cpu (reproducible) o auto")
    parser.add_argument("--no-eval", action="store_true", help="no evaluar en test al terminar")
    args = parser.parse_args(argv)
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    for fmt in args.formats:
        build(fmt, args.out, None if args.device == "auto" else args.device, evaluate=not args.no_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
