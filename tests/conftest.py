"""Fixtures compartidas: el modelo base y la tarea se cargan una sola vez por sesión de pruebas."""

import pytest

from helpers.data import make_splits
from helpers.model import load_base_model


@pytest.fixture(scope="session")
def base():
    """(model, tokenizer) del modelo base del curso en CPU. No lo modifiques: cárgalo de nuevo si hace falta."""
    return load_base_model("cpu")


@pytest.fixture(scope="session")
def splits():
    """Los conjuntos ISO de la tarea (semilla 0)."""
    return make_splits("iso")


@pytest.fixture(autouse=True)
def lenient_checks(monkeypatch):
    """En las pruebas de Python, una comprobación que falla devuelve False (no lanza), como ve el alumno.

    `make test` pone CURSO_LORA_STRICT=1 para que nbval note un fallo en los cuadernos de soluciones.
    """
    from helpers.checks import STRICT_ENV
    from helpers.checks.handover import HANDOVER_ENV

    monkeypatch.delenv(STRICT_ENV, raising=False)
    monkeypatch.delenv(HANDOVER_ENV, raising=False)  # lo entregado por las soluciones con nbval no se pisa


@pytest.fixture(scope="session")
def dotted_adapter(tmp_path_factory):
    """Una carpeta con un adaptador entrenado de verdad en el formato con puntos (el del alumno).

    Si la suite acaba de ejecutar lora_finetuning (nbval), el que guardó; si no, se entrena con la receta del
    cuaderno (unos 2 min en CPU). Ningún archivo del curso responde ese formato.
    """
    import subprocess
    import sys

    from helpers.paths import output_dir

    saved = output_dir("lora_finetuning") / "adaptador"
    if (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file():
        return saved
    folder = tmp_path_factory.mktemp("con-puntos") / "adaptador"
    subprocess.run([sys.executable, "-m", "helpers.train", "--salida", str(folder)], check=True,
                   capture_output=True)
    return folder
