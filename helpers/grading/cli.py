"""Corrige entregas y escribe las notas en un CSV.

Uso::

    python -m helpers.grading ENTREGA.ipynb [MÁS.ipynb | CARPETA ...] --csv notas.csv [--jobs N]
    python -m helpers.grading entregas/ --parte 2/4 --csv notas-2.csv     # una de 4 máquinas
    python -m helpers.grading --unir notas-*.csv --csv notas.csv           # juntar las partes
    python -m helpers.grading entregas/ --csv notas.csv --informes informes/   # y un informe por entrega
    make grade ENTREGAS="entregas/" CSV=notas.csv

Cada entrega se ejecuta en una caja de arena (bubblewrap) sobre una copia del curso sin soluciones, con
límites de tiempo, memoria, procesos y salida; lo que deja se recoge como datos (sin seguir enlaces, con
topes) y los puntos los decide después el juez, código de quien corrige en un Python aislado y en la
misma caja, que valida lo entregado y lo comprueba con fechas ocultas (ver ``helpers.grading.chain``). Junto
al CSV van sus veredictos (``notas.veredictos.json``); con ``--informes`` se escriben un informe por entrega y
el resumen de la clase (``helpers.grading.feedback``). Todo texto de una entrega sale limpio a la terminal
(``helpers.grading.text``). Las entregas nunca se modifican. Sale con 0 aunque alguna fila tenga un motivo
(la fila lo explica); con 2 si la orden está mal escrita.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from pathlib import Path

from .chain import grade_paths
from .feedback import Reports, duration, file_stem, write_new
from .read import expand_paths, shard
from .release import course_copy
from .report import (
    Batch,
    Grade,
    merge_csvs,
    merge_records,
    read_class,
    record_path,
    table,
    write_csv,
    write_record,
)
from .run import DEFAULT_TIMEOUT, RunLimits
from .sandbox import SYSTEM_DIRS, sandbox_available
from .text import clean


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.grading",
        description="Ejecuta cada entrega (una copia) y escribe sus puntos en un CSV.",
        epilog="Ejemplo: python -m helpers.grading entregas/ --csv notas.csv --timeout 1800")
    parser.add_argument("entregas", nargs="*", metavar="ENTREGA",
                        help="cuadernos .ipynb o carpetas (se corrigen sus .ipynb, también en subcarpetas)")
    parser.add_argument("--csv", default="notas.csv", metavar="NOTAS.csv",
                        help="dónde escribir las notas (se reescribe si existe; por defecto notas.csv)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SEGUNDOS",
                        help="tiempo máximo por cuaderno, todas sus celdas juntas "
                             f"(por defecto {DEFAULT_TIMEOUT})")
    parser.add_argument("--ejecutados", metavar="CARPETA",
                        help="guarda aquí la copia ejecutada de cada entrega (para ver sus ✅/❌)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="corrige N entregas a la vez (los núcleos se reparten entre ellas; por defecto 1)")
    parser.add_argument("--parte", metavar="I/N",
                        help="corrige solo la parte I de N (para repartir una clase entre N máquinas; "
                             "después, --unir)")
    parser.add_argument("--semilla", type=int, metavar="N",
                        help="semilla de las fechas ocultas (por defecto, una nueva al azar en cada corrección)")
    parser.add_argument("--max-salida", type=float, default=RunLimits.output_bytes / 2**20, metavar="MiB",
                        help="salida máxima de una entrega; pasada, se detiene con su motivo (por defecto "
                             f"{RunLimits.output_bytes // 2**20} MiB)")
    parser.add_argument("--memoria", type=float, default=RunLimits.memory_bytes / 2**30, metavar="GiB",
                        help="memoria máxima de una entrega y, aparte, de su juez; pasada, se detiene con su "
                             f"motivo (por defecto {RunLimits.memory_bytes // 2**30} GiB)")
    parser.add_argument("--informes", metavar="CARPETA",
                        help="escribe aquí un informe por entrega (HTML y Markdown) y el resumen de la clase "
                             "(resumen.html); nunca pisa un archivo que ya exista")
    parser.add_argument("--unir", nargs="+", metavar="NOTAS.csv",
                        help="no corrige: junta los CSV de varias partes (y sus veredictos) en el de --csv; "
                             "con --informes, escribe los informes de todas")
    return parser


def _part(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--parte {text!r}: escribe I/N con 1 ≤ I ≤ N, por ejemplo --parte 2/4")
    return int(match[1]), int(match[2])


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _reachable(folder: Path, submissions: list[str]) -> str:
    """Por qué ``folder`` está al alcance de una entrega ("" si no lo está): dentro de una carpeta de
    entregas o de lo que la caja de arena deja ver (el sistema y el entorno de Python)."""
    folder = folder.resolve()
    for given in (Path(p) for p in submissions if Path(p).is_dir()):
        if _inside(folder, given.resolve()):
            return f"está dentro de una carpeta de entregas ({given})"
    seen = [Path(sys.prefix), Path(sys.base_prefix), *(Path("/", name) for name in SYSTEM_DIRS)]
    for place in (p.resolve() for p in seen):
        if _inside(folder, place):
            return f"está dentro de {place}, que la caja de arena de cada entrega puede leer"
    return ""


def _save_executed(grade: Grade, folder: Path) -> None:
    # sus bytes tal cual (issue 25): quien corrige no analiza la copia ejecutada
    write_new(folder, file_stem(grade.archivo), ".ejecutado.ipynb", grade.executed.decode("utf-8", "replace"))


def _output_folder(parser, option: str, value: str | None, submissions: list[str]) -> Path | None:
    """La carpeta de ``--ejecutados`` o ``--informes``, creada; error de uso si una entrega la alcanza."""
    if not value:
        return None
    folder = Path(value)
    why = _reachable(folder, submissions)
    if why:
        parser.error(f"{option} {folder} {why}; elige otra carpeta")
    if folder.exists() and not folder.is_dir():
        parser.error(f"{option} {folder} no es una carpeta")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_reports(reports: Reports, csv_path: Path, every_row: bool) -> Path:
    """El resumen (y, con ``every_row``, el informe de cada fila) a partir del CSV y sus veredictos."""
    grades, batches = read_class(csv_path)
    if every_row:
        for grade in grades:
            reports.add(grade)
    return reports.summary(grades, batches)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    csv_path = Path(args.csv)
    if csv_path.is_dir():
        parser.error(f"--csv {csv_path} es una carpeta; indica un archivo, p. ej. {csv_path / 'notas.csv'}")
    if csv_path.suffix.lower() == ".ipynb":
        parser.error(f"--csv {csv_path} parece un cuaderno; el CSV debe acabar en .csv")
    if args.unir:
        parts = [Path(p) for p in args.unir]
        if any(p.resolve() == csv_path.resolve() for p in parts):
            parser.error(f"--csv {csv_path} es una de las partes; elige otro archivo para el total")
        reports_dir = _output_folder(parser, "--informes", args.informes, [])
        try:
            count = merge_csvs(parts, csv_path)
        except (OSError, ValueError) as error:
            parser.error(str(error))
        print(f"{count} fila(s) de {len(parts)} parte(s) en {csv_path}")
        try:
            for warning in merge_records(parts, csv_path):
                print(f"aviso: {warning}", file=sys.stderr)
        except ValueError as error:
            record_path(csv_path).unlink(missing_ok=True)  # no queda el de una unión anterior
            if reports_dir:
                parser.error(f"no puedo escribir los informes: {error}")
            print(f"aviso: {error}; sin veredictos juntos no se pueden hacer los informes", file=sys.stderr)
            return 0
        print(f"Veredictos de las partes en {record_path(csv_path)}")
        if reports_dir:
            reports = Reports(reports_dir)
            try:
                summary = _write_reports(reports, csv_path, every_row=True)
            except ValueError as error:
                parser.error(f"no puedo escribir los informes: {error}")
            _print_reports(reports, summary)
        return 0
    if not args.entregas:
        parser.error("indica al menos una entrega (.ipynb) o una carpeta con entregas")
    if not args.timeout > 0:
        parser.error("--timeout debe ser un número de segundos mayor que 0")
    if args.jobs < 1:
        parser.error("--jobs debe ser 1 o más")
    if not args.max_salida > 0:
        parser.error("--max-salida debe ser un número de MiB mayor que 0")
    if not args.memoria > 0:
        parser.error("--memoria debe ser un número de GiB mayor que 0")
    files, warnings = expand_paths(args.entregas)
    if args.parte:
        try:
            files = shard(files, *_part(args.parte))
        except ValueError as error:
            parser.error(str(error))
    for warning in warnings:
        print(f"aviso: {clean(warning)}", file=sys.stderr)
    if not files:
        parser.error("no hay ninguna entrega que corregir")
    if any(os.path.abspath(csv_path) == os.path.abspath(f) for f in files):
        parser.error(f"--csv {csv_path} es una de las entregas; elige otro archivo para las notas")
    if args.parte and args.semilla is None:
        parser.error("con --parte, da a todas las partes la misma --semilla (p. ej. --semilla 2024): así "
                     "todas las entregas se corrigen con las mismas fechas ocultas")
    executed_dir = _output_folder(parser, "--ejecutados", args.ejecutados, args.entregas)
    reports = Reports(folder) if (folder := _output_folder(parser, "--informes", args.informes, args.entregas)) \
        else None
    seed = secrets.randbelow(2**31) if args.semilla is None else args.semilla
    isolated, why = sandbox_available()
    if not isolated:
        print(f"AVISO: las entregas se ejecutarán SIN AISLAMIENTO. {why}", file=sys.stderr)
    if csv_path.exists():
        print(f"aviso: {csv_path} ya existe; se reescribe con estas notas", file=sys.stderr)
    print(f"Corrigiendo {len(files)} entrega(s), {args.jobs} a la vez; máximo {args.timeout:g} s por cuaderno; "
          f"semilla de las fechas ocultas {seed} (para repetir la corrección: --semilla {seed}).")
    start = time.monotonic()

    def batch(done: int) -> Batch:
        return Batch(parte=args.parte or "1/1", semilla=seed, segundos=round(time.monotonic() - start, 3),
                     entregas=done, trabajos=args.jobs)

    def on_grade(finished: list[Grade], grade: Grade) -> None:
        score = f"{grade.total}/{grade.maximo} puntos" if grade.maximo is not None else "sin corregir"
        print(f"[{len(finished)}/{len(files)}] {clean(grade.archivo)} — {grade.cuaderno or '?'}: {score} "
              f"({duration(grade.seconds)})" + (f" — {clean(grade.motivo)}" if grade.motivo else ""), flush=True)
        write_csv(finished, csv_path)  # tras cada entrega, escrito aparte y renombrado: nunca a medias
        write_record(finished, csv_path, batch(len(finished)))
        try:  # un informe o una copia que no se pueden escribir no paran el lote
            if executed_dir and grade.executed is not None:
                _save_executed(grade, executed_dir)
            if reports:
                reports.add(grade)
        except OSError as error:
            print(f"aviso: no pude escribir el informe o la copia de {clean(grade.archivo)} ({error})",
                  file=sys.stderr)

    with course_copy() as course:
        grades = grade_paths(files, course=course, jobs=args.jobs, on_grade=on_grade,
                             limits=RunLimits(timeout=args.timeout, output_bytes=int(args.max_salida * 2**20),
                                              memory_bytes=int(args.memoria * 2**30)), seed=seed)
    write_csv(grades, csv_path)
    write_record(grades, csv_path, batch(len(grades)))
    print()
    print(table(grades))
    print()
    print(f"Notas de {len(grades)} entrega(s) en {csv_path} (veredictos en {record_path(csv_path)})")
    if executed_dir:
        print(f"Copias ejecutadas en {executed_dir}")
    if reports:
        _print_reports(reports, _write_reports(reports, csv_path, every_row=False))
    return 0


def _print_reports(reports: Reports, summary: Path) -> None:
    for note in reports.renamed:
        print(f"aviso: {clean(note)}", file=sys.stderr)
    print(f"Informes de {len(reports.links)} entrega(s) (.informe.html y .informe.md) y el resumen de la clase "
          f"en {summary}")


if __name__ == "__main__":
    sys.exit(main())
