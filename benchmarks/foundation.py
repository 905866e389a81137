"""Benchmark de la base del curso (``make bench``): medianas en una sola ejecución.

1. Primera carga: conversión GGUF -> carpeta de Hugging Face en una caché vacía, más la carga.
2. Carga con la caché ya hecha (``from_pretrained(carpeta)``).
3. Un paso de entrenamiento LoRA (SFTTrainer, lote 16 de la tarea) con ``sft_device_args()`` y
   ``score_only_labelled_tokens()``, como en el cuaderno; frente al mismo paso con TRL tal cual
   (puntúa todas las posiciones en CPU) y frente al paso con *activation checkpointing* (el valor
   por defecto de TRL), y frente al paso en bf16 mixto (``bf16=True``): en una CPU con AMX, bf16 va
   rápido; en una que solo tiene AVX2, se emula y va muchas veces más lento.

Uso: ``python benchmarks/foundation.py [--repeats N] [--steps N]``. Escribe un JSON en salidas/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from helpers import model as course_model
from helpers.data import make_splits
from helpers.paths import output_dir
from helpers.training import score_only_labelled_tokens, sft_device_args


def time_first_load(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            os.environ[course_model.CACHE_ENV] = cache
            start = time.perf_counter()
            course_model.load_base_model("cpu")
            times.append(time.perf_counter() - start)
    os.environ.pop(course_model.CACHE_ENV)
    return times


def time_cached_load(repeats: int) -> list[float]:
    course_model.converted_model_dir()  # asegura la caché
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        course_model.load_base_model("cpu")
        times.append(time.perf_counter() - start)
    return times


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._start = [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def time_lora_steps(steps: int, **overrides) -> list[float]:
    torch.manual_seed(0)
    model, tokenizer = course_model.load_base_model("cpu")
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=16, learning_rate=1e-3,
                         logging_steps=steps, save_strategy="no", disable_tqdm=True,
                         **{**sft_device_args("cpu"), **overrides})
        trainer = SFTTrainer(model=model, args=args, train_dataset=make_splits("iso")["train"],
                             processing_class=tokenizer, callbacks=[timer],
                             peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                    task_type="CAUSAL_LM"))
        trainer.train()
    return timer.times[1:]  # el primer paso incluye el calentamiento


def cpu_features() -> str:
    """Las extensiones de la CPU que deciden la velocidad de bf16 (Linux; en otros sistemas, «?»)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "?"
    return " ".join(flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags) or "-"


def summary(name: str, times: list[float]) -> dict:
    med = statistics.median(times)
    print(f"{name:<48} mediana {med:7.2f} s   (n={len(times)}: {', '.join(f'{t:.2f}' for t in times)})")
    return {"median_s": med, "runs_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeticiones de cada carga")
    parser.add_argument("--steps", type=int, default=6, help="pasos de entrenamiento por variante")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"CPU: {os.cpu_count()} núcleos, torch {torch.__version__}, {cpu} ({cpu_features()})")
    results = {
        "first_load": summary("Primera carga (conversión GGUF + carga)", time_first_load(args.repeats)),
        "cached_load": summary("Carga con caché", time_cached_load(max(args.repeats, 5))),
        # TRL tal cual primero: score_only_labelled_tokens() cambia TRL para el resto del proceso
        "lora_step_trl_as_is": summary("Paso LoRA lote 16 (TRL tal cual)", time_lora_steps(args.steps)),
    }
    score_only_labelled_tokens()
    results["lora_step"] = summary("Paso LoRA lote 16 (como el cuaderno)", time_lora_steps(args.steps))
    results["lora_step_checkpointing"] = summary("Paso LoRA lote 16 (+ activation checkpointing)",
                                                 time_lora_steps(args.steps, activation_checkpointing=True))
    results["lora_step_bf16"] = summary("Paso LoRA lote 16 (bf16 mixto)",
                                        time_lora_steps(args.steps, bf16=True))
    median = {name: result["median_s"] for name, result in results.items()}
    step = median["lora_step"]
    print(f"Solo tokens con etiqueta: x{median['lora_step_trl_as_is'] / step:.2f} más rápido por paso; "
          f"checkpointing cuesta x{median['lora_step_checkpointing'] / step:.2f}; "
          f"bf16 tarda x{median['lora_step_bf16'] / step:.2f} lo de float32; "
          f"primera carga / carga con caché: x{median['first_load'] / median['cached_load']:.0f}")
    path = output_dir("bench") / "foundation.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"Resultados en {path}")


if __name__ == "__main__":
    main()
