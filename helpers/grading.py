"""Corrección de entregas para el profesorado: una cadena de pasos pequeños, cada uno con un solo trabajo.

1. **leer** (``read_submission``): los bytes de la entrega, una sola vez; se reconoce el cuaderno.
2. **preparar** (``prepare``): sin salidas, y cada celda de comprobación sustituida por la del profesor
   (la de ``notebooks/`` de la copia del curso), como hace nbgrader con sus celdas de prueba.
3. **ejecutar** (``run``): en una carpeta propia, dentro de la caja de arena (``helpers.sandbox``), sobre
   una copia del curso sin soluciones (``helpers.release``), con límites. Cada ``checks.X(...)`` entrega
   sus objetos como datos (``helpers.checks.handover``). Este paso no da puntos.
4. **recoger** (``helpers.grading_collect``): lo entregado, la copia ejecutada y el estado se copian,
   archivo a archivo, sin seguir enlaces, solo archivos normales y con topes, a una carpeta de quien
   corrige; cada manifiesto se comprueba contra los bytes copiados. Lo raro es un motivo de la fila.
5. **juzgar** (``helpers.grading_judge``): el juez (``helpers.judge``), código de quien corrige, en un
   Python aislado que importa solo la copia del curso, dentro de la misma caja y con los mismos límites:
   valida lo recogido como datos (lista blanca, ``helpers.checks.whitelist``) y ejecuta las mismas
   funciones de comprobación sobre los objetos entregados, con fechas ocultas. De aquí, y solo de aquí,
   salen los puntos: nada que la entrega imprima, muestre o escriba en su cuaderno cuenta.
6. **informar** (``write_csv``, ``table``): una fila por entrega, escrita por quien corrige.

Las entregas nunca se modifican. Un archivo que no es un cuaderno, está dañado, se pasa de tiempo o no
es del curso recibe su fila con el motivo, y la corrección sigue con las demás.

La orden de línea está en ``helpers.grade``; aquí está la lógica, usable desde Python::

    with course_copy() as course:
        grades = [grade_file(p, course=course) for p in expand_paths(["entregas/"])[0]]
    write_csv(grades, "notas.csv")
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .checks.core import NOT_ATTEMPTED
from .checks.registry import EXERCISES, ExerciseInfo
from .exercise_notebooks import NOTEBOOKS_DIR, checks_called, without_outputs
from .grading_collect import collect
from .grading_judge import JudgeFailed, JudgeLimits, run_judge
from .grading_run import SUBMISSION
from .sandbox import NOT_ISOLATED, Limits, run_sandboxed

DEFAULT_TIMEOUT = 1800  # segundos por cuaderno (todas sus celdas juntas)
JUDGE_TIMEOUT = 900  # segundos para juzgar lo entregado por un cuaderno
SUPPORTED_NBFORMAT = (3, 4)  # la 3 se convierte a la 4 al leerla
MAX_SUBMISSION_BYTES = 50 * 2**20


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
    aislamiento: str = ""  # "bwrap" o el aviso de que se ejecutó sin aislar
    seconds: float = 0.0
    executed: Any = field(default=None, repr=False)  # el cuaderno ejecutado (nbformat), si se ejecutó
    mensajes: dict[str, str] = field(default_factory=dict)  # ejercicio -> veredicto del juez

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



# --- preparar ---------------------------------------------------------------------------------------

def instructor_check_cells(notebook: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, str]:
    """Ejercicio -> código de su celda de comprobación en el cuaderno de ejercicios del profesor."""
    nb = nbformat.read(Path(notebooks_dir) / f"{notebook}.ipynb", as_version=4)
    return {name: cell.source for cell in nb.cells if cell.cell_type == "code"
            for name in checks_called(cell.source)}


def prepare(nb, notebook: str, notebooks_dir: Path = NOTEBOOKS_DIR,
            exercises: Sequence[ExerciseInfo] = EXERCISES) -> tuple[Any, list[str]]:
    """La entrega lista para ejecutar (sin salidas, celdas de comprobación del profesor) y sus motivos."""
    official = instructor_check_cells(notebook, notebooks_dir)
    copy = without_outputs(nb)
    copy.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    found = set()
    for cell in copy.cells:
        if cell.cell_type != "code":
            continue
        names = [name for name in checks_called(cell.source) if name in official]
        if names:
            cell.source = official[names[0]]
            found.add(names[0])
    reasons = [f"falta la comprobación de {e.name} (¿borraste o renombraste la llamada checks.{e.name}(...)?)"
               for e in exercises if e.notebook == notebook and e.name not in found]
    return copy, reasons


# --- ejecutar ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunLimits:
    """Los límites de cada entrega: tiempo, memoria, procesos, salida y datos entregados."""

    timeout: float = DEFAULT_TIMEOUT
    memory_bytes: int = 8 * 2**30
    max_processes: int = 64
    output_bytes: int = 20 * 2**20
    disk_bytes: int = 4 * 2**30
    judge_timeout: float = JUDGE_TIMEOUT

    def for_judge(self) -> JudgeLimits:
        """Los del juez: los mismos de memoria, procesos y disco, con su propio tiempo."""
        return JudgeLimits(timeout=self.judge_timeout, memory_bytes=self.memory_bytes,
                           max_processes=self.max_processes, disk_bytes=self.disk_bytes)


def run(nb, folder: Path, course: Path, limits: RunLimits = RunLimits(), cpus: int | None = None,
        isolate: bool = True) -> tuple[str, str]:
    """Ejecuta ``nb`` en ``folder`` dentro de la caja: (motivo si se detuvo o "", aislamiento).

    Lo que deja en ``folder`` es de la entrega: no se lee aquí, lo saca ``grading_collect.collect``.
    """
    from .model import CACHE_ENV, cache_dir

    nbformat.write(nb, folder / SUBMISSION)
    argv = [sys.executable, "-m", "helpers.grading_run", str(folder), "--timeout", str(limits.timeout),
            "--max-salida", str(limits.output_bytes)]
    result = run_sandboxed(
        argv, course=course, workdir=folder, log=folder.parent / f"{folder.name}.log",
        limits=Limits(timeout=limits.timeout + 120, memory_bytes=limits.memory_bytes,
                      max_processes=limits.max_processes, output_bytes=limits.output_bytes,
                      disk_bytes=limits.disk_bytes),
        env={CACHE_ENV: str(cache_dir())}, read_only=(cache_dir(),), cpus=cpus, isolate=isolate)
    reason = "" if result.ok else (f"la ejecución se detuvo: {result.reason or 'terminó con un error'}; cuentan "
                                   "las comprobaciones hechas hasta entonces")
    return reason, "bwrap" if result.isolated else result.warning or NOT_ISOLATED


# --- corregir una entrega ---------------------------------------------------------------------------

def grade_file(path, *, course: Path, limits: RunLimits = RunLimits(), seed: int | None = None,
               cpus: int | None = None, isolate: bool = True,
               exercises: Sequence[ExerciseInfo] = EXERCISES) -> Grade:
    """Corrige una entrega. No lanza: cualquier problema va a la fila, en ``motivos``."""
    grade = Grade(archivo=str(path))
    start = time.monotonic()
    try:
        _grade_into(grade, Path(path), Path(course), limits, secrets.randbelow(2**31) if seed is None else seed,
                    cpus, isolate, exercises)
    except Exception as error:  # noqa: BLE001 - un fallo inesperado no para el lote
        grade.motivos.append(f"error interno al corregir ({type(error).__name__}: {_short(str(error))})")
    grade.seconds = time.monotonic() - start
    return grade


def read_submission(path: Path, exercises: Sequence[ExerciseInfo] = EXERCISES):
    """(cuaderno nbformat, nombre del cuaderno del curso) de una entrega; ``SubmissionError`` si no se puede."""
    if path.is_symlink():
        raise SubmissionError("es un enlace simbólico: entrega el archivo en sí, no un enlace a otro")
    if not path.exists():
        raise SubmissionError("no encuentro el archivo")
    if not path.is_file():
        raise SubmissionError("no es un archivo")
    if path.stat().st_size > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"el archivo pesa más de {MAX_SUBMISSION_BYTES // 2**20} MiB: ¿entregaste el "
                              "cuaderno con salidas enormes? Bórralas (Kernel > Restart & Clear Output)")
    try:
        data = path.read_bytes()  # la única vez que se lee la entrega; no se vuelve a abrir
    except OSError as error:
        raise SubmissionError(f"no puedo leer el archivo ({error.strerror or error})") from None
    nb = parse_submission(data)
    return nb, identify(nb, path.name, exercises)


def _grade_into(grade: Grade, path: Path, course: Path, limits: RunLimits, seed: int, cpus: int | None,
                isolate: bool, exercises: Sequence[ExerciseInfo]) -> None:
    try:
        submitted, grade.cuaderno = read_submission(path, exercises)
    except SubmissionError as error:
        grade.motivos.append(str(error))
        try:  # si el nombre dice qué cuaderno es, la fila va con los suyos (con 0 puntos)
            _expect(grade, identify(nbformat.v4.new_notebook(), path.name, exercises), exercises)
        except SubmissionError:
            pass
        return

    _expect(grade, grade.cuaderno, exercises)
    prepared, missing = prepare(submitted, grade.cuaderno, course / "notebooks", exercises)
    names = [e.name for e in exercises if e.notebook == grade.cuaderno]
    with tempfile.TemporaryDirectory(prefix="curso-lora-correccion-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp) / "entrega"
        folder.mkdir()
        stopped, grade.aislamiento = run(prepared, folder, course, limits, cpus, isolate)
        collected = collect(folder, Path(tmp) / "recogido", names, total_bytes=limits.disk_bytes)
        grade.executed = collected.executed
        reasons = [f"{collected.stop}; cuentan las comprobaciones hechas hasta entonces"] if collected.stop else []
        reasons += [stopped] if stopped else []
        reasons += collected.reasons
        try:
            verdicts = run_judge(Path(tmp) / "recogido", grade.cuaderno, seed, course=course,
                                 workdir=Path(tmp) / "juez", limits=limits.for_judge(), cpus=cpus, isolate=isolate)
        except JudgeFailed as failed:
            grade.motivos += missing + reasons + [f"no se pudo juzgar: {failed}; la fila vale 0"]
            return
    for info in (e for e in exercises if e.notebook == grade.cuaderno):
        verdict = verdicts[info.name]
        grade.points[info.name] = info.points if verdict["puntos"] == info.points else 0
        grade.mensajes[info.name] = f"{verdict['estado']}: {verdict['mensaje']}"
        if verdict.get("rechazo"):
            reasons.append(f"{info.name}: rechazado sin cargarlo ({_short(verdict['rechazo'], 300)})")
        elif verdict["estado"] == NOT_ATTEMPTED and not reasons and info.name not in " ".join(missing):
            reasons.append(f"{info.name}: {_short(verdict['mensaje'])}")
    grade.motivos += missing + reasons


def _expect(grade: Grade, notebook: str, exercises: Sequence[ExerciseInfo]) -> None:
    expected = [e for e in exercises if e.notebook == notebook]
    grade.cuaderno, grade.maximo = notebook, sum(e.points for e in expected)
    grade.points = {e.name: 0 for e in expected}


def expand_paths(paths: Iterable) -> tuple[list[Path], list[str]]:
    """Archivos a corregir (las carpetas aportan sus ``*.ipynb``, también en subcarpetas) y avisos.

    Cada ruta es una fila: un enlace simbólico es una entrega aparte (se rechaza con su motivo), nunca
    se junta con el archivo al que apunta. Una misma ruta escrita dos veces cuenta una vez.
    """
    files, warnings_, seen = [], [], set()
    for given in map(Path, paths):
        if given.is_dir() and not given.is_symlink():
            found = sorted(p for p in given.rglob("*") if p.suffix.lower() == ".ipynb"
                           and (p.is_file() or p.is_symlink())
                           and not any(part.startswith(".") for part in p.relative_to(given).parts))
            if not found:
                warnings_.append(f"la carpeta {given} no tiene cuadernos .ipynb")
        else:
            found = [given]
        for path in found:
            key = Path(os.path.abspath(path))
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, warnings_


def shard(files: Sequence[Path], index: int, total: int) -> list[Path]:
    """La parte ``index`` (1..total) de ``files``: una de cada ``total``, en orden; todas juntas, todas."""
    return [path for number, path in enumerate(files) if number % total == index - 1]


@contextlib.contextmanager
def course_copy(source: Path | None = None):
    """Una copia temporal del curso sin soluciones (la que ven las entregas), borrada al terminar."""
    from .model import base_model_path
    from .paths import COURSE_ROOT
    from .release import build_release

    base_model_path()  # el modelo convertido ya en caché: dentro de la caja solo se lee
    with tempfile.TemporaryDirectory(prefix="curso-lora-curso-") as tmp:
        yield build_release(Path(tmp) / "curso", Path(source or COURSE_ROOT))


def grade_paths(paths: Iterable, *, course: Path, jobs: int = 1, on_grade=None, **options) -> list[Grade]:
    """Corrige varias entregas, ``jobs`` a la vez (hilos de CPU repartidos); el orden de las filas es el dado.

    ``on_grade(grades_so_far)`` se llama tras cada entrega con las filas terminadas, en orden.
    """
    from concurrent.futures import ThreadPoolExecutor

    files = list(paths)
    cpus = max(1, (os.cpu_count() or 1) // max(1, jobs))
    done: dict[int, Grade] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_file, path, course=course, cpus=cpus, **options): n
                   for n, path in enumerate(files)}
        from concurrent.futures import as_completed

        for future in as_completed(futures):
            done[futures[future]] = future.result()
            if on_grade:
                on_grade([done[n] for n in sorted(done)], done[futures[future]])
    return [done[n] for n in range(len(files))]


# --- informar --------------------------------------------------------------------------------------

def columns(exercises: Sequence[ExerciseInfo] = EXERCISES) -> dict[tuple[str, str], str]:
    """(cuaderno, ejercicio) -> nombre de su columna (el del ejercicio; con el cuaderno si se repite)."""
    counts: dict[str, int] = {}
    for e in exercises:
        counts[e.name] = counts.get(e.name, 0) + 1
    return {(e.notebook, e.name): e.name if counts[e.name] == 1 else f"{e.notebook}.{e.name}"
            for e in exercises}


def csv_header(exercises: Sequence[ExerciseInfo] = EXERCISES) -> list[str]:
    return ["archivo", "cuaderno", *columns(exercises).values(), "total", "maximo", "motivo", "aislamiento"]


def csv_row(grade: Grade, exercises: Sequence[ExerciseInfo] = EXERCISES) -> list:
    cells = [grade.points.get(name, "") if notebook == grade.cuaderno else ""
             for (notebook, name) in columns(exercises)]
    maximo = "" if grade.maximo is None else grade.maximo
    row = [grade.archivo, grade.cuaderno or "", *cells, grade.total, maximo, grade.motivo, grade.aislamiento]
    return [_cell(value) for value in row]


def _cell(value):
    """Un texto que una hoja de cálculo tomaría por fórmula (=, +, -, @...) va precedido de un apóstrofo."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


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

