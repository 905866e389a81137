"""Comprobaciones del cuaderno ``lora_finetuning``: ``from helpers.checks import finetuning as checks``.

Cada comprobación recibe los objetos reales del ejercicio (la configuración, los trainers, las carpetas
guardadas, el pipeline) y mide lo que da puntos: puntúa y genera con los modelos en fechas que elige
ella (``examples``: en la corrección, fechas que ningún cuaderno ve), cuenta parámetros en el modelo,
recarga lo guardado y lo compara con el modelo base. Los números que escribe el alumno son, como mucho,
información para él. Nunca reentrena.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from .. import numbers
from . import handover
from .core import exercise, expect
from .models import base_checkpoint, is_peft_model, lora_layers

NOTEBOOK = "lora_finetuning"
LOGIT_TOLERANCE_FP32 = 1e-2  # max |Δlogits| entre modelos que deben ser iguales (float32; logits ~10-30)
LOGIT_TOLERANCE_LOW_PRECISION = 0.5  # en bf16/fp16 el redondeo da diferencias de décimas
LOSS_ROWS = 16  # fechas con las que se puntúa (pérdida) cada adaptador: una pasada, barata en CPU
PROBE_ROWS = 8  # fechas con las que se comparan salidas (logits y respuestas voraces)
# Exactitud del adaptador principal: 24 de 32 fechas nuevas. El del cuaderno acierta 112/120 (93,3 %; IC
# 95 % de Wilson 87,4–96,6 %): con p = 0,874 (el extremo bajo) falla este umbral con probabilidad 1,5 %
# (binomial), con p = 0,933 un 0,02 %; uno de 8 pasos como los del barrido (62 %) lo pasa un 9 %.
ACCURACY_ROWS, MIN_RIGHT = 32, 24
PIPELINE_ROWS, PIPELINE_MIN_RIGHT = 8, 5  # el modelo base acierta 0; un adaptador entrenado, casi todas
MIN_CHANGED_FRACTION = 0.9  # el ajuste completo mueve (casi) todos los tensores de pesos


# --- utilidades ----------------------------------------------------------------------------------------


def _examples(examples):
    from ..data import Examples

    return examples if examples is not None else Examples("test")


def _param(model):
    return next(model.parameters())


def _tolerance(model) -> float:
    import torch

    return LOGIT_TOLERANCE_FP32 if _param(model).dtype == torch.float32 else LOGIT_TOLERANCE_LOW_PRECISION


def _fresh_base(like):
    """Un modelo base recién cargado, en el dispositivo y la precisión de ``like``."""
    model = handover.fresh_base()
    param = _param(like)
    return model.to(device=param.device, dtype=param.dtype)


def _tokenizer():
    from ..model import load_tokenizer

    return load_tokenizer()


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_trainer(obj) -> bool:
    """Un trainer (vivo, o el que reconstruye la corrección): tiene ``model``, ``args`` y ``state``."""
    import torch

    return all(hasattr(obj, name) for name in ("args", "state")) and isinstance(
        getattr(obj, "model", None), torch.nn.Module)


def _folder(path, what: str) -> Path:
    expect(path is not None, f"Falta la carpeta {what}: pasa la ruta donde lo guardaste con `save_pretrained`.")
    folder = Path(path)
    expect(folder.is_dir(), f"La carpeta {what} `{folder.name}` no existe: ¿ejecutaste la celda que la guarda "
                            "con `save_pretrained(...)`?")
    return folder


def _lora_weights(model) -> dict:
    """{nombre: tensor} de las matrices LoRA (A y B) del adaptador activo."""
    active = model.active_adapter
    return {name: p for name, p in model.named_parameters()
            if (".lora_A." in name or ".lora_B." in name) and name.endswith(f".{active}.weight")}


def _ranks(model) -> set[int]:
    return {p.shape[0] for name, p in _lora_weights(model).items() if ".lora_A." in name}


def _lora_count(model) -> int:
    return sum(p.numel() for p in _lora_weights(model).values())


def _adapter_bytes(model) -> int:
    """Lo que ocupan en disco los pesos del adaptador (safetensors guarda los tensores tal cual)."""
    return sum(p.numel() * p.element_size() for p in _lora_weights(model).values())


def _b_is_zero(model) -> bool:
    b = [p for name, p in _lora_weights(model).items() if ".lora_B." in name]
    return not b or all(float(p.detach().abs().max()) == 0.0 for p in b)


def _budget(trainer) -> dict:
    args = trainer.args
    return {"pasos": trainer.state.global_step, "max_steps": args.max_steps,
            "lote": args.per_device_train_batch_size,
            "acumulación": getattr(args, "gradient_accumulation_steps", 1)}


def _completion_loss(model, rows) -> float:
    """Pérdida media (entropía cruzada) en los tokens de las respuestas de ``rows``, como al entrenar."""
    import torch

    tok = _tokenizer()
    prompts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True)["input_ids"] for r in rows]
    fulls = [tok.apply_chat_template(r["prompt"] + r["completion"])["input_ids"] for r in rows]
    width = max(map(len, fulls))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, full) in enumerate(zip(prompts, fulls)):
        ids[i, :len(full)] = torch.tensor(full)
        labels[i, len(prompt):len(full)] = torch.tensor(full[len(prompt):])
        mask[i, :len(full)] = 1
    device, was_training = _param(model).device, model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    finally:
        model.train(was_training)
    return float(out.loss)


def _losses(model, rows) -> tuple[float, float]:
    """(pérdida con el adaptador, pérdida del modelo base) de un PeftModel en ``rows``."""
    with model.disable_adapter():
        base = _completion_loss(model, rows)
    return _completion_loss(model, rows), base


def _right(model, rows) -> tuple[int, list[str]]:
    """Cuántas respuestas voraces de ``model`` son exactas en ``rows``, y las respuestas."""
    from ..data import answer
    from ..evaluation import generate

    predictions = generate(model, _tokenizer(), [r["prompt"] for r in rows])
    return sum(p == answer(r) for p, r in zip(predictions, rows)), predictions


def _changed_tensors(model) -> tuple[int, int]:
    """(tensores de pesos distintos de los del modelo base, tensores comparados), sin las capas LoRA."""
    import torch

    from .handover import _base_tensor, _plain_name

    files = base_checkpoint() or {}
    changed = total = 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            continue
        base = _base_tensor(files, _plain_name(name))
        if base is None:
            continue
        total += 1
        tensor = param.detach().cpu()
        changed += base.shape != tensor.shape or not torch.equal(tensor, base.to(tensor.dtype))
    return changed, total


def _shipped(model) -> str | None:
    """Qué adaptador publicado de ``adapters/`` es el activo (None si ninguno)."""
    from .adapters import _which_shipped

    return _which_shipped(model, model.active_adapter)


@functools.lru_cache(maxsize=1)
def _architecture():
    """El modelo del curso sin pesos (dispositivo «meta»): basta para ver los nombres de sus capas."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..model import base_model_path

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_model_path()))


