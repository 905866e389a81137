"""Paso 3 de la corrección: juzgar lo entregado, en un proceso limpio de quien corrige.

Uso (lo lanza ``helpers.grading``)::

    python -m helpers.judge CARPETA_ENTREGADO --cuaderno NOMBRE --semilla N

Para cada ejercicio del cuaderno (según el registro, no según la entrega) carga los objetos entregados
(safetensors, JSON, carpetas; nada de pickle) y ejecuta la MISMA función de comprobación que ve el alumno,
con fechas ocultas elegidas con ``--semilla``. Escribe en la salida estándar un JSON
``{ejercicio: {"estado", "puntos", "mensaje"}}``. El código de la entrega nunca se ejecutó en este proceso.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

from .checks.registry import exercises_for

CHECK_MODULES = {"load_lora_adapter_example": "adapters", "lora_finetuning": "finetuning",
                 "lora_advanced": "advanced"}


def judge(root: Path, notebook: str, seed: int) -> dict[str, dict]:
    """Veredicto de cada ejercicio de ``notebook`` sobre lo entregado en ``root``."""
    module = importlib.import_module(f"helpers.checks.{CHECK_MODULES[notebook]}")
    verdicts = {}
    for info in exercises_for(notebook):
        exercise = getattr(module, info.name)
        with contextlib.redirect_stdout(io.StringIO()):  # avisos de librerías: no van al JSON
            outcome = exercise.judge(root, seed)
        verdicts[info.name] = {"estado": outcome.status, "puntos": info.points if outcome.passed else 0,
                               "mensaje": outcome.message}
    return verdicts


def main(argv: list[str] | None = None) -> int:
    from .notebook import quiet_library_output

    quiet_library_output()
    parser = argparse.ArgumentParser(prog="python -m helpers.judge")
    parser.add_argument("carpeta")
    parser.add_argument("--cuaderno", required=True, choices=sorted(CHECK_MODULES))
    parser.add_argument("--semilla", type=int, required=True)
    args = parser.parse_args(argv)
    verdicts = judge(Path(args.carpeta), args.cuaderno, args.semilla)
    sys.stdout.write(json.dumps(verdicts, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
