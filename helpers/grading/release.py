"""La copia del curso para el alumnado: todo menos las soluciones (como el paso «release» de nbgrader).

Uso::

    python -m helpers.grading.release CARPETA      # make release DESTINO=CARPETA

Lleva los cuadernos de ejercicios, los helpers, los adaptadores, las figuras, la lección y lo necesario
para instalar; no lleva ``solutions/``, ni las pruebas (que leen las soluciones), ni salidas. La corrección
ejecuta cada entrega sobre una copia así, de modo que una entrega no puede leer las soluciones.
``CARPETA`` no debe existir o debe estar vacía: nunca se sobrescribe nada.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from ..paths import COURSE_ROOT

INCLUDED = ("notebooks", "helpers", "adapters", "images", "configs", "README.md", "lora_adapters.md",
            "prompt_tuning.md", "requirements.txt", "pyproject.toml", "Makefile", "curso.py")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")


def build_release(destination, source: Path = COURSE_ROOT) -> Path:
    """Copia el curso sin soluciones en ``destination`` (nueva o vacía) y la devuelve."""
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} ya existe y no está vacía: elige una carpeta nueva "
                              "(nunca se sobrescribe nada)")
    destination.mkdir(parents=True, exist_ok=True)
    for name in INCLUDED:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, destination / name, ignore=IGNORED, symlinks=False)
        elif path.is_file():
            shutil.copy2(path, destination / name)
    return destination


@contextlib.contextmanager
def course_copy(source: Path | None = None):
    """Una copia temporal del curso sin soluciones (la que ven las entregas), borrada al terminar."""
    from ..model import base_model_path

    base_model_path()  # el modelo convertido ya en caché: dentro de la caja solo se lee
    with tempfile.TemporaryDirectory(prefix="curso-lora-curso-") as tmp:
        yield build_release(Path(tmp) / "curso", Path(source or COURSE_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.grading.release",
                                     description="Copia el curso para el alumnado, sin soluciones.")
    parser.add_argument("carpeta", help="carpeta nueva (o vacía) donde dejar la copia")
    args = parser.parse_args(argv)
    try:
        folder = build_release(args.carpeta)
    except FileExistsError as error:
        parser.error(str(error))
    print(f"Copia para el alumnado en {folder} (sin solutions/): reparte esa carpeta.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
