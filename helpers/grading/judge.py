"""Paso «juzgar» de la corrección: el juez, código de quien corrige, sobre lo entregado como datos.

Dos lados en un módulo:

- **El lanzador** (``run_judge``, fuera de la caja) arranca al juez como código de confianza:
  ``python -I`` (modo aislado: ni la carpeta actual ni la del script en ``sys.path``, sin el ``site`` del
  usuario, sin variables ``PYTHON*``), con la carpeta de trabajo vacía del juez como directorio actual. El
  lanzador pone delante en ``sys.path`` la copia del curso de quien corrige (de solo lectura) y se niega a
  seguir si ``helpers`` no sale de ahí. Ningún import puede resolverse a algo que escribió la entrega: lo
  entregado ni siquiera está en ``sys.path``. Corre en **la misma caja y con los mismos límites** que la
  ejecución (``helpers.grading.sandbox``): tiempo, memoria, procesos, sin red; ve de solo lectura el
  sistema, el entorno de Python, la copia del curso, la caché del modelo y lo recogido
  (``helpers.grading.collect``); solo escribe en su carpeta de trabajo. **El pedido** (carpeta, cuaderno
  y semilla de las fechas ocultas) va en un archivo de quien corrige, no en la línea de órdenes; **los
  veredictos** vuelven en un archivo de la carpeta del juez, que se lee como archivo normal, con tope, y
  se valida. Si el juez se pasa de tiempo o memoria, falla o devuelve algo que no se entiende,
  ``JudgeFailed`` lleva el motivo a la fila de esa entrega.
- **El juez** (``main``, dentro de la caja)::

      python -I -c LANZADOR CURSO --pedido PEDIDO.json --salida VEREDICTOS.json

  Para cada ejercicio del cuaderno (según el registro, no según la entrega), primero valida lo entregado
  como datos (``handover.refusals``: manifiesto, lista blanca de configuraciones, cabeceras de
  safetensors) y, si pasa, lo carga (safetensors, JSON, carpetas; nada de pickle) y ejecuta la MISMA
  función de comprobación que ve el alumno, con fechas ocultas. Escribe en ``VEREDICTOS.json``
  ``{ejercicio: {"estado", "puntos", "mensaje"[, "rechazo"]}}``. Ningún código de la entrega se ejecuta aquí.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..checks.registry import exercises_for
from ..checks.safe_files import Refused, read_regular
from .sandbox import Limits, run_sandboxed

REQUEST, VERDICTS, LOG = "pedido.json", "veredictos.json", "juez.log"
JUDGE_TIMEOUT = 900  # segundos para juzgar lo entregado por un cuaderno
MAX_VERDICTS_BYTES = 1 << 20
STATES = ("correcto", "incorrecto", "error", "sin intentar")  # los de helpers.checks.core
# sys.argv del lanzador: ['-c', CURSO, --pedido, ..., --salida, ...]
LAUNCHER = (
    "import os, sys\n"
    "course = os.path.realpath(sys.argv[1])\n"
    "sys.path.insert(0, course)\n"
    "import helpers\n"
    "if os.path.realpath(helpers.__file__) != os.path.join(course, 'helpers', '__init__.py'):\n"
    "    sys.exit(f'helpers no viene de la copia del curso: {helpers.__file__}')\n"
    "import runpy\n"
    "sys.argv = ['helpers.grading.judge', *sys.argv[2:]]\n"
    "runpy.run_module('helpers.grading.judge', run_name='__main__', alter_sys=True)\n"
)


class JudgeFailed(Exception):
    """El juez no dio veredictos; el mensaje es el motivo para la fila."""


@dataclass(frozen=True)
class JudgeLimits:
    """Los límites del juez: los de la ejecución (memoria, procesos, disco), con su propio tiempo."""

    timeout: float = JUDGE_TIMEOUT
    memory_bytes: int = 8 * 2**30
    max_processes: int = 64
    output_bytes: int = 8 << 20  # sus avisos y errores (los veredictos van aparte)
    disk_bytes: int = 4 * 2**30


def judge_command(course: Path, request: Path, output: Path) -> list[str]:
    """La orden del juez: Python aislado con el lanzador; la semilla no aparece (va en ``request``)."""
    return [sys.executable, "-I", "-c", LAUNCHER, str(course), "--pedido", str(request), "--salida", str(output)]


def run_judge(collected: Path, notebook: str, seed: int, *, course: Path, workdir: Path,
              limits: JudgeLimits = JudgeLimits(), cpus: int | None = None, isolate: bool = True,
              variant: str | None = None) -> dict[str, dict]:
    """Los veredictos del juez sobre ``collected/entregado``; ``JudgeFailed`` con el motivo si no los da.

    ``collected`` es la carpeta de lo recogido (de quien corrige); ahí se escribe el pedido. ``workdir`` es
    la carpeta del juez (nueva): su directorio actual, lo único que puede escribir. ``variant``: la ficha de
    variante de la entrega (la misma que vio su kernel), que va en el pedido.
    """
    from ..model import CACHE_ENV, cache_dir

    collected, course = Path(collected).resolve(), Path(course).resolve()
    workdir.mkdir(mode=0o700)
    request = collected / REQUEST
    request.write_text(json.dumps({"entregado": str(collected / "entregado"), "cuaderno": notebook,
                                   "semilla": int(seed), "variante": variant}), encoding="utf-8")
    log = workdir.parent / f"{workdir.name}.log"
    result = run_sandboxed(
        judge_command(course, request, workdir.resolve() / VERDICTS), course=course, workdir=workdir, log=log,
        limits=Limits(timeout=limits.timeout, memory_bytes=limits.memory_bytes, max_processes=limits.max_processes,
                      output_bytes=limits.output_bytes, disk_bytes=limits.disk_bytes),
        env={CACHE_ENV: str(cache_dir())}, read_only=(cache_dir(), collected), cpus=cpus, isolate=isolate)
    if result.status != "finished":
        raise JudgeFailed(f"el juez se detuvo: {result.reason}")
    if result.returncode != 0:
        raise JudgeFailed(f"el juez falló ({_last_line(log) or result.reason})")
    return read_verdicts(workdir / VERDICTS, notebook)


def read_verdicts(path: Path, notebook: str) -> dict[str, dict]:
    """Los veredictos del archivo del juez, validados: uno por ejercicio del cuaderno, con su forma."""
    try:
        verdicts = json.loads(read_regular(path, cap=MAX_VERDICTS_BYTES, label=path.name).decode("utf-8"))
    except Refused as refused:
        raise JudgeFailed(f"el juez no devolvió veredictos ({refused})") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JudgeFailed("el juez devolvió veredictos que no son JSON") from None
    names = [e.name for e in exercises_for(notebook)]
    if not isinstance(verdicts, dict) or sorted(verdicts) != sorted(names):
        raise JudgeFailed("el juez devolvió veredictos con una forma desconocida")
    for verdict in verdicts.values():
        if not (isinstance(verdict, dict) and verdict.get("estado") in STATES
                and isinstance(verdict.get("puntos"), int) and isinstance(verdict.get("mensaje"), str)
                and isinstance(verdict.get("rechazo", ""), str)):
            raise JudgeFailed("el juez devolvió veredictos con una forma desconocida")
    return verdicts


def _last_line(log: Path) -> str:
    try:
        text = read_regular(log, cap=64 << 20).decode("utf-8", errors="replace")
    except Refused:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    line = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(lines[-1].split())) if lines else ""
    return line if len(line) <= 160 else line[:159] + "…"


# --- el juez, dentro de la caja --------------------------------------------------------------------

CHECK_MODULES = {"load_lora_adapter_example": "adapters", "lora_finetuning": "finetuning",
                 "lora_advanced": "advanced", "lora_deploy": "deploy"}
MAX_REQUEST_BYTES = 4096


def judge(root: Path, notebook: str, seed: int, variant: str | None = None) -> dict[str, dict]:
    """Veredicto de cada ejercicio de ``notebook`` sobre lo entregado en ``root``, con la variante ``variant``."""
    from ..shipped import using_variant

    with using_variant(variant):  # las comprobaciones esperan lo que esta variante sorteó
        return _judge(root, notebook, seed)


def _judge(root: Path, notebook: str, seed: int) -> dict[str, dict]:
    from ..checks import handover
    from ..checks.core import FAILED

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


def read_request(path: Path) -> tuple[Path, str, int, str | None]:
    """(carpeta de lo entregado, cuaderno, semilla, variante) del pedido; ``ValueError`` si no tiene esa forma."""
    request = json.loads(read_regular(path, cap=MAX_REQUEST_BYTES).decode("utf-8"))
    folder, notebook, seed, variant = (request.get(k) for k in ("entregado", "cuaderno", "semilla", "variante"))
    if not (isinstance(folder, str) and notebook in CHECK_MODULES and isinstance(seed, int)
            and (variant is None or (isinstance(variant, str) and re.fullmatch(r"[0-9a-f]{64}", variant)))):
        raise ValueError(f"pedido con una forma desconocida: {sorted(request)}")
    return Path(folder), notebook, seed, variant


def write_verdicts(verdicts: dict, path: Path) -> None:
    """Escribe aparte y renombra: quien corrige nunca lee un JSON a medias."""
    partial = path.with_name(f".{path.name}.parcial")
    partial.write_text(json.dumps(verdicts, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    from ..notebook import quiet_library_output

    parser = argparse.ArgumentParser(prog="python -m helpers.grading.judge")
    parser.add_argument("--pedido", required=True, help="JSON con la carpeta entregada, el cuaderno y la semilla")
    parser.add_argument("--salida", required=True, help="dónde escribir los veredictos (JSON)")
    args = parser.parse_args(argv)
    quiet_library_output()
    root, notebook, seed, variant = read_request(Path(args.pedido))
    write_verdicts(judge(root, notebook, seed, variant), Path(args.salida))
    return 0


if __name__ == "__main__":
    sys.exit(main())
