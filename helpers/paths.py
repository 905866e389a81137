"""Rutas del curso. Todo lo que generan los cuadernos va a una carpeta de salidas ignorada por git."""

from __future__ import annotations

import os
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = COURSE_ROOT / "solutions"
NOTEBOOKS_DIR = COURSE_ROOT / "notebooks"
OUTPUT_ENV = "CURSO_LORA_OUTPUT"


def output_dir(*parts: str) -> Path:
    """Carpeta (creada si falta) dentro de ``salidas/`` o de la que indique ``CURSO_LORA_OUTPUT``."""
    folder = Path(os.environ.get(OUTPUT_ENV) or COURSE_ROOT / "salidas").expanduser().joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shown(path) -> str:
    """Una ruta para enseñarla: relativa a la carpeta del curso (nunca la ruta completa de la máquina)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(COURSE_ROOT).as_posix()
    except ValueError:
        return path.name
