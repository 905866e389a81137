"""Benchmark de la orden de entrenamiento con 1 y 2 procesos (``make bench-train``).

Ejecuta ``python -m helpers.train`` (1 proceso) y ``accelerate launch --num_processes 2 -m helpers.train``
(2 procesos, DDP sobre gloo en CPU) con el mismo lote global, varias veces cada uno, y da las medianas:
segundos por paso de entrenamiento y segundos de la orden entera (carga, entrenamiento, evaluación).
En una CPU de 2 núcleos, dos procesos de 1 hilo se reparten los mismos núcleos que un proceso de 2
hilos: no tienen por qué ir más rápido. El cociente dice lo que pasa en tu equipo; la variante
"1 proceso, 1 hilo" separa el efecto de los hilos de OpenMP del de los procesos.

Uso: ``python benchmarks/train_processes.py [--repeats N] [--pasos N] [--lote N]``.
Escribe un JSON en salidas/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.paths import COURSE_ROOT, output_dir
from helpers.train import RESULT_FILE

ACCELERATE = [str(Path(sys.executable).parent / "accelerate"), "launch",
              "--config_file", str(COURSE_ROOT / "configs/accelerate/multi_gpu.yaml")]
# variante -> (lanzador, hilos de OpenMP); accelerate pone 1 hilo por proceso cuando lanza 2
LAUNCHERS = {"1 proceso": ([sys.executable], None),
             "1 proceso, 1 hilo": ([sys.executable], "1"),
             "2 procesos": ([*ACCELERATE, "--num_processes", "2"], None)}


def run_once(variant: str, steps: int, batch: int) -> dict:
    """Una ejecución de la orden; devuelve su resultado.json más los segundos de la orden entera."""
    launcher, threads = LAUNCHERS[variant]
    env = {**os.environ, **({"OMP_NUM_THREADS": threads} if threads else {})}
    with tempfile.TemporaryDirectory() as out:
        command = [*launcher, "-m", "helpers.train", "--pasos", str(steps), "--lote", str(batch),
                   "--filas-test", "8", "--salida", out]
        start = time.perf_counter()
        subprocess.run(command, cwd=COURSE_ROOT, env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        result = json.loads((Path(out) / RESULT_FILE).read_text())
    return {**result, "segundos_orden": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Tiempos de helpers.train con 1 y 2 procesos.")
    parser.add_argument("--repeats", type=int, default=3, help="ejecuciones de cada variante (por defecto 3)")
    parser.add_argument("--pasos", type=int, default=10, help="pasos de cada entrenamiento (por defecto 10)")
    parser.add_argument("--lote", type=int, default=8, help="lote global (por defecto 8)")
    args = parser.parse_args()

    runs = {n: [] for n in LAUNCHERS}
    for repeat in range(args.repeats):
        for n in LAUNCHERS:  # alternadas: el ruido de la máquina se reparte entre las variantes
            runs[n].append(run_once(n, args.pasos, args.lote))
            last = runs[n][-1]
            print(f"[{repeat + 1}/{args.repeats}] {n}: {last['segundos_por_paso']:.2f} s/paso, "
                  f"orden {last['segundos_orden']:.0f} s", flush=True)

    summary = {}
    for n, results in runs.items():
        summary[n] = {
            "world_size": results[0]["world_size"],
            "hilos_por_proceso": results[0]["hilos_por_proceso"],
            "lote_por_proceso": results[0]["lote_por_proceso"],
            "s_por_paso": statistics.median(r["segundos_por_paso"] for r in results),
            "s_orden": statistics.median(r["segundos_orden"] for r in results),
        }
    print(f"\nMedianas de {args.repeats} ejecuciones, {args.pasos} pasos de lote global {args.lote}, "
          f"{os.cpu_count()} núcleos ({platform.processor() or platform.machine()}):")
    for n, s in summary.items():
        print(f"  {n} (world size {s['world_size']}, {s['hilos_por_proceso']} hilo(s) cada uno, "
              f"{s['lote_por_proceso']} ejemplos por proceso): {s['s_por_paso']:.2f} s/paso, "
              f"orden entera {s['s_orden']:.0f} s")
    ratio = summary["1 proceso"]["s_por_paso"] / summary["2 procesos"]["s_por_paso"]
    verdict = "más rápido" if ratio > 1.05 else "más lento" if ratio < 0.95 else "casi igual"
    print(f"Aceleración con 2 procesos (s/paso de 1 ÷ s/paso de 2): {ratio:.2f}× ({verdict}); "
          f"orden entera: {summary['1 proceso']['s_orden'] / summary['2 procesos']['s_orden']:.2f}×")
    print("Si '1 proceso, 1 hilo' se acerca a '2 procesos', la diferencia viene de los hilos de OpenMP "
          "(que sufren cuando la máquina está ocupada), no del paralelismo de datos.")

    path = output_dir("bench") / "train_processes.json"
    path.write_text(json.dumps({"cpu_count": os.cpu_count(), "pasos": args.pasos, "lote": args.lote,
                                "summary": summary, "ratio_s_por_paso": ratio, "runs": runs}, indent=2))
    print(f"Resultados en {path}")


if __name__ == "__main__":
    main()
