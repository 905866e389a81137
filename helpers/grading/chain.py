"""Corrección de entregas para el profesorado: una cadena de pasos pequeños, cada uno con un solo trabajo.

1. **leer** (``helpers.grading.read``): los bytes de la entrega, una sola vez; se reconoce el cuaderno.
2. **preparar** (``helpers.grading.prepare``): sin salidas, y cada celda de comprobación sustituida por la
   del profesor (la de ``notebooks/`` de la copia del curso), como hace nbgrader con sus celdas de prueba.
3. **ejecutar** (``helpers.grading.run``): en una carpeta propia, dentro de la caja de arena
   (``helpers.grading.sandbox``), sobre una copia del curso sin soluciones (``helpers.grading.release``),
   con límites. Cada ``checks.X(...)`` entrega sus objetos como datos (``helpers.checks.handover``). Este
   paso no da puntos.
4. **recoger** (``helpers.grading.collect``): lo entregado, la copia ejecutada y el estado se copian,
   archivo a archivo, sin seguir enlaces, solo archivos normales y con topes, a una carpeta de quien
   corrige; cada manifiesto se comprueba contra los bytes copiados. Lo raro es un motivo de la fila.
5. **juzgar** (``helpers.grading.judge``): el juez, código de quien corrige, en un Python aislado que
   importa solo la copia del curso, dentro de la misma caja y con los mismos límites: valida lo recogido
   como datos (lista blanca, ``helpers.checks.whitelist``) y ejecuta las mismas funciones de comprobación
   sobre los objetos entregados, con fechas ocultas. De aquí, y solo de aquí, salen los puntos: nada que
   la entrega imprima, muestre o escriba en su cuaderno cuenta.
6. **informar** (``helpers.grading.report``): una fila por entrega, escrita por quien corrige.

Este módulo encadena los pasos para una entrega (``grade_file``) o para varias (``grade_paths``). Las
entregas nunca se modifican. Un archivo que no es un cuaderno, está dañado, se pasa de tiempo o no es del
curso recibe su fila con el motivo, y la corrección sigue con las demás.

La orden de línea está en ``helpers.grading.cli``; aquí está la lógica, usable desde Python::

    with course_copy() as course:
        grades = [grade_file(p, course=course) for p in expand_paths(["entregas/"])[0]]
    write_csv(grades, "notas.csv")
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat

from ..checks.core import NOT_ATTEMPTED
from ..checks.registry import EXERCISES, ExerciseInfo
from ..checks.safe_files import remove_tree
from .collect import collect
from .judge import JudgeFailed, run_judge
from .prepare import prepare
from .read import SubmissionError, identify, read_submission
from .report import Grade
from .run import DEFAULT_LIMITS, RunLimits, run
from .text import short

# --- corregir una entrega ---------------------------------------------------------------------------

def grade_file(path, *, course: Path, limits: RunLimits = DEFAULT_LIMITS, seed: int | None = None,
               cpus: int | None = None, isolate: bool = True,
               exercises: Sequence[ExerciseInfo] = EXERCISES) -> Grade:
    """Corrige una entrega. No lanza: cualquier problema va a la fila, en ``motivos``."""
    grade = Grade(archivo=str(path))
    start = time.monotonic()
    try:
        _grade_into(grade, Path(path), Path(course), limits, secrets.randbelow(2**31) if seed is None else seed,
                    cpus, isolate, exercises)
    except Exception as error:  # noqa: BLE001 - un fallo inesperado no para el lote
        grade.motivos.append(f"error interno al corregir ({type(error).__name__}: {short(str(error))})")
    grade.seconds = time.monotonic() - start
    return grade


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
    variant = variant_for(seed, path)
    with grading_folder() as tmp:
        folder = Path(tmp) / "entrega"
        folder.mkdir()
        stopped, grade.aislamiento = run(prepared, folder, course, limits, cpus, isolate, variant)
        collected = collect(folder, Path(tmp) / "recogido", names, total_bytes=limits.disk_bytes,
                            trusted=not stopped)  # si no terminó bien, su estado y su copia son suyos
        grade.executed = collected.executed
        reasons = [f"{collected.stop}; cuentan las comprobaciones hechas hasta entonces"] if collected.stop else []
        reasons += [stopped] if stopped else []
        reasons += collected.reasons
        try:
            verdicts = run_judge(Path(tmp) / "recogido", grade.cuaderno, seed, course=course,
                                 workdir=Path(tmp) / "juez", limits=limits.for_judge(), cpus=cpus, isolate=isolate,
                                 variant=variant)
        except JudgeFailed as failed:
            grade.motivos += missing + reasons + [f"no se pudo juzgar: {failed}; la fila vale 0"]
            return
    for info in (e for e in exercises if e.notebook == grade.cuaderno):
        verdict = verdicts[info.name]
        grade.points[info.name] = info.points if verdict["puntos"] == info.points else 0
        grade.mensajes[info.name] = f"{verdict['estado']}: {verdict['mensaje']}"
        if verdict.get("rechazo"):
            reasons.append(f"{info.name}: rechazado sin cargarlo ({short(verdict['rechazo'], 300)})")
        elif verdict["estado"] == NOT_ATTEMPTED and not reasons and info.name not in " ".join(missing):
            reasons.append(f"{info.name}: {short(verdict['mensaje'])}")
    grade.motivos += missing + reasons


def variant_for(seed: int, path: Path) -> str:
    """La ficha de variante de una entrega: HMAC-SHA256(semilla oculta, su ruta), en hexadecimal.

    La ve el kernel de la entrega (``CURSO_LORA_VARIANTE``) y la recibe el juez en su pedido: fija qué
    adaptador hay detrás de cada nombre sin etiqueta y qué fusionados llegan de los compañeros
    (``helpers.shipped``, ``helpers.colleagues``). Sin la semilla no se calcula, y de ella no se saca la semilla:
    la clave del HMAC sale de la semilla con PBKDF2 (``VARIANT_KEY_ROUNDS``), así que probar las 2³¹ semillas
    posibles contra una ficha conocida costaría décadas de CPU.
    """
    return hmac.new(_variant_key(int(seed)), str(path).encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


VARIANT_KEY_ROUNDS = 600_000  # ~1 s por semilla en una CPU de 2 núcleos (medido), una vez por lote


@functools.lru_cache(maxsize=8)
def _variant_key(seed: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", str(seed).encode(), b"curso-lora/variante", VARIANT_KEY_ROUNDS)


@contextlib.contextmanager
def grading_folder():
    """Una carpeta nueva para corregir una entrega, borrada siempre al salir, sin recursión ni seguir enlaces."""
    folder = tempfile.mkdtemp(prefix="curso-lora-correccion-")
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            remove_tree(folder)


def _expect(grade: Grade, notebook: str, exercises: Sequence[ExerciseInfo]) -> None:
    expected = [e for e in exercises if e.notebook == notebook]
    grade.cuaderno, grade.maximo = notebook, sum(e.points for e in expected)
    grade.points = {e.name: 0 for e in expected}


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
