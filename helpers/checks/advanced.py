"""Comprobaciones del cuaderno ``lora_advanced``: ``from helpers.checks import advanced as checks``.

``checks.mixed_batch(model, mixed_prompts, mixed_names, mixed_answers)``,
``checks.cat_combination(model, "iso_mas_us", cat_error)``, ``checks.hotswap(swap_model)`` y
``checks.dpo_trainer(dpo_trainer)``. Cada una mide el modelo que recibe: vuelve a generar, compara ΔW
con los adaptadores publicados de ``adapters/`` o puntúa pares de preferencias. Nunca reentrena.
"""

from __future__ import annotations

import math

from ..advanced import (
    add_deltas,
    answer_format,
    generate_mixed,
    implicit_margins,
    lora_deltas,
    preference_pairs,
    relative_difference,
)
from ..build_adapters import ADAPTER_FORMATS
from ..numbers import decimal
from . import handover
from .adapters import FORMAT_NAMES, _shipped_scaling, _shipped_weights, _which_shipped
from .core import exercise, expect
from .models import is_peft_model, lora_layers

NOTEBOOK = "lora_advanced"
BASE = "__base__"
CAT_TOLERANCE = 1e-4  # ‖ΔW_cat − (ΔW_iso + ΔW_us)‖ / ‖ΔW_iso + ΔW_us‖ en float32
PROBE_ROWS = 4  # fechas con las que se pone a prueba un modelo
DPO_ROWS = 8  # pares con los que se mide el margen de DPO
DPO_BETA = 0.1  # β con el que se mide el margen (el de DPOConfig por defecto)
FORMAT_NAMES = {**FORMAT_NAMES, "otro": "otro (ninguno de los tres)"}


def _type_name(obj) -> str:
    return type(obj).__name__


def _expect_peft(model, name: str, advice: str) -> None:
    import torch

    expect(model is not None, f"`{name}` es None. {advice}")
    expect(isinstance(model, torch.nn.Module), f"`{name}` es un {_type_name(model)}, no un modelo. {advice}")
    expect(is_peft_model(model), f"`{name}` es un {_type_name(model)} sin adaptadores (no es un PeftModel). {advice}")
    expect(lora_layers(model), f"`{name}` no tiene capas LoRA: ¿las quitaste con `unload()`? {advice}")


def _tokenizer():
    from ..model import load_tokenizer

    return load_tokenizer()


def _shipped_deltas(fmt: str) -> dict:
    """ΔW = escala · B · A de cada capa del adaptador publicado ``adapters/<fmt>``."""
    weights, scaling = _shipped_weights(fmt), _shipped_scaling(fmt)
    deltas = {}
    for key, a in weights.items():
        if key.endswith(".lora_A.weight"):
            stem = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = weights[key.replace("lora_A", "lora_B")]
            deltas[stem] = (b.float() @ a.float()) * scaling
    return deltas


def _is_text_list(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value)


def _single_answers(model, tokenizer, prompts, names) -> list[str]:
    """Lo que responde cada fila con SOLO su adaptador activo (o con los adaptadores apagados)."""
    from ..evaluation import generate

    answers = [None] * len(prompts)
    previous = model.active_adapter
    for name in dict.fromkeys(names):
        rows = [i for i, n in enumerate(names) if n == name]
        group = [prompts[i] for i in rows]
        if name == BASE:
            with model.disable_adapter():
                out = generate(model, tokenizer, group)
        else:
            model.set_adapter(name)
            out = generate(model, tokenizer, group)
        for i, text in zip(rows, out):
            answers[i] = text
    model.set_adapter(previous)
    return answers


