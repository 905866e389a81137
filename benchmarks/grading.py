"""Cuánto tarda corregir: las mismas entregas con ``--jobs 1`` y ``--jobs 2``, en una sola ejecución.

Uso: ``python benchmarks/grading.py [--entregas 4] [--cuaderno load_lora_adapter_example]``
(``make bench-grading``). Por defecto corrige 4 copias del cuaderno resuelto de carga (el más corto),
alternando 1 y 2 trabajos, e imprime los segundos por entrega y la razón; después, lo que añade escribir
los informes (``--informes``: el CSV, sus veredictos, un informe por entrega y el resumen) de esas filas.
Escribe un JSON en ``salidas/bench/``. Con 2 núcleos, 2 entregas a la vez comparten la CPU: la razón dice
si compensa.

``python benchmarks/grading.py --solo-informes 200`` mide solo los informes, con 200 filas sintéticas (sin
ejecutar ningún cuaderno): segundos por entrega de lo que la orden hace tras cada una y del resumen final.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.checks.registry import EXERCISES, exercises_for
from helpers.grading.chain import grade_paths
from helpers.grading.feedback import Reports
from helpers.grading.judge import STATES
from helpers.grading.release import course_copy
from helpers.grading.report import Batch, Grade, read_class, write_csv, write_record
from helpers.numbers import SPACE, decimal, ratio, seconds
from helpers.paths import SOLUTIONS_DIR, output_dir


def reports_cost(grades: list[Grade], folder: Path) -> dict[str, float]:
    """Lo que ``--informes`` añade, como en la orden: tras cada entrega, el CSV, los veredictos y su informe;
    al final, el resumen (leído del CSV y los veredictos). Segundos por entrega y del resumen."""
    reports, csv_path = Reports(folder / "informes"), folder / "notas.csv"
    start, cpu = time.perf_counter(), time.process_time()
    for n in range(1, len(grades) + 1):
        write_csv(grades[:n], csv_path)
        write_record(grades[:n], csv_path, Batch(segundos=1.0, entregas=n))
        reports.add(grades[n - 1])
    cost = {"por_entrega": (time.perf_counter() - start) / len(grades),
            "por_entrega_cpu": (time.process_time() - cpu) / len(grades)}
    start, cpu = time.perf_counter(), time.process_time()
    reports.summary(*read_class(csv_path))
    return cost | {"resumen": time.perf_counter() - start, "resumen_cpu": time.process_time() - cpu}


def ms(value: float) -> str:
    return f"{decimal(1000 * value, 1)}{SPACE}ms"


def synthetic_rows(count: int) -> list[Grade]:
    """Filas como las de la cadena, sin ejecutar nada: cuadernos, veredictos y mensajes variados."""
    rng = random.Random(0)
    notebooks = list(dict.fromkeys(e.notebook for e in EXERCISES))
    rows = []
    for n in range(count):
        notebook = notebooks[n % len(notebooks)]
        states = {e.name: rng.choice(STATES) for e in exercises_for(notebook)}
        rows.append(Grade(f"entregas/alumno{n:03d}/{notebook}.ipynb", notebook,
                          {e.name: e.points if states[e.name] == "correcto" else 0 for e in exercises_for(notebook)},
                          sum(e.points for e in exercises_for(notebook)),
                          [] if n % 5 else ["switch_adapters: rechazado sin cargarlo (r = 4096 fuera de 1..512)"],
                          "bwrap", rng.uniform(40, 300),
                          mensajes={k: f"{v}: acierta {rng.randint(0, 8)} de 8 fechas ocultas; " + "detalle " * 20
                                    for k, v in states.items()}))
    return rows


def only_reports(count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cost = reports_cost(synthetic_rows(count), Path(tmp))
    print(f"Informes de {count} filas sintéticas: {ms(cost['por_entrega'])} por entrega (CSV, veredictos e "
          f"informe tras cada una; {ms(cost['por_entrega_cpu'])} de CPU) y {seconds(cost['resumen'])} el resumen "
          f"({seconds(cost['resumen_cpu'])} de CPU).")
    out = output_dir("bench") / "grading-informes.json"
    out.write_text(json.dumps({"filas": count, "segundos": cost}, indent=2), encoding="utf-8")
    print(f"Resultados en {out.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entregas", type=int, default=4)
    parser.add_argument("--cuaderno", default="load_lora_adapter_example")
    parser.add_argument("--repeticiones", type=int, default=1)
    parser.add_argument("--solo-informes", type=int, metavar="FILAS",
                        help="no corrige: mide solo los informes con FILAS filas sintéticas")
    args = parser.parse_args(argv)
    if args.solo_informes:
        return only_reports(args.solo_informes)
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
        reports = reports_cost(grades, Path(tmp))
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"\nMediana: --jobs 1 {one:.0f} s, --jobs 2 {two:.0f} s → {ratio(one / two, 2)} con 2 trabajos "
          f"({args.entregas} entregas de {args.cuaderno}).")
    print(f"Informes (--informes): {ms(reports['por_entrega'])} más por entrega y "
          f"{seconds(reports['resumen'])} el resumen.")
    out = output_dir("bench") / "grading.json"
    out.write_text(json.dumps({"cuaderno": args.cuaderno, "entregas": args.entregas, "segundos": results,
                               "informes": reports}, indent=2), encoding="utf-8")
    print(f"Resultados en {out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
