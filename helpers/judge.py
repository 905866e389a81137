"""Paso «juzgar» de la corrección: el juez, código de quien corrige, sobre lo entregado como datos.

Lo lanza ``helpers.grading_judge``: un Python aislado (``python -I``: sin la carpeta actual en
``sys.path``, sin el ``site`` del usuario, sin variables ``PYTHON*``) que importa ``helpers`` solo de la
copia del curso de quien corrige, dentro de la misma caja de arena que la ejecución::

    python -I -c LANZADOR CURSO --pedido PEDIDO.json --salida VEREDICTOS.json

``PEDIDO.json`` (en una carpeta de quien corrige, de solo lectura para el juez) dice la carpeta de lo
entregado (ya recogida y comprobada), el cuaderno y la semilla de las fechas ocultas; la semilla no va en
la línea de órdenes. Para cada ejercicio del cuaderno (según el registro, no según la entrega), primero se
valida lo entregado como datos (``handover.refusals``: manifiesto, lista blanca de configuraciones,
cabeceras de safetensors) y, si pasa, se carga (safetensors, JSON, carpetas; nada de pickle) y se ejecuta
la MISMA función de comprobación que ve el alumno, con fechas ocultas. Escribe en ``VEREDICTOS.json``
``{ejercicio: {"estado", "puntos", "mensaje"[, "rechazo"]}}``. Ningún código de la entrega se ejecuta aquí.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys
from pathlib import Path

from .checks.registry import exercises_for

CHECK_MODULES = {"load_lora_adapter_example": "adapters", "lora_finetuning": "finetuning",
                 "lora_advanced": "advanced"}
MAX_REQUEST_BYTES = 4096


def judge(root: Path, notebook: str, seed: int) -> dict[str, dict]:
    """Veredicto de cada ejercicio de ``notebook`` sobre lo entregado en ``root``."""
    from .checks import handover
    from .checks.core import FAILED

    module = importlib.import_module(f"helpers.checks.{CHECK_MODULES[notebook]}")
    verdicts = {}
    for info in exercises_for(notebook):
        exercise = getattr(module, info.name)
        refused = handover.refusals(info.name, exercise.handover, Path(root))
        if refused:  # ni se carga: ni PEFT ni transformers ven lo que no pasa la lista blanca
            reason = "; ".join(refused)[:600]
            verdicts[info.name] = {"estado": FAILED, "puntos": 0, "rechazo": reason,
                                   "mensaje": f"lo entregado no pasa la validación y no se carga ({reason})"}
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # avisos de librerías: no van al resultado
            outcome = exercise.judge(root, seed)
        verdicts[info.name] = {"estado": outcome.status, "puntos": info.points if outcome.passed else 0,
                               "mensaje": outcome.message}
    return verdicts


def read_request(path: Path) -> tuple[Path, str, int]:
    """(carpeta de lo entregado, cuaderno, semilla) del pedido; ``ValueError`` si no tiene esa forma."""
    from .safe_files import read_regular

    request = json.loads(read_regular(path, cap=MAX_REQUEST_BYTES).decode("utf-8"))
    folder, notebook, seed = (request.get(k) for k in ("entregado", "cuaderno", "semilla"))
    if not (isinstance(folder, str) and notebook in CHECK_MODULES and isinstance(seed, int)):
        raise ValueError(f"pedido con una forma desconocida: {sorted(request)}")
    return Path(folder), notebook, seed


def write_verdicts(verdicts: dict, path: Path) -> None:
    """Escribe aparte y renombra: quien corrige nunca lee un JSON a medias."""
    partial = path.with_name(f".{path.name}.parcial")
    partial.write_text(json.dumps(verdicts, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    from .notebook import quiet_library_output

    parser = argparse.ArgumentParser(prog="python -m helpers.judge")
    parser.add_argument("--pedido", required=True, help="JSON con la carpeta entregada, el cuaderno y la semilla")
    parser.add_argument("--salida", required=True, help="dónde escribir los veredictos (JSON)")
    args = parser.parse_args(argv)
    quiet_library_output()
    root, notebook, seed = read_request(Path(args.pedido))
    write_verdicts(judge(root, notebook, seed), Path(args.salida))
    return 0


if __name__ == "__main__":
    sys.exit(main())
