"""Comprobaciones del cuaderno ``lora_finetuning``: ``from helpers.checks import finetuning as checks``.

Cada comprobación mira los objetos reales del ejercicio (la configuración, el trainer, las carpetas
guardadas...) y, cuando hace falta, los pone a prueba con unos pocos prompts. Nunca reentrena.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import handover
from .core import exercise, expect
from .models import is_peft_model, lora_layers

NOTEBOOK = "lora_finetuning"
MIN_ACCURACY = 0.9  # objetivo del cuaderno en el conjunto de prueba
MIN_TEST_ROWS = 100
LOGIT_TOLERANCE_FP32 = 1e-2  # max |Δlogits| entre modelos que deben ser iguales (float32; logits ~10-30)
LOGIT_TOLERANCE_LOW_PRECISION = 0.5  # en bf16/fp16 el redondeo da diferencias de décimas
PROBE_PHRASES = ["viernes 5 de marzo de 2021", "el 28 de octubre de 1983", "12 ago. 1999"]
PIPELINE_ROWS, PIPELINE_MIN_RIGHT = 8, 5  # el modelo base acierta 0; un adaptador entrenado, casi todas
RESULT_KEYS = ("trainable", "eval_loss", "accuracy")
FULL_KEYS = ("trainable", "accuracy", "peak_bytes", "seconds_per_step", "disk_bytes")


# --- utilidades ----------------------------------------------------------------------------------------


def _probe_prompts():
    from ..data import prompt_messages

    return [prompt_messages(p) for p in PROBE_PHRASES]


def _model_param(model):
    return next(model.parameters())


def _tolerance(model) -> float:
    import torch

    return (
        LOGIT_TOLERANCE_FP32 if _model_param(model).dtype == torch.float32 else LOGIT_TOLERANCE_LOW_PRECISION
    )


def _fresh_base(like):
    """Un modelo base recién cargado, en el dispositivo y la precisión de ``like``."""
    from ..model import load_base_model

    param = _model_param(like)
    model, _ = load_base_model(device=param.device.type, dtype=param.dtype)
    return model


def _tokenizer_of(trainer_or_none):
    tok = getattr(trainer_or_none, "processing_class", None)
    if tok is not None:
        return tok
    from ..model import load_tokenizer

    return load_tokenizer()


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _folder(path, what: str) -> Path:
    expect(
        path is not None, f"Falta la carpeta {what}: pasa la ruta donde lo guardaste con `save_pretrained`."
    )
    folder = Path(path)
    expect(
        folder.is_dir(),
        f"La carpeta {what} `{folder}` no existe: ¿ejecutaste la celda que la guarda "
        "con `save_pretrained(...)`?",
    )
    return folder


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
        elif not any(
            isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) or hasattr(m, "base_layer") for m in found
        ):
            blocks.append(target)
    return missing, blocks


# --- 🐢 LoraConfig -------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"config": handover.PeftConfig()},
    hint='`LoraConfig(r=..., lora_alpha=..., lora_dropout=..., target_modules=..., bias="none", '
    'task_type="CAUSAL_LM")`. Los nombres de los módulos los ves con '
    "`print(model)`: en SmolLM2 son q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj y "
    'down_proj (o "all-linear" para todas las capas lineales).',
)
def lora_config(config, model=None):
    """Comprueba la ``LoraConfig``: tarea, rango, escala, dropout y que los módulos existan en ``model``."""
    from peft import LoraConfig

    expect(config is not None, "Todavía no hay configuración: crea `peft_config = LoraConfig(...)`.")
    expect(
        isinstance(config, LoraConfig),
        f"Esperaba una `LoraConfig` de PEFT y recibí un {type(config).__name__}: "
        "usa `from peft import LoraConfig` y `peft_config = LoraConfig(...)`.",
    )
    expect(
        config.task_type == "CAUSAL_LM",
        f"`task_type` es {config.task_type!r}: nuestro modelo genera texto, así que usa "
        '`task_type="CAUSAL_LM"` (o `TaskType.CAUSAL_LM`).',
    )
    r = config.r
    expect(
        isinstance(r, int) and r >= 1,
        f"El rango `r={r!r}` no vale: tiene que ser un entero positivo. Prueba con r=8.",
    )
    expect(
        r <= 256,
        f"`r={r}` es enorme para un modelo de 576 dimensiones: LoRA funciona con rangos bajos; "
        "prueba entre 4 y 32.",
    )
    expect(
        _number(config.lora_alpha) and config.lora_alpha > 0,
        f"`lora_alpha={config.lora_alpha!r}`: la escala del cambio es lora_alpha / r, así que con 0 o menos "
        "el adaptador no hace nada (o va al revés). Un valor típico es 2·r, p. ej. 16.",
    )
    expect(
        _number(config.lora_dropout) and 0 <= config.lora_dropout < 0.5,
        f"`lora_dropout={config.lora_dropout!r}`: es una probabilidad; usa algo entre 0 y 0.1.",
    )
    expect(
        config.bias in ("none", "lora_only", "all"),
        f'`bias={config.bias!r}` no existe: usa "none" (no entrenar sesgos).',
    )
    expect(
        config.target_modules,
        "Faltan `target_modules`: di qué capas reciben adaptador, p. ej. "
        '["q_proj", "v_proj"] o "all-linear".',
    )
    if model is not None:
        missing, blocks = _target_report(config, model)
        expect(
            not missing,
            f"Estos `target_modules` no existen en el modelo: {', '.join(map(repr, missing))}. Mira los "
            "nombres con `print(model)`: en SmolLM2 son q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj "
            "y down_proj.",
        )
        expect(
            not blocks,
            f"{', '.join(map(repr, blocks))}: son bloques que contienen otras capas, no capas lineales. LoRA "
            "se pone en las capas lineales de dentro: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
            "down_proj.",
        )
    targets = (
        config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
    )
    return (
        f"LoraConfig correcta: r={r}, lora_alpha={config.lora_alpha} (escala {config.lora_alpha / r:g}), "
        f"dropout {config.lora_dropout}, módulos {targets}."
    )


# --- 🐢 SFTTrainer -------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"trainer": handover.Trainer()},
    hint='`trainer = SFTTrainer(model=model, args=SFTConfig(...), train_dataset=splits["train"], '
    "eval_dataset=..., processing_class=tokenizer, peft_config=peft_config)`, luego "
    '`trainer.train()` y `after = evaluate(trainer.model, tokenizer, splits["test"])`. '
    "Si no llegas al 90 %, sube MAIN_STEPS o la tasa de aprendizaje.",
)
def sft_trainer(trainer, after=None):
    """Comprueba que el ``SFTTrainer`` entrenó un adaptador LoRA y que ``after`` (su evaluación) da ≥ 90 %."""
    from trl import SFTTrainer

    from ..data import prompt_messages
    from ..evaluation import generate

    expect(
        trainer is not None,
        "Todavía no hay trainer: crea `trainer = SFTTrainer(...)` y llama a `trainer.train()`.",
    )
    expect(
        isinstance(trainer, SFTTrainer),
        f"Esperaba un `SFTTrainer` de TRL y recibí un {type(trainer).__name__}.",
    )
    expect(
        is_peft_model(trainer.model) and lora_layers(trainer.model),
        "El modelo del trainer no tiene adaptadores LoRA: pasa `peft_config=peft_config` a `SFTTrainer` "
        "(así entrena solo el adaptador, no los 135 millones de pesos).",
    )
    expect(trainer.state.global_step > 0, "El trainer todavía no ha entrenado: llama a `trainer.train()`.")
    expect(
        after is not None and hasattr(after, "accuracy") and hasattr(after, "total"),
        "Pasa también la evaluación después de entrenar: "
        '`checks.sft_trainer(trainer, evaluate(trainer.model, tokenizer, splits["test"]))`.',
    )
    expect(
        after.total >= MIN_TEST_ROWS,
        f"Evaluaste {after.total} ejemplos: usa el conjunto de prueba completo (≥ {MIN_TEST_ROWS}), "
        "que el modelo no ha visto al entrenar.",
    )
    expect(
        after.accuracy >= MIN_ACCURACY,
        f"Exactitud {after.accuracy:.1%} ({after.correct}/{after.total}): el objetivo es ≥ "
        f"{MIN_ACCURACY:.0%}. Entrena más pasos (MAIN_STEPS) o sube la tasa de aprendizaje "
        f"(ahora {trainer.args.learning_rate:g}).",
    )
    # Las respuestas de `after` tienen que ser las de este modelo (unas pocas, para que sea rápido).
    n = min(4, after.total)
    again = generate(trainer.model, _tokenizer_of(trainer), [prompt_messages(p) for p in after.inputs[:n]])
    same = sum(a == b for a, b in zip(again, after.predictions[:n]))
    expect(
        same >= n - 1,
        "Las respuestas de la evaluación no son las de `trainer.model`: evalúa el modelo del trainer "
        "después de `trainer.train()`.",
    )
    return (
        f"El adaptador entrenó {trainer.state.global_step} pasos y acierta {after.correct}/{after.total} "
        f"({after.accuracy:.1%}) fechas que no había visto."
    )


# --- 🐕 Barrido de rangos ------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"results": handover.Value()},
    hint="Para cada rango de RANKS entrena con `run(...)` (el mismo presupuesto para todos) y "
    "guarda su resultado: `sweep[r] = run(...)`. Cada resultado necesita 'trainable', "
    "'eval_loss' y 'accuracy'.",
)
def rank_sweep(results):
    """Comprueba el barrido: ≥ 3 rangos con el mismo presupuesto, y resultados coherentes."""
    expect(results is not None, "Todavía no hay resultados: rellena `sweep = {rango: resultado}`.")
    expect(
        isinstance(results, dict),
        f"Esperaba un diccionario {{rango: resultado}} y recibí un {type(results).__name__}.",
    )
    ranks = sorted(results)
    expect(
        len(ranks) >= 3, f"Solo hay {len(ranks)} rango(s) ({ranks}): compara al menos tres, p. ej. 2, 8 y 32."
    )
    expect(
        all(isinstance(r, int) and r > 0 for r in ranks),
        f"Las claves deben ser los rangos (enteros): {ranks}.",
    )
    for r in ranks:
        entry = results[r]
        expect(isinstance(entry, dict), f"El resultado del rango {r} no es un diccionario.")
        for key in RESULT_KEYS:
            expect(
                _number(entry.get(key)),
                f"Al rango {r} le falta '{key}' (o no es un número): guarda lo que devuelve la ejecución.",
            )
        expect(0 <= entry["accuracy"] <= 1, f"La exactitud del rango {r} debe estar entre 0 y 1.")
    per_rank = [results[r]["trainable"] / r for r in ranks]
    counts = ", ".join(f"r={r}: {results[r]['trainable']:,}" for r in ranks)
    expect(
        max(per_rank) <= 1.01 * min(per_rank),
        f"Los parámetros entrenables no crecen en proporción al rango ({counts}): con los mismos "
        "`target_modules` el adaptador tiene r·(d+k) parámetros por capa. ¿Anotaste los parámetros "
        "totales en vez de los entrenables, o cambiaste de módulos entre rangos?",
    )
    budgets = {r: results[r].get("steps") for r in ranks}
    expect(
        len(set(budgets.values())) == 1,
        f"No todos los rangos tienen el mismo presupuesto de pasos ({budgets}): así la comparación no es "
        "justa.",
    )
    best = min(ranks, key=lambda r: results[r]["eval_loss"])
    return (
        f"{len(ranks)} rangos con el mismo presupuesto. Menor pérdida de validación: r={best} "
        f"({results[best]['eval_loss']:.3f})."
    )


# --- 🦁 Ajuste fino completo ---------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"full": handover.Value(), "lora": handover.Value()},
    hint="El mismo `SFTTrainer` sin `peft_config` entrena todos los pesos. Mide como en LoRA: "
    "'trainable', 'accuracy', 'peak_bytes' (con `peak_memory()`), 'seconds_per_step' y "
    "'disk_bytes' (lo que ocupa la carpeta de `save_pretrained`).",
)
def full_finetuning(full, lora):
    """Comprueba la comparación: ``full`` y ``lora`` medidos, con el mismo presupuesto y números coherentes."""
    for name, entry in (("full", full), ("lora", lora)):
        expect(entry is not None, f"Falta el resultado `{name}`: ejecuta la celda que lo mide.")
        expect(isinstance(entry, dict), f"`{name}` debería ser un diccionario de medidas.")
        for key in FULL_KEYS:
            expect(
                _number(entry.get(key)) and entry[key] >= 0,
                f"A `{name}` le falta '{key}' (o no es un número).",
            )
        expect(
            entry["trainable"] > 0 and entry["disk_bytes"] > 0 and entry["seconds_per_step"] > 0,
            f"En `{name}`, 'trainable', 'disk_bytes' y 'seconds_per_step' deben ser mayores que 0.",
        )
    expect(
        full.get("steps") == lora.get("steps"),
        f"Presupuestos distintos: {full.get('steps')} pasos en el ajuste completo y {lora.get('steps')} con "
        "LoRA. Compara con el mismo número de pasos.",
    )
    expect(
        full["trainable"] >= 100e6,
        f"El ajuste completo entrena solo {full['trainable']:,} parámetros: sin `peft_config` deberían ser "
        "todos (unos 135 millones). ¿Le pasaste `peft_config` también a este SFTTrainer?",
    )
    expect(
        lora["trainable"] < 0.1 * full["trainable"],
        f"LoRA entrena {lora['trainable']:,} parámetros, casi tantos como el ajuste completo: ¿es el "
        "resultado de la ejecución con adaptador?",
    )
    expect(
        full["disk_bytes"] > 10 * lora["disk_bytes"],
        f"El modelo completo ocupa {full['disk_bytes'] / 2**20:.1f} MiB y el adaptador "
        f"{lora['disk_bytes'] / 2**20:.1f} MiB: ¿guardaste el modelo completo con `save_pretrained` y "
        "mediste "
        "el archivo del adaptador (adapter_model.safetensors)?",
    )
    return (
        f"El ajuste completo entrena {full['trainable'] / lora['trainable']:.0f}× más parámetros y guarda "
        f"{full['disk_bytes'] / lora['disk_bytes']:.0f}× más bytes; cada paso tarda "
        f"{full['seconds_per_step'] / lora['seconds_per_step']:.1f}× lo de LoRA."
    )


# --- 🦁 OLoRA ------------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"trainer": handover.Trainer(), "converted_dir": handover.Folder()},
    hint='`LoraConfig(..., init_lora_weights="olora")`. Guarda el adaptador inicial antes de '
    "entrenar (`trainer.model.save_pretrained(init_dir)`) y, al acabar, "
    "`trainer.model.save_pretrained(converted_dir, "
    "path_initial_model_for_weight_conversion=init_dir)`.",
)
def olora(trainer, converted_dir):
    """Comprueba OLoRA: entrenado con ``init_lora_weights="olora"`` y convertido para el modelo original."""
    from peft import LoraConfig, PeftModel

    from ..evaluation import generate, max_logit_diff

    expect(trainer is not None, 'Todavía no hay trainer de OLoRA: entrena con `init_lora_weights="olora"`.')
    model = getattr(trainer, "model", None)
    expect(is_peft_model(model), "El modelo del trainer no tiene adaptador: pasa `peft_config` al SFTTrainer.")
    init = model.peft_config[model.active_adapter].init_lora_weights
    expect(
        init == "olora",
        f"Este adaptador empezó con `init_lora_weights={init!r}`, no con OLoRA: pon "
        '`init_lora_weights="olora"` en su LoraConfig.',
    )
    expect(
        trainer.state.global_step > 0,
        "El trainer de OLoRA todavía no ha entrenado: llama a `trainer.train()`.",
    )
    folder = _folder(converted_dir, "del adaptador convertido")
    expect(
        (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file(),
        f"En `{folder}` no hay un adaptador (adapter_config.json + adapter_model.safetensors).",
    )
    saved = LoraConfig.from_pretrained(str(folder))
    trained_r = model.peft_config[model.active_adapter].r
    expect(
        saved.init_lora_weights != "olora",
        "Guardaste el adaptador sin convertir: así solo funciona sobre los pesos base que OLoRA modificó. "
        "Guárdalo con `save_pretrained(carpeta, path_initial_model_for_weight_conversion=init_dir)`.",
    )
    expect(
        saved.r == 2 * trained_r,
        f"El adaptador guardado tiene r={saved.r}; la conversión de PEFT lo deja en 2·r = {2 * trained_r}. "
        "¿Es la carpeta del adaptador inicial? Pasa la carpeta donde guardaste con "
        "`path_initial_model_for_weight_conversion`.",
    )
    fresh = PeftModel.from_pretrained(_fresh_base(model), str(folder))
    tok, prompts = _tokenizer_of(trainer), _probe_prompts()
    diff = max_logit_diff(fresh, model, tok, prompts)
    same = generate(fresh, tok, prompts) == generate(model, tok, prompts)
    expect(
        diff <= _tolerance(model) and same,
        "El adaptador convertido, sobre el modelo base original, no calcula lo mismo que el modelo entrenado "
        f"(max |Δlogits| = {diff:.3g}). Guarda el adaptador inicial ANTES de entrenar y no lo sobrescribas.",
    )
    return (
        f"OLoRA convertido: sobre un modelo base recién cargado da las mismas salidas que el entrenado "
        f"(max |Δlogits| = {diff:.1e}); su rango guardado es {saved.r} = 2·{trained_r}."
    )


# --- 🐕 Fusionar y guardar -----------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"merged": handover.Model(), "adapter_model": handover.Trainer(), "merged_dir": handover.Folder()},
    hint="`merge_and_unload()` cambia el modelo en su sitio: hazlo sobre una copia "
    "(`PeftModel.from_pretrained(modelo_base_nuevo, adapter_dir)`) y compara con el modelo "
    "del trainer. Guarda con `merged.save_pretrained(merged_dir)` y "
    "`tokenizer.save_pretrained(merged_dir)`.",
)
def merge_and_save(merged, adapter_model, merged_dir):
    """Comprueba la fusión: sin capas LoRA, igual que el adaptador, y guardada en una carpeta recargable.

    ``adapter_model`` es el modelo con el adaptador sin fusionar, o el `trainer` que lo entrenó.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from ..evaluation import generate, max_logit_diff
    from ..model import load_tokenizer

    expect(merged is not None, "Todavía no hay modelo fusionado: `merged = peft_model.merge_and_unload()`.")
    expect(
        not is_peft_model(merged) and not lora_layers(merged),
        "El modelo «fusionado» aún tiene capas LoRA: usa lo que devuelve `merge_and_unload()`.",
    )
    if isinstance(adapter_model, Trainer):
        adapter_model = adapter_model.model
    expect(
        adapter_model is not None and is_peft_model(adapter_model) and lora_layers(adapter_model),
        "El segundo argumento debe ser el modelo CON el adaptador, sin fusionar (`trainer` o `trainer.model`). "
        "Si ya no tiene capas LoRA, es que fusionaste ese mismo objeto: `merge_and_unload()` lo cambia en su "
        "sitio; fusiona una copia cargada con `PeftModel.from_pretrained`.",
    )
    tok, prompts, tol = load_tokenizer(), _probe_prompts(), _tolerance(adapter_model)
    reference = generate(adapter_model, tok, prompts)
    diff = max_logit_diff(merged, adapter_model, tok, prompts)
    expect(
        diff <= tol and generate(merged, tok, prompts) == reference,
        f"El modelo fusionado no calcula lo mismo que el adaptador (max |Δlogits| = {diff:.3g}): ¿usaste "
        "`unload()` (que quita el adaptador sin sumarlo) en vez de `merge_and_unload()`, o fusionaste otro "
        "adaptador?",
    )
    folder = _folder(merged_dir, "del modelo fusionado")
    expect(
        (folder / "config.json").is_file() and list(folder.glob("*.safetensors")),
        f"En `{folder}` no hay un modelo guardado (config.json + *.safetensors): "
        "`merged.save_pretrained(...)`.",
    )
    expect(
        (folder / "tokenizer_config.json").is_file(),
        f"En `{folder}` falta el tokenizador: `tokenizer.save_pretrained(...)` en la misma carpeta, para que "
        "se pueda cargar sin el modelo base.",
    )
    param = _model_param(adapter_model)
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=param.dtype).to(param.device)
    reloaded_tok = AutoTokenizer.from_pretrained(str(folder))
    expect(
        reloaded_tok.chat_template, "El tokenizador guardado no tiene plantilla de chat: guarda el del curso."
    )
    diff_disk = max_logit_diff(reloaded, adapter_model, tok, prompts)
    expect(
        diff_disk <= tol and generate(reloaded, reloaded_tok, prompts) == reference,
        f"El modelo recargado de `{folder}` no calcula lo mismo que el adaptador (max |Δlogits| = "
        f"{diff_disk:.3g}): ¿guardaste el modelo fusionado (y no el base)?",
    )
    return (
        f"Fusionado y guardado: max |Δlogits| = {diff:.1e} en memoria y {diff_disk:.1e} tras recargar de "
        "disco, con las mismas respuestas."
    )