# ---------------------------------------------------------------- 🐢 un lote, varios adaptadores
@exercise(NOTEBOOK, handover={"model": handover.Model(), "prompts": handover.Value(), "names": handover.Value(),
                              "answers": handover.Value()}, hint=(
    "Prepara el lote con `batch = encode_prompts(tokenizer, mixed_prompts)` y genera UNA vez: "
    "`out = model.generate(**batch, adapter_names=mixed_names, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)`; "
    "después `mixed_answers = decode_new(tokenizer, out, batch)`. `mixed_names` tiene un nombre por fila "
    "(\"iso\", \"us\", \"en\" o \"__base__\" para el modelo sin adaptador)."
))
def mixed_batch(model, prompts, names, answers, examples=None):
    """Un solo ``generate(..., adapter_names=names)``: cada fila responde con su adaptador."""
    from ..data import Examples, answer

    _expect_peft(model, "model", "Carga los tres adaptadores en un PeftModel (`PeftModel.from_pretrained` y "
                                 "`load_adapter`).")
    missing = [fmt for fmt in ADAPTER_FORMATS if fmt not in model.peft_config]
    expect(not missing, f"Faltan los adaptadores {', '.join(map(repr, missing))} en el modelo: cárgalos con "
                        "`model.load_adapter(ADAPTER_DIRS[nombre], adapter_name=nombre)`.")
    for fmt in ADAPTER_FORMATS:
        expect(_which_shipped(model, fmt) == fmt, f"El adaptador '{fmt}' del modelo no es el de `adapters/{fmt}`: "
                                                  "vuelve a cargarlo con su carpeta.")
    expect(isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names) and names,
           f"`mixed_names` debe ser una lista de nombres (texto), uno por fila; es un {_type_name(names)}.")
    unknown = sorted({n for n in names if n != BASE and n not in model.peft_config})
    expect(not unknown, f"`mixed_names` tiene nombres que no son adaptadores del modelo: {unknown}. Para una fila "
                        f"sin adaptador, el nombre es \"{BASE}\".")
    absent = [n for n in (*ADAPTER_FORMATS, BASE) if n not in names]
    expect(not absent, f"En `mixed_names` faltan {', '.join(map(repr, absent))}: el lote debe mezclar los tres "
                       f"adaptadores y el modelo base (\"{BASE}\").")
    expect(isinstance(prompts, (list, tuple)) and len(prompts) == len(names),
           f"Hacen falta tantos prompts como nombres ({len(names)}): un nombre por fila del lote.")
    expect(_is_text_list(answers), "`mixed_answers` debe ser la lista de respuestas (texto) que sale de "
                                   "`decode_new(tokenizer, out, batch)`.")
    expect(len(answers) == len(names), f"Hay {len(answers)} respuestas para {len(names)} filas: genera con todo "
                                       "el lote en una sola llamada.")
    tokenizer = _tokenizer()
    alone = _single_answers(model, tokenizer, list(prompts), list(names))
    wrong = [i for i, (a, b) in enumerate(zip(answers, alone)) if a != b]
    if wrong:
        i = wrong[0]
        active_only = all(answer_format(a) == answer_format(answers[0]) for a in answers)
        expect(not active_only, "Todas las filas responden en el mismo formato: generaste solo con el adaptador "
                                "activo. Pasa `adapter_names=mixed_names` a `model.generate`.")
        expect(False, f"La fila {i + 1} ('{names[i]}') respondió {answers[i]!r}, pero con solo ese adaptador "
                      f"responde {alone[i]!r}. ¿Generaste con otros nombres u otro orden? Usa `mixed_names` tal cual.")
    # el modelo, puesto a prueba con otras fechas en un solo lote mezclado
    examples = examples or Examples("test")
    cycle = [*ADAPTER_FORMATS, BASE]
    probe_names = [cycle[i % len(cycle)] for i in range(PROBE_ROWS * len(cycle))]
    rows = {fmt: examples.rows(fmt, len(probe_names)) for fmt in ADAPTER_FORMATS}
    probe = generate_mixed(model, tokenizer, [r["prompt"] for r in rows["iso"]], probe_names)
    right = sum(out == answer(rows[name][i]) for i, (out, name) in enumerate(zip(probe, probe_names))
                if name != BASE)
    base_in_format = sum(answer_format(out) != "otro" for out, name in zip(probe, probe_names) if name == BASE)
    needed = math.ceil(0.75 * PROBE_ROWS * len(ADAPTER_FORMATS))
    expect(right >= needed, f"Con otras fechas, cada adaptador en su fila acierta solo {right}/"
                            f"{PROBE_ROWS * len(ADAPTER_FORMATS)}: ¿son los adaptadores de `adapters/`?")
    return (f"Un solo `generate` respondió {len(names)} filas, cada una como su adaptador por separado. Con otras "
            f"{len(probe_names)} fechas: {right}/{PROBE_ROWS * len(ADAPTER_FORMATS)} aciertos en su formato, y "
            f"las filas \"{BASE}\" responden como el modelo base ({base_in_format} en algún formato).")