def _target_report(config, model) -> tuple[list[str], list[str]]:
    """Los ``target_modules`` que no existen en ``model`` y los que existen pero no son capas (bloques)."""
    import re

    import torch

    targets = config.target_modules
    modules = list(model.named_modules())
    if isinstance(targets, str):
        if targets == "all-linear":
            return [], []
        return ([], []) if any(re.fullmatch(targets, n) for n, _ in modules) else ([targets], [])
    missing, blocks = [], []
    for target in sorted(targets):
        found = [m for n, m in modules if n == target or n.endswith("." + target)]
        if not found:
            missing.append(target)
        elif not any(isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) or hasattr(m, "base_layer")
                     for m in found):
            blocks.append(target)
    return missing, blocks


# --- 🐢 LoraConfig -------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"config": handover.PeftConfig()},
    hint='`peft_config = LoraConfig(r=..., lora_alpha=..., lora_dropout=..., target_modules=..., bias="none", '
    'task_type="CAUSAL_LM")`. Los nombres de los módulos los ves con `print(model)`: en SmolLM2 son '
    'q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj y down_proj (o "all-linear" para todas las capas '
    "lineales).",
)
def lora_config(config, model=None):
    """Comprueba la ``LoraConfig``: tarea, rango, escala, dropout y que los módulos existan en el modelo.

    Sin ``model`` (en la corrección) mira los nombres en la arquitectura del modelo del curso.
    """
    from peft import LoraConfig

    expect(config is not None, "Todavía no hay configuración: crea `peft_config = LoraConfig(...)`.")
    expect(isinstance(config, LoraConfig), f"Esperaba una `LoraConfig` de PEFT y recibí un {type(config).__name__}: "
                                           "usa `from peft import LoraConfig` y `peft_config = LoraConfig(...)`.")
    expect(config.task_type == "CAUSAL_LM", f"`task_type` es {config.task_type!r}: nuestro modelo genera texto, "
                                            'así que usa `task_type="CAUSAL_LM"` (o `TaskType.CAUSAL_LM`).')
    r = config.r
    expect(isinstance(r, int) and r >= 1, f"El rango `r={r!r}` no vale: tiene que ser un entero positivo. "
                                          "Prueba con r=8.")
    expect(r <= 256, f"`r={r}` es enorme para un modelo de 576 dimensiones: LoRA funciona con rangos bajos; "
                     "prueba entre 4 y 32.")
    expect(_number(config.lora_alpha) and config.lora_alpha > 0,
           f"`lora_alpha={config.lora_alpha!r}`: la escala del cambio es lora_alpha / r, así que con 0 o menos "
           "el adaptador no hace nada (o va al revés). Un valor típico es 2·r, p. ej. 16.")
    expect(_number(config.lora_dropout) and 0 <= config.lora_dropout < 0.5,
           f"`lora_dropout={config.lora_dropout!r}`: es una probabilidad; usa algo entre 0 y 0.1.")
    expect(config.bias in ("none", "lora_only", "all"), f'`bias={config.bias!r}` no existe: usa "none" (no '
                                                         "entrenar sesgos).")
    expect(config.target_modules, "Faltan `target_modules`: di qué capas reciben adaptador, p. ej. "
                                  '["q_proj", "v_proj"] o "all-linear".')
    missing, blocks = _target_report(config, model if model is not None else _architecture())
    expect(not missing, f"Estos `target_modules` no existen en el modelo: {', '.join(map(repr, missing))}. Mira "
                        "los nombres con `print(model)`: en SmolLM2 son q_proj, k_proj, v_proj, o_proj, gate_proj, "
                        "up_proj y down_proj.")
    expect(not blocks, f"{', '.join(map(repr, blocks))}: son bloques que contienen otras capas, no capas "
                       "lineales. LoRA se pone en las capas lineales de dentro: q_proj, k_proj, v_proj, o_proj, "
                       "gate_proj, up_proj, down_proj.")
    targets = config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
    return (f"LoraConfig correcta: r={r}, lora_alpha={config.lora_alpha} (escala "
            f"{numbers.decimal(config.lora_alpha / r, 2)}), dropout {config.lora_dropout}, módulos {targets}.")


