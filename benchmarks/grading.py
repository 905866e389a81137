"""Cuánto tarda corregir: las mismas entregas con ``--jobs 1`` y ``--jobs 2``, en una sola ejecución.

Uso: ``python benchmarks/grading.py [--entregas 4] [--cuaderno load_lora_adapter_example]``
(``make bench-grading``). Por defecto corrige 4 copias del cuaderno resuelto de carga (el más corto),
alternando 1 y 2 trabajos, e imprime los segundos por entrega y la razón. Escribe un JSON en
``salidas/bench/``. Con 2 núcleos, 2 entregas a la vez comparten la CPU: la razón dice si compensa.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.grading.chain import grade_paths
from helpers.grading.release import course_copy
from helpers.numbers import ratio
from helpers.paths import SOLUTIONS_DIR, output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entregas", type=int, default=4)
    parser.add_argument("--cuaderno", default="load_lora_adapter_example")
    parser.add_argument("--repeticiones", type=int, default=1)
    args = parser.parse_args(argv)
    results: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp, course_copy() as course:
        files = []
        for n in range(args.entregas):
            path = Path(tmp) / f"alumno{n}_{args.cuaderno}.ipynb"
            shutil.copyfile(SOLUTIONS_DIR / f"{args.cuaderno}.ipynb", path)
            files.append(path)
        for _ in range(args.repeticiones):
            for jobs in (1, 2):
                start = time.perf_counter()
                grades = grade_paths(files, course=course, jobs=jobs, seed=1)
                seconds = time.perf_counter() - start
                totals = [g.total for g in grades]
                results[jobs].append(seconds)
                print(f"--jobs {jobs}: {seconds:.0f} s para {len(files)} entregas "
                      f"({seconds / len(files):.0f} s por entrega); puntos {totals}", flush=True)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"\nMediana: --jobs 1 {one:.0f} s, --jobs 2 {two:.0f} s → {ratio(one / two, 2)} con 2 trabajos "
          f"({args.entregas} entregas de {args.cuaderno}).")
    out = output_dir("bench") / "grading.json"
    out.write_text(json.dumps({"cuaderno": args.cuaderno, "entregas": args.entregas, "segundos": results},
                              indent=2), encoding="utf-8")
    print(f"Resultados en {out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