# ---------------------------------------------------------------- 🐕 combinar con cat
@exercise(NOTEBOOK, handover={"model": handover.Model(), "name": handover.Value(), "error": handover.Value()}, hint=(
    "`model.add_weighted_adapter([\"iso\", \"us\"], [1.0, 1.0], \"iso_mas_us\", combination_type=\"cat\")` "
    "crea el adaptador combinado. Después mide `cat_error = relative_difference(lora_deltas(model, "
    "\"iso_mas_us\"), add_deltas(delta_iso, delta_us))`: con `cat` debe ser ~0."
))
def cat_combination(model, name, error=None):
    """El adaptador ``name`` = iso + us con ``cat``: su ΔW es exactamente ΔW_iso + ΔW_us."""
    _expect_peft(model, "model", "Pasa el PeftModel con los adaptadores iso y us cargados.")
    expect(isinstance(name, str), f"El nombre del adaptador combinado debe ser un texto; es un {_type_name(name)}.")
    expect(name in model.peft_config, f"El modelo no tiene ningún adaptador '{name}'. Créalo con "
                                      f"`model.add_weighted_adapter([\"iso\", \"us\"], [1.0, 1.0], \"{name}\", "
                                      "combination_type=\"cat\")`.")
    iso, us = _shipped_deltas("iso"), _shipped_deltas("us")
    deltas = lora_deltas(model, name)
    expect(set(deltas) == set(iso), f"El adaptador '{name}' no toca las mismas capas que iso y us "
                                    f"({len(deltas)} capas frente a {len(iso)}).")
    target = add_deltas(iso, us)
    measured = relative_difference(deltas, target)
    if measured > CAT_TOLERANCE:
        candidates = {
            "la media (pesos 0,5 y 0,5)": add_deltas(iso, us, weights=[0.5, 0.5]),
            "iso − us (peso negativo)": add_deltas(iso, us, weights=[1.0, -1.0]),
            "iso + en": add_deltas(iso, _shipped_deltas("en")),
            "us + en": add_deltas(us, _shipped_deltas("en")),
        }
        for label, other in candidates.items():
            expect(relative_difference(deltas, other) > CAT_TOLERANCE,
                   f"El ΔW de '{name}' es exactamente {label}, no iso + us: usa los adaptadores [\"iso\", \"us\"] "
                   "con pesos [1.0, 1.0].")
        rank = model.peft_config[name].r
        expect(rank == 2 * 8, f"'{name}' tiene rango {rank}: `linear` y `svd` dejan el rango en 8 y su ΔW no es la "
                              f"suma (error relativo {decimal(measured, 2)}; `linear` suma A y B por separado y "
                              "aparecen términos cruzados). Usa `combination_type=\"cat\"`, que concatena: rango 16.")
        expect(False, f"El ΔW de '{name}' no es ΔW_iso + ΔW_us (error relativo {measured:.2g}). Créalo con "
                      "`combination_type=\"cat\"` sobre los adaptadores recién cargados de `adapters/`.")
    expect(error is not None, "Falta tu medida `cat_error`: la diferencia relativa entre el ΔW de la combinación "
                              "y ΔW_iso + ΔW_us.")
    expect(isinstance(error, (int, float)) and not isinstance(error, bool) and math.isfinite(error),
           f"`cat_error` debe ser un número; es un {_type_name(error)}.")
    expect(error <= CAT_TOLERANCE, f"Mediste `cat_error` = {error:.3g}, pero el ΔW de '{name}' difiere de la suma "
                                   f"solo {measured:.1e}. ¿Comparaste con el adaptador correcto (`lora_deltas(model, "
                                   f"\"{name}\")`) y con `add_deltas(delta_iso, delta_us)`?")
    return (f"'{name}' (rango {model.peft_config[name].r}) suma exactamente los dos adaptadores: "
            f"‖ΔW − (ΔW_iso + ΔW_us)‖ / ‖ΔW_iso + ΔW_us‖ = {measured:.1e}.")


# ---------------------------------------------------------------- 🐕 cambio en caliente
@exercise(NOTEBOOK, handover={"model": handover.Model()}, hint=(
    "`hotswap_adapter(swap_model, ADAPTER_DIRS[\"us\"], adapter_name=\"default\")` (de `peft.utils.hotswap`) "
    "copia los pesos de `adapters/us` dentro del adaptador \"default\" que ya está cargado: no añade otro "
    "adaptador ni cambia su nombre."
))
def hotswap(model, examples=None):
    """El adaptador "default" (cargado con iso) lleva ahora los pesos de ``adapters/us``, en su sitio."""
    from ..data import Examples, answer
    from ..evaluation import generate

    _expect_peft(model, "swap_model", "Carga `adapters/iso` con `PeftModel.from_pretrained(base, ADAPTER_DIRS"
                                      "[\"iso\"])` y cambia sus pesos con `hotswap_adapter`.")
    names = list(model.peft_config)
    expect(len(names) == 1, f"`swap_model` tiene {len(names)} adaptadores ({', '.join(names)}): `load_adapter` "
                            "añade uno nuevo. El cambio en caliente reutiliza el que ya está: "
                            "`hotswap_adapter(swap_model, ADAPTER_DIRS[\"us\"], adapter_name=\"default\")`.")
    fmt = _which_shipped(model, names[0])
    expect(fmt != "iso", "El adaptador sigue teniendo los pesos de `adapters/iso`: todavía no cambiaste nada. "
                         "Llama a `hotswap_adapter(swap_model, ADAPTER_DIRS[\"us\"], adapter_name=\"default\")`.")
    expect(fmt is not None, "Los pesos del adaptador no son los de ningún adaptador de `adapters/`.")
    expect(fmt == "us", f"El adaptador tiene ahora los pesos de {FORMAT_NAMES[fmt]}; el ejercicio pide "
                        "`adapters/us`.")
    examples = examples or Examples("test")
    rows = examples.rows("us", PROBE_ROWS)
    out = generate(model, _tokenizer(), [r["prompt"] for r in rows])
    right = sum(o == answer(r) for o, r in zip(out, rows))
    expect(right >= PROBE_ROWS - 1, f"Tras el cambio, el modelo acierta solo {right}/{PROBE_ROWS} fechas en "
                                    "formato EE. UU.: ¿está activo el adaptador?")
    return (f"El adaptador '{names[0]}' lleva ahora los pesos de `adapters/us`, sin añadir otro: responde en "
            f"formato EE. UU. ({right}/{PROBE_ROWS} fechas nuevas).")