# --- 🐢 SFTTrainer -------------------------------------------------------------------------------------


def _expect_trained_adapter(trainer, what: str) -> None:
    """``trainer`` es un trainer con un adaptador LoRA que ha dado pasos y se ha movido (B ≠ 0)."""
    expect(_is_trainer(trainer), f"{what} no es un trainer (recibí un {type(trainer).__name__}): pasa el "
                                 "`SFTTrainer` que entrenaste.")
    expect(is_peft_model(trainer.model) and lora_layers(trainer.model),
           f"El modelo de {what} no tiene adaptadores LoRA: pasa `peft_config=...` a `SFTTrainer` (así entrena "
           "solo el adaptador, no los 135 millones de pesos).")
    expect(trainer.state.global_step > 0, f"{what} todavía no ha entrenado: llama a `trainer.train()`.")
    expect(not _b_is_zero(trainer.model), f"Las matrices B del adaptador de {what} siguen a cero: el adaptador "
                                          "no ha cambiado nada. ¿Entrenaste este mismo trainer?")


@exercise(
    NOTEBOOK,
    handover={"trainer": handover.Trainer()},
    hint="`trainer = SFTTrainer(model=fresh_model(), args=SFTConfig(...), train_dataset=splits[\"train\"], "
    "eval_dataset=validation, processing_class=tokenizer, peft_config=peft_config)`, luego `trainer.train()` "
    "y `after = evaluate(trainer.model, tokenizer, splits[\"test\"])`. Si no llega, sube MAIN_STEPS o la tasa "
    "de aprendizaje.",
)
def sft_trainer(trainer, after=None, examples=None):
    """Comprueba el adaptador del ``SFTTrainer`` por lo que hace: ≥ 24 de 32 fechas nuevas bien.

    ``after`` (la evaluación del alumno) solo se muestra como información.
    """
    expect(trainer is not None, "Todavía no hay trainer: crea `trainer = SFTTrainer(...)` y llama a "
                                "`trainer.train()`.")
    _expect_trained_adapter(trainer, "el trainer")
    shipped = _shipped(trainer.model)
    expect(shipped is None, f"El adaptador del trainer es el publicado en `adapters/{shipped}`, no uno entrenado "
                            "por ti: crea el `SFTTrainer` con un modelo base nuevo y `peft_config`.")
    rows = _examples(examples).rows("iso", ACCURACY_ROWS)
    right, _ = _right(trainer.model, rows)
    measured = numbers.accuracy(right, len(rows))
    expect(right >= MIN_RIGHT, f"El adaptador acierta {measured} fechas que no ha visto; hace falta al menos "
                               f"{MIN_RIGHT} de {len(rows)}. Entrena más pasos (MAIN_STEPS) o sube la tasa de "
                               f"aprendizaje (ahora {trainer.args.learning_rate:g}).")
    yours = ""
    if all(hasattr(after, name) for name in ("correct", "total")) and after.total:
        yours = f" Tu evaluación (`after`) dice {numbers.accuracy(after.correct, after.total)}."
    return (f"El adaptador entrenó {trainer.state.global_step} pasos y acierta {measured} fechas que no había "
            f"visto.{yours}")


