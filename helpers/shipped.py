"""Lo que se sabe de los adaptadores publicados en ``adapters/``: formatos, carpetas y forma.

Lo importan los cuadernos, las comprobaciones y el taller (``helpers.authoring.build_adapters``, que los
construye): los hechos viven aquí, la receta de entrenamiento en el taller.

**La variante de cada entrega.** Al corregir, quien corrige pone en ``CURSO_LORA_VARIANTE`` una ficha
propia de cada entrega (derivada sin vuelta atrás de su semilla oculta, ``helpers.grading.chain``) y se la
da también al juez. Con ella, ``mystery_dirs()`` sortea qué adaptador publicado hay detrás de cada nombre
sin etiqueta (y lo escribe con otros bytes), y ``helpers.colleagues`` sortea las historias y las firmas de
los compañeros: una respuesta copiada de otra entrega, o escrita de antemano, no es la de esta. Sin la
variable (fuera de la corrección) todo es como siempre: cada nombre, su carpeta.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from pathlib import Path

from .paths import COURSE_ROOT, output_dir

ADAPTERS_DIR = COURSE_ROOT / "adapters"
ADAPTER_FORMATS = ("iso", "us", "en")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Lo que figura como modelo base en adapter_config.json: el nombre del modelo del curso en el Hub,
# no una ruta de esta máquina. PeftModel.from_pretrained(base, carpeta) usa el `base` que se le pasa.
BASE_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

# Su forma (igual para los tres formatos)
LORA_R = 8
LORA_ALPHA = 16
TARGET_MODULES = ("q_proj", "v_proj")

# Los tres sin etiqueta (ejercicio 🦁). Nombres que PEFT acepta sin avisar: "a" está dentro de "lora_", y
# PEFT avisa de que un nombre así puede perder pesos al cargar.
MYSTERY_NAMES = ("x", "y", "z")
MYSTERY_SUBDIR = "misterio"
# Otras capas que los publicados: sus ΔW no comparten ninguna capa con adapters/iso|us|en, así que no
# se pueden "reconocer" comparando pesos con ellos; solo preguntándoles.
MYSTERY_TARGET_MODULES = ("k_proj", "o_proj")

# Las historias de los fusionados de los compañeros (ejercicio 🐕): qué hizo cada uno al fusionar el ISO.
COLLEAGUES = ("ana", "bruno", "carla")
MERGE_STORIES = {
    "bien": "fusionó bien: `merge_and_unload()` sobre un modelo base recién cargado",
    "sin_fusionar": "llamó a `unload()` en vez de `merge_and_unload()`: quitó el adaptador sin sumarlo",
    "dos_veces": "cargó el adaptador sobre un modelo que ya estaba fusionado y volvió a fusionar",
    "sin_escala": "fusionó a mano, `W + B·A`, y se olvidó de la escala `lora_alpha / r`",
    "otro_adaptador": "fusionó el adaptador de otra carpeta de `adapters/`, no el ISO",
}


def adapter_dir(fmt: str, root: Path | str = ADAPTERS_DIR) -> Path:
    """Carpeta del adaptador de un formato ('iso', 'us' o 'en')."""
    if fmt not in ADAPTER_FORMATS:
        raise ValueError(f"No hay adaptador para el formato {fmt!r}. Usa uno de: {', '.join(ADAPTER_FORMATS)}.")
    return Path(root) / fmt


def mystery_dir(name: str, root: Path | str = ADAPTERS_DIR) -> Path:
    """Carpeta del adaptador sin etiqueta ``name`` ('x', 'y' o 'z')."""
    if name not in MYSTERY_NAMES:
        raise ValueError(f"No hay adaptador sin etiqueta {name!r}. Usa uno de: {', '.join(MYSTERY_NAMES)}.")
    return Path(root) / MYSTERY_SUBDIR / name


def mystery_dirs(root: Path | str = ADAPTERS_DIR) -> dict[str, str]:
    """{nombre: carpeta} de los tres adaptadores sin etiqueta del ejercicio 🦁.

    Con una variante (al corregir), las carpetas se escriben en las salidas con lo que la variante sorteó
    para cada nombre (``mystery_weights``).
    """
    if variant_token() is None:
        return {name: str(mystery_dir(name, root)) for name in MYSTERY_NAMES}
    from safetensors.torch import save_file

    folders = {}
    for name, source in mystery_sources().items():
        folder = output_dir(MYSTERY_SUBDIR, name)
        config = (mystery_dir(source, root) / ADAPTER_FILES[0]).read_text(encoding="utf-8")
        (folder / ADAPTER_FILES[0]).write_text(config, encoding="utf-8")
        save_file(mystery_weights(name, root=root), str(folder / ADAPTER_FILES[1]), metadata={"format": "pt"})
        folders[name] = str(folder)
    return folders


# ---------------------------------------------------------------- la variante de cada entrega
VARIANT_ENV = "CURSO_LORA_VARIANTE"


def variant_token() -> str | None:
    """La ficha de variante de esta ejecución (la pone quien corrige), o None fuera de la corrección."""
    return os.environ.get(VARIANT_ENV) or None


@contextlib.contextmanager
def using_variant(token: str | None):
    """Durante el bloque, la variante ``token`` (None: ninguna); después, la que hubiera."""
    before = os.environ.get(VARIANT_ENV)
    os.environ.pop(VARIANT_ENV, None)
    if token:
        os.environ[VARIANT_ENV] = token
    try:
        yield
    finally:
        os.environ.pop(VARIANT_ENV, None)
        if before is not None:
            os.environ[VARIANT_ENV] = before


def variant_random(purpose: str, token: str | None = None) -> random.Random | None:
    """Un generador para ``purpose`` que sale de la variante (``token`` o la de esta ejecución); None sin ella."""
    token = token or variant_token()
    if not token:
        return None
    digest = hashlib.sha256(f"curso-lora\0{purpose}\0{token}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def mystery_sources(token: str | None = None) -> dict[str, str]:
    """{nombre sin etiqueta: carpeta de ``adapters/misterio/`` que lleva}: sin variante, la suya.

    Con variante, cada nombre sortea una de las tres (pueden repetirse, no las tres iguales: sus columnas
    tienen que poder distinguirse).
    """
    rng = variant_random("misterio", token)
    if rng is None:
        return {name: name for name in MYSTERY_NAMES}
    while True:
        drawn = {name: rng.choice(MYSTERY_NAMES) for name in MYSTERY_NAMES}
        if len(set(drawn.values())) > 1:
            return drawn


def mystery_weights(name: str, token: str | None = None, root: Path | str = ADAPTERS_DIR) -> dict:
    """Los pesos LoRA (claves de PEFT) del adaptador sin etiqueta ``name`` en la variante.

    Sin variante, los de su carpeta. Con ella, los de la carpeta sorteada con sus r componentes en otro orden
    y con otros signos (A' = S·P·A, B' = B·Pᵀ·S): el mismo ΔW = B·A, así que responde igual, pero con otros
    bytes, y nada en el archivo dice de qué carpeta salió.
    """
    import torch
    from safetensors.torch import load_file

    weights = load_file(mystery_dir(mystery_sources(token)[name], root) / ADAPTER_FILES[1])
    rng = variant_random(f"misterio/{name}", token)
    if rng is None:
        return weights
    rank = next(t.shape[0] for key, t in weights.items() if "lora_A" in key)
    order = list(range(rank))
    rng.shuffle(order)
    signs = torch.tensor([rng.choice((-1.0, 1.0)) for _ in order])
    for key, tensor in weights.items():
        if "lora_A" in key:
            weights[key] = (tensor[order] * signs[:, None].to(tensor.dtype)).contiguous()
        elif "lora_B" in key:
            weights[key] = (tensor[:, order] * signs[None, :].to(tensor.dtype)).contiguous()
    return weights
