"""Entrena un adaptador LoRA en la tarea del curso con `SFTTrainer`: la receta del cuaderno, como orden.

Uso::

    python -m helpers.train --salida salidas/entrenamiento/dotted       # como el cuaderno (formato con puntos)
    accelerate launch --num_processes 2 -m helpers.train --lote 8            # 2 GPU, datos en paralelo
    accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train ...

Los valores por defecto son los del entrenamiento principal del cuaderno `lora_finetuning`
(`helpers.recipe`). Escribe en la carpeta de salida el adaptador (formato PEFT, safetensors) con su
tokenizador, ``perdidas.json`` (historial de pérdidas) y ``resultado.json`` (exactitud en el conjunto de
prueba y cómo se entrenó). Con varios procesos, solo el principal escribe y muestra resultados.
Sale con 2 si la orden está mal escrita.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

from . import recipe
from .data import DEFAULT_SIZES, FORMATS, TRAINED_FORMAT
from .errors import CourseError

LOSSES_FILE = "perdidas.json"
RESULT_FILE = "resultado.json"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, prefix or "uso: ")


class _Parser(argparse.ArgumentParser):
    """`ArgumentParser` que avisa en español, una sola vez aunque haya varios procesos, y sale con 2."""

    def error(self, message):
        if is_main_process():
            self.print_usage(sys.stderr)
            print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def is_main_process() -> bool:
    """True en el proceso principal (``RANK`` 0, o sin lanzador)."""
    return int(os.environ.get("RANK") or 0) == 0


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m helpers.train", formatter_class=_Formatter, add_help=False,
        description="Entrena un adaptador LoRA en la tarea del curso (fechas en español -> un formato) con "
                    "SFTTrainer de TRL.\nLos valores por defecto son los del cuaderno lora_finetuning.",
        epilog="Lote global y varios procesos: con `accelerate launch --num_processes N`, cada proceso "
               "recibe\n--lote / (N × --acumulacion) ejemplos por pasada, así que cada paso de "
               "optimización ve --lote\nejemplos y el calendario de la tasa es el mismo con 1 o N procesos. "
               "--lote debe ser múltiplo\nde N × --acumulacion.\n\n"
               "Ejemplos:\n"
               "  python -m helpers.train --formato us --pasos 20\n"
               "  accelerate launch --multi_gpu --num_processes 2 -m helpers.train --lote 8")
    parser._optionals.title = "opciones"
    parser.add_argument("-h", "--help", action="help", help="muestra esta ayuda y termina")
    parser.add_argument("--model", metavar="MODELO",
                        help="modelo base: id del Hub o carpeta local (por defecto el del curso, o "
                             "CURSO_LORA_MODEL si está definida)")
    parser.add_argument("--formato", default=TRAINED_FORMAT, metavar="FORMATO",
                        help=f"formato de respuesta: {', '.join(FORMATS)} (por defecto {TRAINED_FORMAT}, el "
                             "del cuaderno)")
    parser.add_argument("--rango", type=int, default=recipe.LORA_RANK, metavar="R",
                        help=f"rango r de LoRA (por defecto {recipe.LORA_RANK})")
    parser.add_argument("--alpha", type=float, default=recipe.LORA_ALPHA,
                        help=f"lora_alpha; la escala es alpha / r (por defecto {recipe.LORA_ALPHA})")
    parser.add_argument("--modulos", default=recipe.LORA_TARGETS, metavar="CAPAS",
                        help="capas con adaptador: all-linear o nombres separados por comas, "
                             f"p. ej. q_proj,v_proj (por defecto {recipe.LORA_TARGETS})")
    parser.add_argument("--pasos", type=int, default=recipe.MAIN_STEPS, metavar="N",
                        help=f"pasos de optimización (por defecto {recipe.MAIN_STEPS})")
    parser.add_argument("--lote", type=int, default=recipe.MAIN_BATCH, metavar="N",
                        help=f"lote GLOBAL: ejemplos por paso sumando todos los procesos "
                             f"(por defecto {recipe.MAIN_BATCH})")
    parser.add_argument("--acumulacion", type=int, default=1, metavar="N",
                        help="pasadas que se acumulan en cada paso (por defecto 1)")
    parser.add_argument("--lr", type=float, default=recipe.MAIN_LR,
                        help=f"tasa de aprendizaje, constante (por defecto {recipe.MAIN_LR:g})")
    parser.add_argument("--filas-test", type=int, metavar="N",
                        help=f"mide la exactitud en las primeras N fechas de prueba (por defecto las "
                             f"{DEFAULT_SIZES['test']})")
    parser.add_argument("--salida", metavar="CARPETA",
                        help="carpeta del adaptador y los resultados (por defecto "
                             "salidas/entrenamiento/FORMATO)")
    parser.add_argument("--overwrite", action="store_true",
                        help="reescribe la carpeta de salida aunque ya tenga un adaptador")
    return parser


def holds_adapter(folder: Path) -> bool:
    """True si ``folder`` ya tiene un adaptador de PEFT."""
    return (folder / "adapter_config.json").exists() or any(folder.glob("adapter_model.*"))


def _check(parser: _Parser, args: argparse.Namespace) -> None:
    """Todo lo que se puede comprobar sin cargar nada; avisa con `parser.error` (sale con 2)."""
    if args.formato not in FORMATS:
        parser.error(f"no conozco el formato {args.formato!r}. Usa uno de: {', '.join(FORMATS)}.")
    for option, value in (("--rango", args.rango), ("--alpha", args.alpha), ("--pasos", args.pasos),
                          ("--lote", args.lote), ("--acumulacion", args.acumulacion), ("--lr", args.lr)):
        if not value > 0:
            parser.error(f"{option} debe ser mayor que 0 (recibí {value:g}).")
    if args.filas_test is not None and not 0 < args.filas_test <= DEFAULT_SIZES["test"]:
        parser.error(f"--filas-test debe estar entre 1 y {DEFAULT_SIZES['test']} "
                     f"(recibí {args.filas_test}).")
    if not args.modulos.strip(" ,"):
        parser.error("--modulos está vacío: usa all-linear o nombres de capas, p. ej. q_proj,v_proj.")
    try:
        recipe.per_device_batch(args.lote, recipe.world_size(), args.acumulacion)
    except ValueError as error:
        parser.error(str(error))
    if args.salida is None:
        from .paths import output_dir

        args.salida = str(output_dir("entrenamiento", args.formato))
    out = Path(args.salida)
    if out.exists() and not out.is_dir():
        parser.error(f"--salida {out} es un archivo; indica una carpeta.")
    if holds_adapter(out) and not args.overwrite:
        parser.error(f"{out} ya tiene un adaptador y no lo sobrescribo. Elige otra --salida o añade "
                     "--overwrite para reemplazarlo.")
    if args.model:
        from .model import MODEL_ENV

        os.environ[MODEL_ENV] = args.model  # mismo camino que la variable: comprobaciones y red solo entonces


def _target_modules(spec: str, model) -> str | list[str]:
    """``"all-linear"`` o la lista de nombres, comprobados contra las capas lineales del modelo."""
    import torch

    if spec.strip() == "all-linear":
        return "all-linear"
    names = [name.strip() for name in spec.split(",") if name.strip()]
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear)}
    unknown = [name for name in names if name not in linear]
    if unknown:
        raise CourseError(f"--modulos: este modelo no tiene capas lineales llamadas {', '.join(unknown)}. "
                          f"Las que tiene: {', '.join(sorted(linear))} (o all-linear).")
    return names


def train(args: argparse.Namespace) -> dict | None:
    """Entrena, guarda y evalúa. Devuelve el resultado en el proceso principal (None en los demás)."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTTrainer

    from .data import make_splits
    from .device import pick_device, pick_dtype
    from .model import base_model_path, hub_offline, load_tokenizer
    from .training import loss_history, score_only_labelled_tokens

    out = Path(args.salida)
    device = pick_device()
    score_only_labelled_tokens()
    splits = make_splits(args.formato, seed=recipe.SEED)
    sft_args = recipe.sft_config(out, steps=args.pasos, batch=args.lote, lr=args.lr,
                                 accumulation=args.acumulacion, device=device)
    processes = sft_args.world_size
    if sft_args.per_device_train_batch_size * processes * args.acumulacion != args.lote:
        raise CourseError(f"El lanzador dio {processes} procesos, pero WORLD_SIZE decía "
                          f"{recipe.world_size()}: el lote global no sería el pedido. Lanza con "
                          "`accelerate launch --multi_gpu` (o torchrun), no con --cpu.")
    with sft_args.main_process_first(desc="modelo base"):  # la primera conversión del modelo, una vez
        path = base_model_path()
        tokenizer = load_tokenizer(path)
        with hub_offline():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(device))
    peft_config = recipe.lora_config(r=args.rango, alpha=args.alpha,
                                     target_modules=_target_modules(args.modulos, model))
    set_seed(recipe.SEED)  # misma inicialización de LoRA en todos los procesos
    trainer = SFTTrainer(model=model, args=sft_args, train_dataset=splits["train"],
                         eval_dataset=splits["validation"].select(range(recipe.VALIDATION_ROWS)),
                         processing_class=tokenizer, peft_config=peft_config)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    accelerator = trainer.accelerator
    state_dict = accelerator.get_state_dict(trainer.model_wrapped)  # todos los procesos (FSDP, ZeRO-3)
    if not accelerator.is_main_process:
        return None
    out.mkdir(parents=True, exist_ok=True)
    accelerator.unwrap_model(trainer.model).save_pretrained(out, state_dict=state_dict)
    tokenizer.save_pretrained(out)
    history, steps = loss_history(trainer), trainer.state.global_step
    run = {
        "formato": args.formato, "modelo": path, "dispositivo": device, "rango": args.rango,
        "alpha": args.alpha, "modulos": args.modulos, "pasos": steps, "lr": args.lr,
        "lote_global": args.lote, "world_size": processes,
        "estrategia": str(accelerator.distributed_type).rsplit(".", 1)[-1],
        "lote_por_proceso": sft_args.per_device_train_batch_size, "acumulacion": args.acumulacion,
        "hilos_por_proceso": torch.get_num_threads(),
        "segundos_entrenando": round(seconds, 2), "segundos_por_paso": round(seconds / steps, 3),
        "perdida_final": history["train_loss"][-1] if history["train_loss"] else None,
    }
    del trainer, model, state_dict
    gc.collect()
    run.update(_evaluate_saved(out, path, device, splits["test"], args.filas_test))
    (out / LOSSES_FILE).write_text(json.dumps(history, indent=2))
    (out / RESULT_FILE).write_text(json.dumps(run, indent=2, ensure_ascii=False))
    return run


def _evaluate_saved(folder: Path, path: str, device: str, test, rows: int | None) -> dict:
    """Exactitud del adaptador tal como quedó guardado, cargado de nuevo sobre el modelo base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from .device import pick_dtype
    from .evaluation import evaluate
    from .model import hub_offline, load_tokenizer

    with hub_offline():
        base = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(device)).to(device)
    model = PeftModel.from_pretrained(base, folder)
    result = evaluate(model, load_tokenizer(path), test.select(range(rows or len(test))))
    return {"exactitud": result.accuracy, "aciertos": result.correct, "filas_test": result.total}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    try:
        run = train(args)
    except CourseError as error:
        if is_main_process():
            print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        _close_process_group()
    if run is not None:
        from .numbers import accuracy, seconds

        print(f"Exactitud en {run['filas_test']} fechas de prueba ({run['formato']}): "
              f"{accuracy(run['aciertos'], run['filas_test'])} · {run['pasos']} pasos de lote global "
              f"{run['lote_global']} ({run['world_size']} proceso(s) × {run['lote_por_proceso']} × "
              f"acumulación {run['acumulacion']}) en {seconds(run['segundos_entrenando'])} · "
              f"adaptador en {args.salida}")
    return 0


def _close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
