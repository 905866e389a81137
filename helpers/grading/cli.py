"""Corrige entregas y escribe las notas en un CSV.

Uso::

    python -m helpers.grading ENTREGA.ipynb [MÁS.ipynb | CARPETA ...] --csv notas.csv [--jobs N]
    python -m helpers.grading entregas/ --parte 2/4 --csv notas-2.csv     # una de 4 máquinas
    python -m helpers.grading --unir notas-*.csv --csv notas.csv           # juntar las partes
    make grade ENTREGAS="entregas/" CSV=notas.csv

Cada entrega se ejecuta en una caja de arena (bubblewrap) sobre una copia del curso sin soluciones, con
límites de tiempo, memoria, procesos y salida; lo que deja se recoge como datos (sin seguir enlaces, con
topes) y los puntos los decide después el juez, código de quien corrige en un Python aislado y en la
misma caja, que valida lo entregado y lo comprueba con fechas ocultas (ver ``helpers.grading.chain``). Las
entregas nunca se modifican. Sale con 0 aunque alguna fila tenga un motivo (la fila lo explica); con 2 si la orden está
mal escrita.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

import nbformat

from .chain import grade_paths
from .read import expand_paths, shard
from .release import course_copy
from .report import Grade, merge_csvs, table, write_csv
from .run import DEFAULT_TIMEOUT, RunLimits
from .sandbox import sandbox_available


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
    parser.add_argument("--unir", nargs="+", metavar="NOTAS.csv",
                        help="no corrige: junta los CSV de varias partes en el de --csv")
    return parser


def _part(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--parte {text!r}: escribe I/N con 1 ≤ I ≤ N, por ejemplo --parte 2/4")
    return int(match[1]), int(match[2])


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _save_executed(grade: Grade, folder: Path, used: set[str]) -> None:
    name = re.sub(r"[^\w.-]+", "_", grade.archivo).strip("._") or "entrega"
    name = name[:-6] if name.lower().endswith(".ipynb") else name
    candidate, n = f"{name}.ejecutado.ipynb", 1
    while candidate in used:
        n += 1
        candidate = f"{name}-{n}.ejecutado.ipynb"
    used.add(candidate)
    nbformat.write(grade.executed, folder / candidate)


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
        try:
            count = merge_csvs(parts, csv_path)
        except (OSError, ValueError) as error:
            parser.error(str(error))
        print(f"{count} fila(s) de {len(parts)} parte(s) en {csv_path}")
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
        print(f"aviso: {warning}", file=sys.stderr)
    if not files:
        parser.error("no hay ninguna entrega que corregir")
    if any(os.path.abspath(csv_path) == os.path.abspath(f) for f in files):
        parser.error(f"--csv {csv_path} es una de las entregas; elige otro archivo para las notas")
    executed_dir = Path(args.ejecutados) if args.ejecutados else None
    if executed_dir:
        folders = [Path(p).resolve() for p in args.entregas if Path(p).is_dir()]
        if any(_inside(executed_dir.resolve(), folder) for folder in folders):
            parser.error(f"--ejecutados {executed_dir} está dentro de una carpeta de entregas; elige otra")
        if executed_dir.exists() and not executed_dir.is_dir():
            parser.error(f"--ejecutados {executed_dir} no es una carpeta")
        executed_dir.mkdir(parents=True, exist_ok=True)

    if args.parte and args.semilla is None:
        parser.error("con --parte, da a todas las partes la misma --semilla (p. ej. --semilla 2024): así "
                     "todas las entregas se corrigen con las mismas fechas ocultas")
    seed = secrets.randbelow(2**31) if args.semilla is None else args.semilla
    isolated, why = sandbox_available()
    if not isolated:
        print(f"AVISO: las entregas se ejecutarán SIN AISLAMIENTO. {why}", file=sys.stderr)
    if csv_path.exists():
        print(f"aviso: {csv_path} ya existe; se reescribe con estas notas", file=sys.stderr)
    print(f"Corrigiendo {len(files)} entrega(s), {args.jobs} a la vez; máximo {args.timeout:g} s por cuaderno; "
          f"semilla de las fechas ocultas {seed} (para repetir la corrección: --semilla {seed}).")
    used: set[str] = set()

    def on_grade(finished: list[Grade], grade: Grade) -> None:
        score = f"{grade.total}/{grade.maximo} puntos" if grade.maximo is not None else "sin corregir"
        print(f"[{len(finished)}/{len(files)}] {grade.archivo} — {grade.cuaderno or '?'}: {score} "
              f"({_duration(grade.seconds)})" + (f" — {grade.motivo}" if grade.motivo else ""), flush=True)
        write_csv(finished, csv_path)  # tras cada entrega, escrito aparte y renombrado: nunca a medias
        if executed_dir and grade.executed is not None:
            _save_executed(grade, executed_dir, used)

    with course_copy() as course:
        grades = grade_paths(files, course=course, jobs=args.jobs, on_grade=on_grade,
                             limits=RunLimits(timeout=args.timeout, output_bytes=int(args.max_salida * 2**20),
                                              memory_bytes=int(args.memoria * 2**30)), seed=seed)
    write_csv(grades, csv_path)
    print()
    print(table(grades))
    print()
    print(f"Notas de {len(grades)} entrega(s) en {csv_path}")
    if executed_dir:
        print(f"Copias ejecutadas en {executed_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
