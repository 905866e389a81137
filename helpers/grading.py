"""Corrección de entregas para el profesorado: ejecuta cada cuaderno y reúne los puntos en un CSV.

Cada entrega se ejecuta en una COPIA dentro de una carpeta temporal nueva (el archivo entregado nunca
se toca), con nbclient, un kernel de Python de este mismo entorno y un límite de tiempo por cuaderno.
Una celda que falla no detiene la ejecución. Los puntos salen de los resultados que emiten las
comprobaciones (``checks.X(...)``) con el tipo MIME ``RESULT_MIME``; si un resultado falta, la fila
dice por qué. Un archivo que no es un cuaderno, está dañado, se pasa de tiempo o no es del curso
recibe su fila con el motivo, y la corrección sigue con las demás.

La orden de línea está en ``helpers.grade``; aquí está la lógica, usable desde Python::

    grades = grade_paths(["entregas/"], timeout=1800)
    write_csv(grades, "notas.csv")
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .checks.core import RESULT_MIME, STRICT_ENV
from .checks.registry import EXERCISES, ExerciseInfo
from .exercise_notebooks import checks_called, without_outputs
from .paths import OUTPUT_ENV

DEFAULT_TIMEOUT = 1800  # segundos por cuaderno (todas sus celdas juntas)
STARTUP_TIMEOUT = 120  # segundos para que arranque el kernel (con la máquina cargada tarda más)
SUPPORTED_NBFORMAT = (3, 4)  # la 3 se convierte a la 4 al leerla


class SubmissionError(Exception):
    """La entrega no se puede corregir; el mensaje es el motivo que va a la fila."""


@dataclass
class Grade:
    """Una fila de la corrección."""

    archivo: str
    cuaderno: str | None = None
    points: dict[str, int] = field(default_factory=dict)  # ejercicio de su cuaderno -> puntos
    maximo: int | None = None
    motivos: list[str] = field(default_factory=list)
    seconds: float = 0.0
    executed: Any = field(default=None, repr=False)  # el cuaderno ejecutado (nbformat), si se ejecutó

    @property
    def total(self) -> int:
        return sum(self.points.values())

    @property
    def motivo(self) -> str:
        return "; ".join(self.motivos)


# --- leer e identificar una entrega ---------------------------------------------------------------

def parse_submission(data: bytes):
    """El cuaderno (nbformat 4) de los bytes de una entrega, o ``SubmissionError`` con el motivo."""
    if not data.strip():
        raise SubmissionError("el archivo está vacío")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError("no es un cuaderno de Jupyter: no es un archivo de texto "
                              "(¿un PDF, una imagen, un .zip?)") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("{"):
            raise SubmissionError(
                f"el cuaderno está dañado o incompleto (JSON no válido en la línea {error.lineno}, "
                f"columna {error.colno}: {error.msg}); pide que lo guarde de nuevo desde Jupyter") from None
        raise SubmissionError("no es un cuaderno de Jupyter: no es JSON "
                              "(¿un .py o un .txt con la extensión cambiada?)") from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise SubmissionError("no es un cuaderno de Jupyter: es JSON, pero no tiene 'nbformat'")
    if raw["nbformat"] not in SUPPORTED_NBFORMAT:
        raise SubmissionError(f"formato de cuaderno no compatible (nbformat {raw['nbformat']!r}; "
                              "se espera 4): pide que lo abra y lo guarde con un Jupyter actual")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - cualquier rareza del formato es un cuaderno no válido
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SubmissionError(f"el cuaderno no es válido ({_short(detail)})") from None
    return nb


def identify(nb, filename: str, exercises: Sequence[ExerciseInfo] = EXERCISES) -> str:
    """El cuaderno del curso que es: metadatos ``curso_lora.notebook``; si no, el nombre del archivo."""
    known = list(dict.fromkeys(e.notebook for e in exercises))
    meta = nb.metadata.get("curso_lora")
    declared = meta.get("notebook") if isinstance(meta, dict) else None
    if declared in known:
        return declared
    stem = Path(filename).stem.lower().replace("-", "_").replace(" ", "_")
    if stem in known:
        return stem
    inside = [name for name in known if name in stem]
    if len(inside) == 1:
        return inside[0]
    raise SubmissionError(
        f"no reconozco el cuaderno (metadatos curso_lora.notebook = {declared!r}, archivo "
        f"{Path(filename).name!r}); debe ser uno de: {', '.join(known)}")


def checks_in(nb) -> set[str]:
    """Los ejercicios cuya llamada ``checks.X(...)`` aparece en el código del cuaderno."""
    return {name for cell in nb.cells if cell.cell_type == "code" for name in checks_called(cell.source)}


# --- ejecutar --------------------------------------------------------------------------------------

def _kernel_manager_class():
    """Un gestor de kernels que arranca SIEMPRE el Python de este entorno (``sys.executable``).

    Así un kernel "python3" de otro entorno registrado en la máquina del profesor no se cuela.
    """
    import zmq
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    curve = "transport_encryption" in AsyncKernelManager.class_trait_names() and zmq.has("curve")

    class CourseKernelManager(AsyncKernelManager):
        if curve:  # claves CurveZMQ para el kernel (así ipykernel no avisa en cada entrega)
            @default("transport_encryption")
            def _encrypt_when_possible(self):
                return "auto"

        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    name="python3", display_name="Python 3 (curso-lora)", language="python",
                    metadata={"supported_encryption": ["curve"]})
            return self._kernel_spec

    return CourseKernelManager


def kernel_env(output: Path) -> dict[str, str]:
    """El entorno del kernel: el de quien corrige, sin modo estricto y con las salidas en ``output``."""
    env = dict(os.environ)
    env.pop(STRICT_ENV, None)
    env[OUTPUT_ENV] = str(output)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # calla un aviso del depurador al arrancar
    return env


def execute(nb, workdir: Path, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Ejecuta ``nb`` (se modifica: recibe las salidas) con ``workdir`` como carpeta de trabajo.

    ``timeout`` es para el cuaderno entero, desde la primera celda. Devuelve ``None`` si llegó al final,
    o el motivo por el que se detuvo; las salidas de las celdas ya ejecutadas se conservan.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    state: dict[str, Any] = {"deadline": None, "cell": None}

    def timeout_func(cell) -> int:
        now = time.monotonic()
        if state["deadline"] is None:
            state["deadline"] = now + timeout
        return max(1, math.ceil(state["deadline"] - now))

    def on_cell_start(cell=None, cell_index=None, **_):
        state["cell"] = cell_index

    output = workdir / "salidas"
    output.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        nb, kernel_name="python3", kernel_manager_class=_kernel_manager_class(),
        allow_errors=True, timeout_func=timeout_func, startup_timeout=STARTUP_TIMEOUT,
        interrupt_on_timeout=False, shutdown_kernel="immediate", record_timing=False,
        on_cell_start=on_cell_start, resources={"metadata": {"path": str(workdir)}})

    def where() -> str:
        if state["cell"] is None:
            return "antes de la primera celda"
        return f"en la celda {state['cell'] + 1}"

    try:
        client.execute(env=kernel_env(output), cwd=str(workdir))
    except CellTimeoutError:
        return (f"se agotó el tiempo ({_seconds(timeout)} por cuaderno) {where()}; "
                "cuentan las comprobaciones hechas hasta entonces")
    except DeadKernelError:
        return (f"el kernel se detuvo {where()} (¿memoria agotada, exit() o un fallo de una librería?); "
                "cuentan las comprobaciones hechas hasta entonces")
    except Exception as error:  # noqa: BLE001 - la corrección sigue con la siguiente entrega
        if state["cell"] is None:
            return f"no pude arrancar el kernel de Python ({type(error).__name__}: {_short(str(error))})"
        return f"la ejecución se interrumpió {where()} ({type(error).__name__}: {_short(str(error))})"
    return None


# --- leer los resultados ---------------------------------------------------------------------------

def check_results(nb, notebook: str) -> dict[str, bool]:
    """Ejercicio -> aprobado, según los resultados emitidos en las salidas (cuenta el ÚLTIMO de cada uno)."""
    results = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") not in ("display_data", "execute_result"):
                continue
            payload = out.get("data", {}).get(RESULT_MIME)
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except json.JSONDecodeError:
                    continue
            if isinstance(payload, dict) and payload.get("notebook") == notebook and "exercise" in payload:
                results[payload["exercise"]] = payload.get("passed") is True
    return results


def _call_cells(nb, name: str) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code" and name in checks_called(cell.source)]


def _missing_reason(nb, name: str, stopped: bool) -> str | None:
    """Por qué una comprobación que SÍ está en el código no dejó resultado."""
    cells = _call_cells(nb, name)
    call = f"checks.{name}(...)"
    ran = [cell for cell in cells if cell.get("execution_count") is not None]
    for cell in ran:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"la celda de {call} dio un error: {out.get('ename')}: {_short(out.get('evalue', ''))}"
    if not ran:
        return None if stopped else f"la celda de {call} no se ejecutó"
    return f"{call} no dio resultado (¿está dentro de un if, de una función o de un try?)"


def collect(nb, notebook: str, calls: set[str] | None = None, exercises: Sequence[ExerciseInfo] = EXERCISES,
            stopped: bool = False) -> tuple[dict[str, int], list[str]]:
    """Puntos por ejercicio y motivos, a partir de un cuaderno ya ejecutado.

    ``calls``: los ejercicios cuya llamada aparece en el código entregado (por defecto, los de ``nb``).
    ``stopped``: la ejecución no llegó al final (no se repite el motivo en cada ejercicio no alcanzado).
    Los puntos de un ejercicio aprobado salen del registro, no de lo que diga la salida.
    """
    calls = checks_in(nb) if calls is None else calls
    results = check_results(nb, notebook)
    points, reasons = {}, []
    for info in (e for e in exercises if e.notebook == notebook):
        points[info.name] = info.points if results.get(info.name) else 0
        if info.name in results:
            continue
        if info.name not in calls:
            reasons.append(f"falta la comprobación de {info.name} "
                           f"(¿borraste o renombraste la llamada checks.{info.name}(...)?)")
        else:
            reason = _missing_reason(nb, info.name, stopped)
            if reason:
                reasons.append(reason)
    return points, reasons


# --- corregir --------------------------------------------------------------------------------------

def grade_file(path, *, timeout: float = DEFAULT_TIMEOUT,
               exercises: Sequence[ExerciseInfo] = EXERCISES) -> Grade:
    """Corrige una entrega. No lanza: cualquier problema va a la fila, en ``motivos``."""
    grade = Grade(archivo=str(path))
    start = time.monotonic()
    try:
        _grade_into(grade, Path(path), timeout, exercises)
    except Exception as error:  # noqa: BLE001 - un fallo inesperado no para el lote
        grade.motivos.append(f"error interno al corregir ({type(error).__name__}: {_short(str(error))})")
    grade.seconds = time.monotonic() - start
    return grade


def _grade_into(grade: Grade, path: Path, timeout: float, exercises: Sequence[ExerciseInfo]) -> None:
    try:
        if not path.exists():
            raise SubmissionError("no encuentro el archivo")
        if not path.is_file():
            raise SubmissionError("no es un archivo")
        data = path.read_bytes()  # la única vez que se lee la entrega; no se vuelve a abrir
        submitted = parse_submission(data)
        grade.cuaderno = identify(submitted, path.name, exercises)
    except (SubmissionError, OSError) as error:
        reason = str(error) if isinstance(error, SubmissionError) else f"no puedo leer el archivo ({error})"
        grade.motivos.append(reason)
        try:  # si el nombre dice qué cuaderno es, la fila va con los suyos (con 0 puntos)
            _expect(grade, identify(nbformat.v4.new_notebook(), path.name, exercises), exercises)
        except SubmissionError:
            pass
        return

    _expect(grade, grade.cuaderno, exercises)
    calls = checks_in(submitted)
    with tempfile.TemporaryDirectory(prefix="curso-lora-correccion-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        copy = without_outputs(submitted)  # solo cuenta lo que salga al ejecutarlo aquí
        nbformat.write(copy, workdir / "entrega.ipynb")  # la copia que se ejecuta
        stop = execute(copy, workdir, timeout)
    grade.executed = copy
    grade.points, reasons = collect(copy, grade.cuaderno, calls, exercises, stopped=stop is not None)
    grade.motivos += ([stop] if stop else []) + reasons


def _expect(grade: Grade, notebook: str, exercises: Sequence[ExerciseInfo]) -> None:
    expected = [e for e in exercises if e.notebook == notebook]
    grade.cuaderno, grade.maximo = notebook, sum(e.points for e in expected)
    grade.points = {e.name: 0 for e in expected}


def expand_paths(paths: Iterable) -> tuple[list[Path], list[str]]:
    """Archivos a corregir (las carpetas aportan sus ``*.ipynb``, también en subcarpetas) y avisos."""
    files, warnings_, seen = [], [], set()
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.suffix.lower() == ".ipynb" and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(given).parts))
            if not found:
                warnings_.append(f"la carpeta {given} no tiene cuadernos .ipynb")
        else:
            found = [given]
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, warnings_


def grade_paths(paths: Iterable, *, timeout: float = DEFAULT_TIMEOUT,
                exercises: Sequence[ExerciseInfo] = EXERCISES,
                on_grade: Callable[[int, int, Grade], None] | None = None) -> list[Grade]:
    """Corrige varias entregas (archivos o carpetas), una detrás de otra; un problema no para el lote."""
    files, _ = expand_paths(paths)
    grades = []
    for number, path in enumerate(files, start=1):
        grade = grade_file(path, timeout=timeout, exercises=exercises)
        grades.append(grade)
        if on_grade:
            on_grade(number, len(files), grade)
    return grades


# --- informar --------------------------------------------------------------------------------------

def columns(exercises: Sequence[ExerciseInfo] = EXERCISES) -> dict[tuple[str, str], str]:
    """(cuaderno, ejercicio) -> nombre de su columna (el del ejercicio; con el cuaderno si se repite)."""
    counts: dict[str, int] = {}
    for e in exercises:
        counts[e.name] = counts.get(e.name, 0) + 1
    return {(e.notebook, e.name): e.name if counts[e.name] == 1 else f"{e.notebook}.{e.name}"
            for e in exercises}


def csv_header(exercises: Sequence[ExerciseInfo] = EXERCISES) -> list[str]:
    return ["archivo", "cuaderno", *columns(exercises).values(), "total", "maximo", "motivo"]


def csv_row(grade: Grade, exercises: Sequence[ExerciseInfo] = EXERCISES) -> list:
    cells = [grade.points.get(name, "") if notebook == grade.cuaderno else ""
             for (notebook, name) in columns(exercises)]
    maximo = "" if grade.maximo is None else grade.maximo
    return [grade.archivo, grade.cuaderno or "", *cells, grade.total, maximo, grade.motivo]


def write_csv(grades: Sequence[Grade], csv_path, exercises: Sequence[ExerciseInfo] = EXERCISES) -> Path:
    """Escribe el CSV (UTF-8, una fila por entrega). Se escribe aparte y se renombra: nunca queda a medias."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    partial = csv_path.with_name(f".{csv_path.name}.parcial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(exercises))
        writer.writerows(csv_row(grade, exercises) for grade in grades)
    os.replace(partial, csv_path)
    return csv_path


def table(grades: Sequence[Grade], exercises: Sequence[ExerciseInfo] = EXERCISES) -> str:
    """Tabla legible, un bloque por cuaderno: puntos de cada ejercicio, total y motivo."""
    blocks = []
    notebooks = list(dict.fromkeys(e.notebook for e in exercises))
    for notebook in [*notebooks, None]:
        rows = [g for g in grades if g.cuaderno == notebook]
        if not rows:
            continue
        expected = [e for e in exercises if e.notebook == notebook]
        if notebook is None:
            title = "Entregas sin corregir (no se reconoce el cuaderno o no se puede leer)"
            header = ["archivo", "motivo"]
            body = [[g.archivo, g.motivo] for g in rows]
        else:
            title = f"Cuaderno {notebook} (máximo {sum(e.points for e in expected)} puntos)"
            header = ["archivo", *(e.name for e in expected), "total", "motivo"]
            body = [[g.archivo, *(f"{g.points.get(e.name, 0)}/{e.points}" for e in expected),
                     f"{g.total}/{g.maximo}", g.motivo] for g in rows]
        widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header) - 1)]
        lines = [title]
        for row in [header, *body]:
            lines.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
        blocks.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(blocks)


def _short(text: str, limit: int = 160) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s"
