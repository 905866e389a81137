"""Corrige entregas y escribe las notas en un CSV.

Uso::

    python -m helpers.grade ENTREGA.ipynb [MÁS.ipynb | CARPETA ...] --csv notas.csv [--timeout SEGUNDOS]
    make grade ENTREGAS="entregas/" CSV=notas.csv

Cada entrega se ejecuta en una copia, en una carpeta temporal, con un límite de tiempo por cuaderno.
Las entregas nunca se modifican. Sale con 0 aunque alguna fila tenga un motivo de error (la fila lo
explica); con 2 si la orden está mal escrita.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from .grading import DEFAULT_TIMEOUT, Grade, expand_paths, grade_file, table, write_csv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.grade",
        description="Ejecuta cada entrega (una copia) y escribe sus puntos en un CSV.",
        epilog="Ejemplo: python -m helpers.grade entregas/ --csv notas.csv --timeout 1800")
    parser.add_argument("entregas", nargs="*", metavar="ENTREGA",
                        help="cuadernos .ipynb o carpetas (se corrigen sus .ipynb, también en subcarpetas)")
    parser.add_argument("--csv", default="notas.csv", metavar="NOTAS.csv",
                        help="dónde escribir las notas (se reescribe si existe; por defecto notas.csv)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SEGUNDOS",
                        help="tiempo máximo por cuaderno, todas sus celdas juntas "
                             f"(por defecto {DEFAULT_TIMEOUT})")
    parser.add_argument("--ejecutados", metavar="CARPETA",
                        help="guarda aquí la copia ejecutada de cada entrega (para ver sus ✅/❌)")
    return parser


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
    if not args.entregas:
        parser.error("indica al menos una entrega (.ipynb) o una carpeta con entregas")
    if not args.timeout > 0:
        parser.error("--timeout debe ser un número de segundos mayor que 0")
    csv_path = Path(args.csv)
    if csv_path.is_dir():
        parser.error(f"--csv {csv_path} es una carpeta; indica un archivo, p. ej. {csv_path / 'notas.csv'}")
    if csv_path.suffix.lower() == ".ipynb":
        parser.error(f"--csv {csv_path} parece un cuaderno; el CSV debe acabar en .csv")
    files, warnings = expand_paths(args.entregas)
    for warning in warnings:
        print(f"aviso: {warning}", file=sys.stderr)
    if not files:
        parser.error("no hay ninguna entrega que corregir")
    if any(csv_path.resolve() == f.resolve() for f in files):
        parser.error(f"--csv {csv_path} es una de las entregas; elige otro archivo para las notas")
    executed_dir = Path(args.ejecutados) if args.ejecutados else None
    if executed_dir:
        folders = [Path(p).resolve() for p in args.entregas if Path(p).is_dir()]
        if any(_inside(executed_dir.resolve(), folder) for folder in folders):
            parser.error(f"--ejecutados {executed_dir} está dentro de una carpeta de entregas; elige otra")
        if executed_dir.exists() and not executed_dir.is_dir():
            parser.error(f"--ejecutados {executed_dir} no es una carpeta")
        executed_dir.mkdir(parents=True, exist_ok=True)

    if csv_path.exists():
        print(f"aviso: {csv_path} ya existe; se reescribe con estas notas", file=sys.stderr)
    print(f"Corrigiendo {len(files)} entrega(s); máximo {args.timeout:g} s por cuaderno.")
    grades: list[Grade] = []
    used: set[str] = set()
    for number, path in enumerate(files, start=1):
        print(f"[{number}/{len(files)}] {path} ...", flush=True)
        grade = grade_file(path, timeout=args.timeout)
        grades.append(grade)
        score = f"{grade.total}/{grade.maximo} puntos" if grade.maximo is not None else "sin corregir"
        print(f"      {grade.cuaderno or '?'}: {score} ({_duration(grade.seconds)})"
              + (f" — {grade.motivo}" if grade.motivo else ""), flush=True)
        write_csv(grades, csv_path)  # tras cada entrega: si se interrumpe, lo corregido no se pierde
        if executed_dir and grade.executed is not None:
            _save_executed(grade, executed_dir, used)

    print()
    print(table(grades))
    print()
    print(f"Notas de {len(grades)} entrega(s) en {csv_path}")
    if executed_dir:
        print(f"Copias ejecutadas en {executed_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