# --- 🐕 Barrido de rangos ------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"sweep": handover.Mapping(handover.Trainer())},
    hint="Un trainer por rango, con la misma configuración que `peft_config` salvo `r` y `lora_alpha`: "
    "`sweep = {r: lora_trainer(f\"rango_{r}\", replace(peft_config, r=r, lora_alpha=2 * r), COMPARE_LR) "
    "for r in RANKS}`. La celda siguiente los entrena y los mide con `measure(...)`.",
)
def rank_sweep(sweep, examples=None):
    """Comprueba el barrido con los trainers: rangos, parámetros, presupuesto y que cada uno aprendió."""
    expect(sweep is not None, "Todavía no hay barrido: rellena `sweep = {rango: trainer}`.")
    expect(isinstance(sweep, dict), f"Esperaba un diccionario {{rango: trainer}} y recibí un "
                                    f"{type(sweep).__name__}.")
    ranks = sorted(sweep, key=str)
    expect(len(ranks) >= 3, f"Solo hay {len(ranks)} rango(s) ({ranks}): compara al menos tres, p. ej. 2, 8 y 32.")
    expect(all(isinstance(r, int) and r > 0 for r in ranks), f"Las claves deben ser los rangos (enteros): {ranks}.")
    ranks = sorted(ranks)
    for r in ranks:
        trainer = sweep[r]
        expect(_is_trainer(trainer), f"`sweep[{r}]` es un {type(trainer).__name__}, no un trainer: guarda en "
                                     "`sweep` los trainers de `lora_trainer(...)` (las medidas las calcula "
                                     "`measure(trainer)` en la celda siguiente).")
        expect(is_peft_model(trainer.model) and lora_layers(trainer.model),
               f"El modelo de `sweep[{r}]` no tiene adaptador LoRA: créalo con `lora_trainer(...)`.")
        found = sorted(_ranks(trainer.model))
        expect(found == [r], f"El adaptador de `sweep[{r}]` tiene rango {found}: la clave debe ser el rango con el "
                             "que lo creaste (`replace(peft_config, r=r, ...)`).")
        expect(trainer.state.global_step > 0 and not _b_is_zero(trainer.model),
               f"`sweep[{r}]` no ha entrenado: ejecuta la celda que llama a `measure(...)` con cada trainer.")
    budgets = {r: _budget(sweep[r]) for r in ranks}
    expect(all(b == budgets[ranks[0]] for b in budgets.values()),
           f"No todos los rangos tienen el mismo presupuesto ({budgets}): así la comparación no es justa. "
           "Crea todos con `lora_trainer(...)`, que usa `compare_args`.")
    rates = {r: sweep[r].args.learning_rate for r in ranks}
    expect(len(set(rates.values())) == 1, f"Los rangos entrenan con tasas distintas ({rates}): usa la misma "
                                          "(`COMPARE_LR`) para comparar solo el rango.")
    counts = {r: _lora_count(sweep[r].model) for r in ranks}
    per_rank = [counts[r] / r for r in ranks]
    expect(max(per_rank) <= 1.01 * min(per_rank),
           "Los parámetros del adaptador no crecen en proporción al rango ("
           + ", ".join(f"r={r}: {numbers.integer(counts[r])}" for r in ranks)
           + "): con los mismos `target_modules` son r·(d+k) por capa. ¿Cambiaste de módulos entre rangos?")
    rows = _examples(examples).rows("iso", LOSS_ROWS)
    losses = {r: _losses(sweep[r].model, rows) for r in ranks}
    for r, (loss, base) in losses.items():
        expect(loss < base, f"`sweep[{r}]` no ha aprendido la tarea: su pérdida en {len(rows)} fechas nuevas "
                            f"({numbers.decimal(loss, 3)}) no baja de la del modelo base ({numbers.decimal(base, 3)}).")
    best = min(ranks, key=lambda r: losses[r][0])
    table = "; ".join(f"r={r}: {numbers.integer(counts[r])} parámetros, {numbers.size(_adapter_bytes(sweep[r].model))}, "
                      f"pérdida {numbers.decimal(losses[r][0], 3)}" for r in ranks)
    return (f"{len(ranks)} rangos entrenados con el mismo presupuesto ({budgets[ranks[0]]['pasos']} pasos), "
            f"medidos en {len(rows)} fechas nuevas: {table}. Menor pérdida: r={best}.")