# --- 🐕 Extra: pipeline --------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"pipe": handover.Pipeline()},
    hint="`model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir)` y "
    '`pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)`; pásale una '
    "lista de mensajes de chat.",
)
def pipeline_inference(pipe):
    """Comprueba un ``pipeline("text-generation")`` con el adaptador: responde bien a fechas de prueba."""
    from transformers import Pipeline

    from ..data import answer, make_splits

    expect(
        pipe is not None,
        'Todavía no hay pipeline: `pipe = pipeline("text-generation", model=..., tokenizer=...)`.',
    )
    expect(
        isinstance(pipe, Pipeline), f"Esperaba un pipeline de transformers y recibí un {type(pipe).__name__}."
    )
    expect(
        getattr(pipe, "task", "") == "text-generation",
        f'El pipeline es de la tarea {getattr(pipe, "task", "?")!r}: crea uno de "text-generation".',
    )
    rows = list(make_splits("iso")["test"].select(range(PIPELINE_ROWS)))
    wrong = []
    for row in rows:
        out = pipe(row["prompt"], max_new_tokens=16, do_sample=False, return_full_text=False)
        text = out[0]["generated_text"]
        text = (text[-1]["content"] if isinstance(text, list) else text).strip()
        if text != answer(row):
            wrong.append(f"«{row['prompt'][-1]['content']}» → {text!r} (esperaba {answer(row)!r})")
    expect(
        len(rows) - len(wrong) >= PIPELINE_MIN_RIGHT,
        f"El pipeline falla {len(wrong)} de {len(rows)} fechas: {'; '.join(wrong[:2])}. ¿Tiene el adaptador "
        "entrenado cargado (AutoPeftModelForCausalLM o PeftModel.from_pretrained)?",
    )
    right = len(rows) - len(wrong)
    return f"El pipeline con el adaptador responde bien {right} de {len(rows)} fechas de prueba."
