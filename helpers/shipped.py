"""Lo que se sabe de los adaptadores publicados en ``adapters/``: formatos, carpetas y forma.

Lo importan los cuadernos, las comprobaciones y el taller (``helpers.authoring.build_adapters``, que los
construye): los hechos viven aquí, la receta de entrenamiento en el taller.
"""

from __future__ import annotations

from pathlib import Path

from .paths import COURSE_ROOT

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
    """{nombre: carpeta} de los tres adaptadores sin etiqueta del ejercicio 🦁."""
    return {name: str(mystery_dir(name, root)) for name in MYSTERY_NAMES}