# --- 🐕 Ajuste fino completo ---------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"full": handover.Trainer(), "lora": handover.Trainer()},
    hint="`full_trainer = SFTTrainer(model=fresh_model(), args=compare_args(\"completo\", FULL_LR), "
    "train_dataset=splits[\"train\"], eval_dataset=validation, processing_class=tokenizer)` (sin "
    "`peft_config`) y `full = measure(full_trainer)`. La referencia justa es el trainer del barrido con tu "
    "configuración: `lora_reference = sweep[peft_config.r]`. Pasa los dos trainers a la comprobación.",
)
def full_finetuning(full, lora, examples=None):
    """Comprueba la comparación con los dos trainers: todo el modelo frente al adaptador, mismo presupuesto."""
    expect(full is not None, "Falta el trainer del ajuste completo (`full_trainer`).")
    expect(lora is not None, "Falta el trainer LoRA de referencia (`lora_reference`).")
    expect(_is_trainer(full), f"El primer argumento es un {type(full).__name__}, no un trainer: pasa "
                              "`full_trainer` (las medidas de `measure` no bastan: la comprobación mide ella).")
    expect(_is_trainer(lora), f"El segundo argumento es un {type(lora).__name__}, no un trainer: pasa "
                              "`lora_reference = sweep[peft_config.r]`.")
    expect(not is_peft_model(full.model), "El ajuste completo tiene adaptador LoRA: crea ese `SFTTrainer` sin "
                                          "`peft_config`, para que entrene todos los pesos.")
    expect(full.state.global_step > 0, "El ajuste completo todavía no ha entrenado: `measure(full_trainer)`.")
    _expect_trained_adapter(lora, "la referencia LoRA")
    expect(_budget(full) == _budget(lora),
           f"Presupuestos distintos: {_budget(full)} en el ajuste completo y {_budget(lora)} con LoRA. Compara "
           "con los mismos pasos y el mismo lote (`compare_args`).")
    changed, total = _changed_tensors(full.model)
    expect(total and changed >= MIN_CHANGED_FRACTION * total,
           f"Solo cambiaron {changed} de {total} tensores de pesos del modelo: un ajuste completo los mueve "
           "todos. ¿Congelaste capas, o es otro modelo?")
    lora_changed, _ = _changed_tensors(lora.model)
    expect(lora_changed == 0, f"La referencia LoRA cambió {lora_changed} tensores del modelo base: con LoRA los "
                              "pesos base quedan congelados. ¿Es el trainer del barrido?")
    full_count = sum(p.numel() for p in full.model.parameters())
    lora_count = _lora_count(lora.model)
    rows = _examples(examples).rows("iso", LOSS_ROWS)
    lora_loss, base_loss = _losses(lora.model, rows)
    full_loss = _completion_loss(full.model, rows)
    expect(full_loss < base_loss,
           f"El ajuste completo no ha aprendido: su pérdida en {len(rows)} fechas nuevas "
           f"({numbers.decimal(full_loss, 3)}) no baja de la del modelo base ({numbers.decimal(base_loss, 3)}). "
           f"Con todos los pesos a la vez, la tasa {full.args.learning_rate:g} puede ser demasiado alta.")
    full_right, _ = _right(full.model, rows)
    lora_right, _ = _right(lora.model, rows)
    return (f"Mismo presupuesto ({_budget(full)['pasos']} pasos). El ajuste completo entrena "
            f"{numbers.integer(full_count)} parámetros ({numbers.ratio(full_count / lora_count, 0)} los "
            f"{numbers.integer(lora_count)} de LoRA) y los pesos ocupan {numbers.size(sum(p.numel() * p.element_size() for p in full.model.parameters()))} frente a "
            f"{numbers.size(_adapter_bytes(lora.model))}. En {len(rows)} fechas nuevas: completo "
            f"{numbers.accuracy(full_right, len(rows))}, pérdida {numbers.decimal(full_loss, 3)}; LoRA "
            f"{numbers.accuracy(lora_right, len(rows))}, pérdida {numbers.decimal(lora_loss, 3)}.")


