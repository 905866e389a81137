"""Registro único de ejercicios: cuaderno, nombre, nivel, puntos y enunciado corto.

Lo leen las comprobaciones (cuántos puntos da cada una) y la corrección (qué ejercicios espera en
cada cuaderno). Niveles: 🐢 básico, 🐕 intermedio, 🦁 avanzado.
"""

from __future__ import annotations

from dataclasses import dataclass

POINTS_BY_LEVEL = {"🐢": 1, "🐕": 2, "🦁": 3}


@dataclass(frozen=True)
class ExerciseInfo:
    notebook: str
    name: str
    level: str
    title: str

    @property
    def points(self) -> int:
        return POINTS_BY_LEVEL[self.level]


EXERCISES = [
    ExerciseInfo("load_lora_adapter_example", "load_adapter", "🐢",
                 "Carga un adaptador preentrenado con PeftModel.from_pretrained"),
    ExerciseInfo("load_lora_adapter_example", "switch_adapters", "🦁",
                 "Tres adaptadores sin etiqueta: cámbialos y decide qué formato produce cada uno"),
    ExerciseInfo("load_lora_adapter_example", "unload_adapters", "🐢",
                 "Descarga los adaptadores con unload()"),
    ExerciseInfo("load_lora_adapter_example", "merge_adapter", "🐕",
                 "Diagnostica tres fusiones midiendo sus pesos, y fusiona, valida y guarda tú"),
    ExerciseInfo("lora_finetuning", "lora_config", "🐢", "Define la LoraConfig"),
    ExerciseInfo("lora_finetuning", "sft_trainer", "🐢", "Entrena con SFTTrainer y la LoraConfig"),
    ExerciseInfo("lora_finetuning", "rank_sweep", "🐕",
                 "Elige módulos y rango para un presupuesto de parámetros, y mídelo"),
    ExerciseInfo("lora_finetuning", "full_finetuning", "🐕",
                 "Ajuste fino completo: elige su tasa y compáralo con el mismo presupuesto"),
    ExerciseInfo("lora_finetuning", "olora", "🦁", "OLoRA y su conversión al guardar"),
    ExerciseInfo("lora_finetuning", "merge_and_save", "🐕", "Fusiona, valida, guarda y recarga"),
    ExerciseInfo("lora_finetuning", "pipeline_inference", "🐕",
                 "Inferencia con el adaptador guardado y un pipeline"),
    ExerciseInfo("lora_advanced", "mixed_batch", "🐢",
                 "Tres adaptadores en un modelo y un lote con uno distinto en cada fila"),
    ExerciseInfo("lora_advanced", "cat_combination", "🐕",
                 "Decide midiendo qué combinación de adaptadores suma exactamente"),
    ExerciseInfo("lora_advanced", "hotswap", "🐕",
                 "Prepara el modelo para cambiar en caliente sin recompilar"),
    ExerciseInfo("lora_advanced", "dpo_trainer", "🦁",
                 "DPO con LoRA sin segunda copia: elige la tasa con un presupuesto"),
    ExerciseInfo("lora_deploy", "export_gguf", "🐢",
                 "Exporta el modelo fusionado a GGUF sin cuantizar y pruébalo en llama.cpp"),
    ExerciseInfo("lora_deploy", "smallest_format", "🦁",
                 "Elige midiendo el formato GGUF más pequeño que conserva el ajuste fino"),
]

NOTEBOOKS = tuple(dict.fromkeys(e.notebook for e in EXERCISES))


def exercises_for(notebook: str) -> list[ExerciseInfo]:
    """Los ejercicios de un cuaderno, en orden."""
    return [e for e in EXERCISES if e.notebook == notebook]


def info(notebook: str, name: str) -> ExerciseInfo:
    for e in EXERCISES:
        if (e.notebook, e.name) == (notebook, name):
            return e
    raise KeyError(f"No hay ningún ejercicio {name!r} en el cuaderno {notebook!r}.")
