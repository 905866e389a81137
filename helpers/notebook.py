"""Salida de las librerías en los cuadernos: una barra por entrenamiento, sin ruido, avisos explicados."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path


def quiet_library_output() -> None:
    """Quita lo que no enseña nada; deja los errores y una barra por cada `trainer.train()`.

    Llámala al principio del cuaderno, antes de crear el `SFTConfig` (y no le pases
    ``disable_tqdm=True``: volverían los diccionarios). Quita:

    - las barras de `datasets` (las de TRL al preparar los datos: «Tokenizing», «Building labels»...);
    - el diccionario que el `Trainer` escribe en cada registro: en su lugar, `progress.TrainingBar`;
    - el aviso «IProgress not found» de tqdm (sin ipywidgets, las barras salen como texto y van bien);
    - avisos informativos de transformers (los errores se siguen viendo);
    - las barras «Loading weights» / «Writing model shards», que cambian en cada ejecución, y la del lector
      GGUF de transformers («Converting and de-quantizing GGUF tensors»);
    - el FutureWarning de `is_gradient_checkpointing`, que sale de dentro de transformers 5 y peft 0.21,
      no de nuestro código (nosotros ya usamos `activation_checkpointing`).
    """
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    import datasets
    import transformers
    import transformers.trainer

    from .progress import TrainingBar

    datasets.disable_progress_bars()
    _quiet_gguf_reader()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # `TrainingArguments` apaga su barra (disable_tqdm) si su logger no muestra avisos: que los muestre.
    logging.getLogger("transformers.training_args").setLevel(logging.WARNING)
    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = TrainingBar


EXPLANATIONS = {  # comienzo del aviso (peft 0.21, peft_model.py) -> explicación
    "OLoRA changes the base weights of the model": (
        "Aviso de PEFT, esperado aquí: para convertir OLoRA en un LoRA normal, `save_pretrained(..., "
        "path_initial_model_for_weight_conversion=...)` carga el adaptador inicial junto al entrenado, "
        "y PEFT avisa en cuanto ve otro adaptador sobre un modelo cuyos pesos base cambió OLoRA. El "
        "adaptador convertido es justo lo que evita ese problema: va sobre el modelo base original."
    ),
}


def short_path(filename: str) -> str:
    """Ruta sin la parte de esta máquina: desde el paquete instalado o desde la carpeta actual."""
    path = Path(filename)
    if "site-packages" in path.parts:
        return Path(*path.parts[path.parts.index("site-packages") + 1:]).as_posix()
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    return path.name


@contextlib.contextmanager
def explained_warnings():
    """Los avisos del bloque: los conocidos (``EXPLANATIONS``) explicados en español; el resto, tal cual
    pero con rutas cortas (sin la carpeta del entorno virtual de esta máquina)."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for w in caught:
        message = str(w.message)
        explanation = next((text for key, text in EXPLANATIONS.items() if key in message), None)
        if explanation:
            print(f"ℹ️ {explanation}\n   ({short_path(w.filename)}: «{message.split('. ')[0]}.»)")
        else:
            warnings.warn_explicit(w.message, w.category, short_path(w.filename), w.lineno)


def _quiet_gguf_reader() -> None:
    """El lector GGUF de transformers (``from_pretrained(..., gguf_file=...)``) pinta su propia barra de tqdm."""
    import functools

    import transformers.modeling_gguf_pytorch_utils as reader
    from tqdm.auto import tqdm

    reader.tqdm = functools.partial(tqdm, disable=True)
