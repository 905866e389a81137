"""Benchmark de los cuadernos resueltos (``make bench-notebooks``): tiempo de principio a fin.

Ejecuta cada cuaderno de ``solutions/`` (una copia sin salidas, en una carpeta temporal, como al
corregir, sin caja de arena) ``--repeats`` veces, una detrás de otra, e imprime la mediana y cuántos
ejercicios aprueba el juez con lo que entregó (fuera del tiempo medido).
Uso: ``python benchmarks/notebooks.py [--repeats N] [NOMBRE ...]``. Escribe un JSON en salidas/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from helpers.checks.cells import without_outputs
from helpers.checks.registry import NOTEBOOKS
from helpers.grading.judge import judge  # en este proceso: las soluciones son de confianza
from helpers.grading.run import HANDED_OVER, execute
from helpers.paths import SOLUTIONS_DIR, output_dir

TIMEOUT_S, MAX_OUTPUT = 3600, 64 * 2**20


def run_once(name: str) -> tuple[float, dict[str, bool], str | None]:
    """Segundos de una ejecución, si el juez aprueba cada ejercicio y, si paró antes del final, por qué."""
    nb = without_outputs(nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4))
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        stopped = execute(nb, Path(workdir), TIMEOUT_S, MAX_OUTPUT)
        seconds = time.perf_counter() - start
        verdicts = judge(Path(workdir) / HANDED_OVER, name, seed=0)
    return seconds, {exercise: v["puntos"] > 0 for exercise, v in verdicts.items()}, stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="cuadernos (por defecto, todos)")
    parser.add_argument("--repeats", type=int, default=3, help="ejecuciones de cada cuaderno")
    args = parser.parse_args()
    print(f"CPU: {os.cpu_count()} núcleos; {args.repeats} ejecuciones de cada cuaderno")
    results = {}
    for name in args.names:
        runs = []
        for _ in range(args.repeats):
            seconds, passed, stopped = run_once(name)
            runs.append(seconds)
            print(f"  {name}: {seconds:6.0f} s, comprobaciones {sum(passed.values())}/{len(passed)} ✅"
                  + (f" · se detuvo: {stopped}" if stopped else ""), flush=True)
        results[name] = {"median_s": statistics.median(runs), "runs_s": runs}
        print(f"{name:<28} mediana {results[name]['median_s']:6.0f} s  (n={len(runs)})", flush=True)
    path = output_dir("bench") / "notebooks.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"Resultados en {path}")


if __name__ == "__main__":
    main()