# --- 🦁 OLoRA ------------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"trainer": handover.Trainer(), "converted_dir": handover.Folder()},
    hint='`olora_config = replace(peft_config, init_lora_weights="olora")` y, en `train_olora(lr)`: '
    "`trainer = lora_trainer(...)`, `trainer.model.save_pretrained(init_dir)` ANTES de entrenar, "
    "`result = measure(trainer)` y `trainer.model.save_pretrained(converted_dir, "
    "path_initial_model_for_weight_conversion=str(init_dir))`; devuelve `(trainer, result, converted_dir)`.",
)
def olora(trainer, converted_dir, examples=None):
    """Comprueba OLoRA: entrenado con ``init_lora_weights="olora"``; lo convertido va sobre un base nuevo."""
    from peft import LoraConfig, PeftModel

    from ..evaluation import generate, max_logit_diff

    expect(trainer is not None, 'Todavía no hay trainer de OLoRA: entrena con `init_lora_weights="olora"`.')
    expect(_is_trainer(trainer), f"Esperaba el trainer de OLoRA y recibí un {type(trainer).__name__}.")
    model = trainer.model
    expect(is_peft_model(model), "El modelo del trainer no tiene adaptador: pasa la configuración al SFTTrainer "
                                 "(`lora_trainer(..., olora_config, lr)`).")
    init = model.peft_config[model.active_adapter].init_lora_weights
    expect(init == "olora", f"Este adaptador empezó con `init_lora_weights={init!r}`, no con OLoRA: pon "
                            '`init_lora_weights="olora"` en su LoraConfig.')
    expect(trainer.state.global_step > 0, "El trainer de OLoRA todavía no ha entrenado: `measure(trainer)`.")
    folder = _folder(converted_dir, "del adaptador convertido")
    expect((folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file(),
           f"En `{folder.name}` no hay un adaptador (adapter_config.json + adapter_model.safetensors).")
    saved = LoraConfig.from_pretrained(str(folder))
    trained_r = model.peft_config[model.active_adapter].r
    expect(saved.init_lora_weights != "olora",
           "Guardaste el adaptador sin convertir: así solo funciona sobre los pesos base que OLoRA modificó. "
           "Guárdalo con `save_pretrained(converted_dir, path_initial_model_for_weight_conversion=str(init_dir))`.")
    expect(saved.r == 2 * trained_r,
           f"El adaptador guardado tiene r={saved.r}; la conversión de PEFT lo deja en 2·r = {2 * trained_r}. "
           "¿Es la carpeta del adaptador inicial? Pasa la carpeta donde guardaste con "
           "`path_initial_model_for_weight_conversion`.")
    fresh = PeftModel.from_pretrained(_fresh_base(model), str(folder))
    tok, prompts = _tokenizer(), _examples(examples).prompts(PROBE_ROWS)
    diff = max_logit_diff(fresh, model, tok, prompts)
    same = generate(fresh, tok, prompts) == generate(model, tok, prompts)
    expect(diff <= _tolerance(model) and same,
           "El adaptador convertido, sobre el modelo base original, no calcula lo mismo que el modelo entrenado "
           f"(max |Δlogits| = {numbers.decimal(diff, 3)}). Guarda el adaptador inicial ANTES de entrenar y no lo "
           "sobrescribas.")
    return (f"OLoRA convertido: sobre un modelo base recién cargado da las mismas respuestas que el entrenado en "
            f"{len(prompts)} fechas (max |Δlogits| = {diff:.1e}); su rango guardado es {saved.r} = 2·{trained_r}.")


# --- 🐕 Fusionar y guardar -----------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"merged": handover.Model(), "adapter_trainer": handover.Trainer(), "merged_dir": handover.Folder()},
    hint="`merge_and_unload()` cambia el modelo en su sitio: hazlo sobre una copia "
    "(`to_merge = PeftModel.from_pretrained(fresh_model(), ADAPTER_DIR)`, `merged = to_merge.merge_and_unload()`). "
    "Guarda con `merged.save_pretrained(merged_dir)` y `tokenizer.save_pretrained(merged_dir)`.",
)
def merge_and_save(merged, adapter_trainer, merged_dir, examples=None):
    """Comprueba la fusión midiendo: sin capas LoRA, mismos logits que el adaptador, y recargable de disco.

    ``adapter_trainer`` es el `trainer` del entrenamiento principal (su modelo, sin fusionar, es la referencia).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..evaluation import generate, max_logit_diff

    expect(merged is not None, "Todavía no hay modelo fusionado: `merged = to_merge.merge_and_unload()`.")
    expect(isinstance(merged, torch.nn.Module), f"`merged` es un {type(merged).__name__}, no un modelo: guarda "
                                                "lo que devuelve `merge_and_unload()`.")
    expect(not is_peft_model(merged) and not lora_layers(merged),
           "El modelo «fusionado» aún tiene capas LoRA: usa lo que devuelve `merge_and_unload()`.")
    adapter_model = getattr(adapter_trainer, "model", None) if _is_trainer(adapter_trainer) else None
    expect(adapter_model is not None and is_peft_model(adapter_model) and lora_layers(adapter_model),
           "El segundo argumento debe ser `trainer`, el del entrenamiento principal, con su adaptador sin "
           "fusionar. Si su modelo ya no tiene capas LoRA, es que lo fusionaste: `merge_and_unload()` cambia el "
           "modelo en su sitio; fusiona una copia cargada con `PeftModel.from_pretrained`.")
    expect(not _b_is_zero(adapter_model), "El adaptador del trainer sigue a cero (sin entrenar): pasa el `trainer` "
                                          "del entrenamiento principal.")
    tok, prompts, tol = _tokenizer(), _examples(examples).prompts(PROBE_ROWS), _tolerance(adapter_model)
    reference = generate(adapter_model, tok, prompts)
    diff = max_logit_diff(merged, adapter_model, tok, prompts)
    expect(diff <= tol and generate(merged, tok, prompts) == reference,
           f"El modelo fusionado no calcula lo mismo que el adaptador del trainer (max |Δlogits| = "
           f"{numbers.decimal(diff, 3)} en {len(prompts)} fechas): ¿usaste `unload()` (que quita el adaptador sin "
           "sumarlo) en vez de `merge_and_unload()`, o fusionaste otro adaptador?")
    folder = _folder(merged_dir, "del modelo fusionado")
    expect((folder / "config.json").is_file() and list(folder.glob("*.safetensors")),
           f"En `{folder.name}` no hay un modelo guardado (config.json + *.safetensors): `merged.save_pretrained(...)`.")
    expect((folder / "tokenizer_config.json").is_file(),
           f"En `{folder.name}` falta el tokenizador: `tokenizer.save_pretrained(...)` en la misma carpeta, para "
           "que se pueda cargar sin el modelo base.")
    param = _param(adapter_model)
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=param.dtype).to(param.device)
    reloaded_tok = AutoTokenizer.from_pretrained(str(folder))
    expect(reloaded_tok.chat_template, "El tokenizador guardado no tiene plantilla de chat: guarda el del curso.")
    diff_disk = max_logit_diff(reloaded, adapter_model, tok, prompts)
    expect(diff_disk <= tol and generate(reloaded, reloaded_tok, prompts) == reference,
           f"El modelo recargado de `{folder.name}` no calcula lo mismo que el adaptador (max |Δlogits| = "
           f"{numbers.decimal(diff_disk, 3)}): ¿guardaste el modelo fusionado (y no el base)?")
    return (f"Fusionado y guardado, medido en {len(prompts)} fechas: max |Δlogits| = {diff:.1e} en memoria y "
            f"{diff_disk:.1e} tras recargar de disco, con las mismas respuestas que el adaptador.")


# --- 🐕 Extra: pipeline --------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"pipe": handover.Pipeline()},
    hint="`served = AutoPeftModelForCausalLM.from_pretrained(str(ADAPTER_DIR), dtype=DTYPE)` y "
    '`pipe = pipeline("text-generation", model=served, tokenizer=tokenizer)`; pásale una lista de mensajes '
    "de chat.",
)
def pipeline_inference(pipe, examples=None):
    """Comprueba un ``pipeline("text-generation")`` con el adaptador: él y su modelo responden bien."""
    from transformers import Pipeline

    from ..data import answer

    expect(pipe is not None, 'Todavía no hay pipeline: `pipe = pipeline("text-generation", model=..., '
                             "tokenizer=...)`.")
    expect(isinstance(pipe, Pipeline), f"Esperaba un pipeline de transformers y recibí un {type(pipe).__name__}.")
    expect(getattr(pipe, "task", "") == "text-generation",
           f'El pipeline es de la tarea {getattr(pipe, "task", "?")!r}: crea uno de "text-generation".')
    rows = list(_examples(examples).rows("iso", PIPELINE_ROWS))
    replies = []
    for row in rows:
        out = pipe(row["prompt"], max_new_tokens=16, do_sample=False, return_full_text=False)
        text = out[0]["generated_text"]
        replies.append((text[-1]["content"] if isinstance(text, list) else str(text)).strip())
    right, own = _right(pipe.model, rows)
    differ = sum(a != b for a, b in zip(replies, own))
    expect(differ <= 1, f"El pipeline responde distinto que su propio modelo en {differ} de {len(rows)} fechas: "
                        "sus respuestas tienen que salir de `pipe.model`. Crea el pipeline con "
                        '`pipeline("text-generation", model=..., tokenizer=tokenizer)`, sin cambiar cómo responde.')
    wrong = [f"«{row['prompt'][-1]['content']}» → {text!r} (esperaba {answer(row)!r})"
             for row, text in zip(rows, own) if text != answer(row)]
    expect(right >= PIPELINE_MIN_RIGHT,
           f"El pipeline falla {len(wrong)} de {len(rows)} fechas: {'; '.join(wrong[:2])}. ¿Tiene el adaptador "
           "entrenado cargado (AutoPeftModelForCausalLM o PeftModel.from_pretrained)?")
    return f"El pipeline con el adaptador responde bien {right} de {len(rows)} fechas nuevas (y su modelo, igual)."