# ---------------------------------------------------------------- 🦁 DPO con la referencia desactivada
@exercise(NOTEBOOK, handover={"trainer": handover.Trainer()}, hint=(
    "`DPOTrainer(model=base_dpo, args=DPOConfig(..., **dpo_device_args(DEVICE)), train_dataset=pairs, "
    "processing_class=tokenizer, peft_config=LoraConfig(...))`, sin `ref_model`: con un adaptador, la "
    "referencia es el mismo modelo con el adaptador desactivado. Con la tasa por defecto (1e-6) no se ve "
    "nada en pocos pasos: usa `DPO_LR`."
))
def dpo_trainer(trainer, examples=None):
    """Un ``DPOTrainer`` con ``peft_config`` y sin ``ref_model``, entrenado: prefiere ISO a lo que decía el base."""
    from ..data import Examples
    from ..evaluation import generate

    model, state = getattr(trainer, "model", None), getattr(trainer, "state", None)
    expect(trainer is not None and model is not None and state is not None,
           f"`dpo_trainer` debe ser el `DPOTrainer` que entrenaste; es un {_type_name(trainer)}.")
    expect(getattr(trainer, "ref_model", None) is None,
           "Le pasaste un `ref_model`: es una segunda copia entera de los pesos. Con `peft_config` no hace falta: "
           "la referencia es el mismo modelo con el adaptador desactivado. Quita `ref_model=`.")
    history = list(getattr(state, "log_history", None) or [])
    margins = [entry["rewards/margins"] for entry in history if "rewards/margins" in entry]
    expect(margins, "El historial no tiene `rewards/margins`: ¿es un `DPOTrainer` (no un `SFTTrainer`) y lo "
                    "entrenaste con `dpo_trainer.train()`?")
    _expect_peft(model, "dpo_trainer.model", "Pasa `peft_config=LoraConfig(...)` al `DPOTrainer` y el modelo base "
                                             "(no un PeftModel) como `model`.")
    expect(state.global_step >= 1, "El entrenador no ha dado ningún paso: llama a `dpo_trainer.train()`.")
    examples = examples or Examples("test")
    rows = examples.rows("iso", DPO_ROWS)
    tokenizer = _tokenizer()
    with model.disable_adapter():
        said = generate(model, tokenizer, [r["prompt"] for r in rows])
    margins_now = implicit_margins(model, tokenizer, preference_pairs(rows, rejected=said), DPO_BETA)
    mean, won = float(margins_now.mean()), int((margins_now > 0).sum())
    expect(mean > -1e-3 or won > DPO_ROWS // 2,
           f"El modelo prefiere lo que decía el base a la respuesta ISO (margen medio {decimal(mean, 3)}): "
           "¿cambiaste `chosen` y `rejected` al construir los pares?")
    expect(mean > 0.05 and won >= DPO_ROWS - 1,
           f"Casi no cambió nada: margen medio {decimal(mean, 3)} con β={decimal(DPO_BETA, 1)} en {DPO_ROWS} "
           f"fechas nuevas ({won} a favor de ISO). Con la tasa por defecto de DPO (1e-6) unos pocos pasos no mueven el "
           "adaptador: usa `learning_rate=DPO_LR`.")
    trend = "subió" if margins[-1] > margins[0] else "no subió"
    return (f"DPO con LoRA y la referencia desactivada: en {DPO_ROWS} fechas nuevas el modelo prefiere la respuesta "
            f"ISO a la del modelo base en {won}/{DPO_ROWS} (margen medio {decimal(mean, 2)} con "
            f"β={decimal(DPO_BETA, 1)}); el margen registrado {trend} de {decimal(margins[0], 3)} a "
            f"{decimal(margins[-1], 3)} en {state.global_step} pasos.")


__all__ = ["cat_combination", "dpo_trainer", "hotswap", "mixed_batch"]
