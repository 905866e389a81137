"""Comprobaciones del cuaderno ``load_lora_adapter_example``: cargar, cambiar, descargar y fusionar adaptadores.

En el cuaderno: ``from helpers.checks import adapters as checks`` y después ``checks.load_adapter(model)``,
``checks.switch_adapters(mystery, answers_by_adapter, format_of)``, ``checks.unload_adapters(restored)`` y
``checks.merge_adapter(broken, diagnosis, adapter_model, merged, MERGED_DIR)``.

Las comprobaciones miran los objetos reales y miden lo que hacen: qué pesos LoRA hay dentro del modelo
(comparados con los de ``adapters/``), qué responde el modelo con cada adaptador (con las fechas de
``examples``: en la corrección, fechas que el cuaderno nunca vio), qué pesos quedan tras fusionar o
descargar, y qué se recarga de la carpeta guardada. Ningún número que escriba el alumno da puntos: lo que
cuenta lo recalcula la comprobación con los objetos.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from ..colleagues import colleague_draw, signature_nonce
from ..numbers import decimal, integer, scientific
from ..shipped import (
    ADAPTER_FORMATS,
    COLLEAGUES,
    LORA_ALPHA,
    LORA_R,
    MERGE_STORIES,
    MYSTERY_NAMES,
    adapter_dir,
    mystery_weights,
    variant_token,
)
from . import handover
from .core import exercise, expect
from .models import base_checkpoint, is_peft_model, lora_layers

NOTEBOOK = "load_lora_adapter_example"
FORMAT_NAMES = {"iso": "ISO (2021-03-05)", "us": "EE. UU. (03/05/2021)", "en": "inglés (March 5, 2021)"}
# max|Δlogits| aceptable entre fusionado y adaptador en float32. Medido: un fusionado correcto da 1e-4 en un
# proceso limpio y hasta 5,5e-3 en CPU con AVX-512 según la alineación de memoria (sgemm de MKL); el error
# real más pequeño medido (fusionar dos veces, otro adaptador, no fusionar) da ≥ 34. Margen: ×9 y ×680.
MAX_DIFF_FP32 = 5e-2
MAX_DIFF_HALF = 1.0  # en float16/bfloat16 el redondeo pesa más
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
SAMPLE_EVERY = 5  # capas que se miran al comparar pesos: una de cada cinco (q_proj y v_proj alternas)
# 🦁: una columna entera por adaptador (las N_MYSTERY = 24 fechas de test del cuaderno, que la comprobación
# regenera) y, para saber qué formato produce cada uno, esas respuestas regeneradas más MYSTERY_PROBE_ROWS fechas de
# `examples` (ocultas en la corrección). Medido al construirlos: los misteriosos aciertan 64-67 % en su formato
# (120 fechas de test; 58-71 % en las 24 del cuaderno) y ninguna en los otros (tests/test_adapters.py lo vigila):
# con 32 fechas, el suyo gana siempre (acertar menos de un cuarto, MYSTERY_MIN_SHARE, con p = 0,58 tiene
# probabilidad < 1e-4). En las 24 del cuaderno cada uno falla al menos 7, así que la clave de respuestas no pasa
# por su columna.
MYSTERY_MIN_ROWS = 24
MYSTERY_PROBE_ROWS = 8
MYSTERY_MIN_SHARE = 0.25
# Una respuesta de la columna puede cambiar al regenerar en otro proceso (ruido numérico en una fecha dudosa
# de un adaptador a medio entrenar); más de una no: la columna no salió de ese adaptador.
MYSTERY_MAX_MISMATCHES = 1
# 🐕: error relativo (frente a ‖ΔW_iso‖) por debajo del cual unos pesos "son" una historia de fusión. Una
# historia construida en float32 da ~1e-7; la más cercana de las otras, ≥ 0,5 (medido: tests).
STORY_TOLERANCE = 1e-2
SCALING = LORA_ALPHA / LORA_R
# Lo que cada historia suma a los pesos base: (adaptador, factor). None: ΔW de us o de en.
STORY_DELTAS = {"bien": ("iso", 1.0), "sin_fusionar": (None, 0.0), "dos_veces": ("iso", 2.0),
                "sin_escala": ("iso", 1 / SCALING)}
# Cómo se vería cada historia al medir W − W_base frente a ΔW del ISO (para explicar un diagnóstico errado)
STORY_LOOKS = {
    "bien": "W − W_base = ΔW: tamaño 1 y la misma dirección que ΔW",
    "sin_fusionar": "W = W_base: no cambió nada (tamaño 0)",
    "dos_veces": "W − W_base = 2·ΔW: tamaño 2, la misma dirección",
    "sin_escala": f"W − W_base = B·A = ΔW / {decimal(SCALING, 0)} (lora_alpha / r = {LORA_ALPHA}/{LORA_R}): tamaño "
                  f"{decimal(1 / SCALING, 1)}, la misma dirección",
    "otro_adaptador": "W − W_base es el ΔW de otro adaptador: apenas se parece a ΔW del ISO (coseno ≈ 0,2)",
}


# ---------------------------------------------------------------- utilidades
def _type_name(obj) -> str:
    if isinstance(obj, handover.Unexpected):  # en la corrección: lo entregado no se pudo cargar como se pide
        return f"objeto que no se puede usar ({obj.description})"
    return type(obj).__name__


def _is_torch_model(obj) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


@functools.cache
def _shipped_weights(fmt: str) -> dict:
    """Pesos LoRA del adaptador publicado ``adapters/<fmt>`` (claves como las guarda PEFT)."""
    from safetensors.torch import load_file

    return load_file(adapter_dir(fmt) / "adapter_model.safetensors")


def _mystery_weights(name: str) -> dict:
    """Pesos LoRA que lleva el adaptador sin etiqueta ``name`` en la variante de esta ejecución."""
    return _variant_mystery_weights(name, variant_token())


@functools.cache
def _variant_mystery_weights(name: str, token: str | None) -> dict:
    return mystery_weights(name, token)


@functools.cache
def _shipped_scaling(fmt: str) -> float:
    config = json.loads((adapter_dir(fmt) / "adapter_config.json").read_text())
    return config["lora_alpha"] / config["r"]


def _same_tensors(state: dict, reference: dict) -> bool:
    import torch

    if set(state) != set(reference):
        return False
    return all(state[k].shape == reference[k].shape
               and torch.allclose(state[k].detach().float().cpu(), reference[k].float(), atol=1e-6, rtol=1e-4)
               for k in reference)


def _loaded_adapter_state(model, name: str) -> dict:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)


def _which_shipped(model, name: str) -> str | None:
    """Qué adaptador de ``adapters/`` es el adaptador ``name`` del modelo (o None si ninguno)."""
    state = _loaded_adapter_state(model, name)
    return next((fmt for fmt in ADAPTER_FORMATS if _same_tensors(state, _shipped_weights(fmt))), None)


def _which_mystery(model, name: str) -> str | None:
    """Qué nombre de ``MYSTERY_DIRS`` (en esta variante) tiene los pesos del adaptador ``name`` (o None)."""
    state = _loaded_adapter_state(model, name)
    return next((m for m in MYSTERY_NAMES if _same_tensors(state, _mystery_weights(m))), None)


def _lora_b_is_zero(model, name: str) -> bool:
    state = _loaded_adapter_state(model, name)
    b = [t for k, t in state.items() if "lora_B" in k]
    return bool(b) and all(float(t.abs().max()) == 0.0 for t in b)


def _target_keys(fmt: str = "iso", every: int = 1) -> list[str]:
    """Nombres de los pesos de las capas que toca el adaptador, como en el modelo sin envolver.

    ``every``: uno de cada tantos (basta una muestra de capas para saber qué se fusionó).
    """
    prefix, suffix = "base_model.model.", ".lora_A.weight"
    keys = sorted(k[len(prefix):-len(suffix)] + ".weight" for k in _shipped_weights(fmt) if k.endswith(suffix))
    return keys[::every]


@functools.cache
def _lora_delta(fmt: str, key: str):
    """ΔW = escala · B·A del adaptador ``fmt`` para el peso ``key`` (p. ej. model.layers.0.self_attn.q_proj.weight)."""
    weights = _shipped_weights(fmt)
    stem = "base_model.model." + key[: -len(".weight")]
    a, b = weights[f"{stem}.lora_A.weight"].float(), weights[f"{stem}.lora_B.weight"].float()
    return (b @ a) * _shipped_scaling(fmt)


def _read_tensor(path: str, key: str):
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        return f.get_tensor(key)


@functools.cache
def _base_weight(key: str):
    """Un peso del modelo base tal como está en disco (None si no se puede leer)."""
    checkpoint = base_checkpoint()
    if not checkpoint or key not in checkpoint:
        return None
    return _read_tensor(checkpoint[key], key).float()


def _plain_name(name: str) -> str:
    """Nombre de un parámetro como en el modelo sin envolver (sin ``base_model.model.`` ni ``base_layer``)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _model_weights(model, keys: list[str]) -> dict:
    """Los pesos ``keys`` de ``model`` (de un PeftModel, los del modelo base que lleva dentro)."""
    params = {_plain_name(name): p for name, p in model.named_parameters()}
    missing = [k for k in keys if k not in params]
    expect(not missing, f"No encuentro en el modelo las capas que toca el adaptador (p. ej. {missing[:1]}): "
                        "¿es el modelo base del curso?")
    return {k: params[k].detach().float().cpu() for k in keys}


def _relative_error(weights: dict, fmt: str | None, dtype=None, factor: float = 1.0) -> float | None:
    """||W − (W_base + factor·ΔW_fmt)|| / ||ΔW_iso||: ~0 si ``weights`` son eso (``fmt`` None: sin ΔW).

    ``dtype``: la precisión del modelo; el esperado se redondea igual que al fusionar en ella.
    """
    num, den = 0.0, 0.0
    for key, w in weights.items():
        base = _base_weight(key)
        if base is None:
            return None
        if dtype is not None:
            base = base.to(dtype).float()
        expected = base + factor * _lora_delta(fmt, key) if fmt and factor else base
        if dtype is not None:
            expected = expected.to(dtype).float()
        num += float((w - expected).pow(2).sum())
        den += float(_lora_delta("iso", key).pow(2).sum())
    return math.sqrt(num / den)


def _story_errors(weights: dict, dtype=None) -> dict[str, float] | None:
    """{historia de fusión: error relativo} de unos pesos; None si no se pueden leer los del modelo base."""
    errors = {story: _relative_error(weights, fmt, dtype, factor) for story, (fmt, factor) in STORY_DELTAS.items()}
    others = [_relative_error(weights, fmt, dtype) for fmt in ADAPTER_FORMATS if fmt != "iso"]
    if None in others or None in errors.values():
        return None
    return {**errors, "otro_adaptador": min(others)}


def _story(weights: dict, dtype=None) -> tuple[str | None, dict | None]:
    """(la historia de fusión que son estos pesos o None, los errores de todas)."""
    errors = _story_errors(weights, dtype)
    if errors is None:
        return None, None
    best = min(errors, key=errors.get)
    return (best if errors[best] < STORY_TOLERANCE else None), errors


def _examples(examples):
    from ..data import Examples

    return examples or Examples("test")


def _answers_in_format(model, fmt: str, examples, n: int = 8) -> int:
    """Cuántas de ``n`` fechas de ``examples`` responde ``model`` (con su adaptador activo) en el formato ``fmt``."""
    from ..data import answer
    from ..evaluation import exact_match, generate
    from ..model import load_tokenizer

    rows = _examples(examples).rows(fmt, n)
    return exact_match(generate(model, load_tokenizer(), [r["prompt"] for r in rows]), [answer(r) for r in rows])


def _hits_by_format(model, examples, n: int) -> dict[str, int]:
    """{formato: aciertos} de una sola generación sobre ``n`` fechas (las entradas son las mismas en los tres)."""
    from ..data import answer
    from ..evaluation import exact_match, generate
    from ..model import load_tokenizer

    rows = {fmt: _examples(examples).rows(fmt, n) for fmt in ADAPTER_FORMATS}
    answers = generate(model, load_tokenizer(), [r["prompt"] for r in rows["iso"]])
    return {fmt: exact_match(answers, [answer(r) for r in rows[fmt]]) for fmt in ADAPTER_FORMATS}


def _fresh_adapter_model(fmt: str, like):
    """Un modelo base nuevo con el adaptador publicado ``fmt``, en el dispositivo y la precisión de ``like``."""
    from peft import PeftModel

    from ..model import fresh_base

    param = next(like.parameters())
    return PeftModel.from_pretrained(fresh_base().to(param.dtype).to(param.device), str(adapter_dir(fmt)))


def _carries_iso_delta(model) -> bool:
    """¿Los pesos base de ``model`` (una muestra) ya llevan sumado ΔW del ISO (alguna vez, o dos)?"""
    weights = _model_weights(model, _target_keys(every=SAMPLE_EVERY))
    story, _ = _story(weights, next(model.parameters()).dtype)
    return story in ("bien", "dos_veces")


BASE_MODIFIED = ("PEFT modifica en su sitio el modelo que le pasas: `PeftModel.from_pretrained(base, …)` inyecta las "
                 "capas LoRA dentro de `base`, y `merge_and_unload()` suma ΔW a sus pesos. ")


# ---------------------------------------------------------------- 🐢 cargar
@exercise(NOTEBOOK, handover={"model": handover.Model()}, hint=(
    ("Un adaptador guardado no se entrena ni se configura: se *envuelve* el modelo base con él. La clase de PEFT que "
    "envuelve un modelo tiene un constructor que lee una carpeta guardada (su `adapter_config.json` dice el resto)."),
    "`model = PeftModel.from_pretrained(..., ADAPTER_DIRS[...], adapter_name=...)`",
))
def load_adapter(model, examples=None):
    """El modelo con el adaptador ISO de ``adapters/iso`` cargado y activo, que responde en ISO."""
    expect(model is not None, "`model` es None: asígnale lo que devuelve `PeftModel.from_pretrained(base, ...)`.")
    expect(_is_torch_model(model), f"`model` es un {_type_name(model)}, no un modelo. "
                                   "Pasa el `PeftModel` que devuelve `PeftModel.from_pretrained(base, ...)`.")
    if not is_peft_model(model):
        expect(not getattr(model, "_hf_peft_config_loaded", False),
               "Has cargado el adaptador con la API de transformers (`base.load_adapter`). Funciona, pero en este "
               "ejercicio usa la de PEFT: `model = PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'], "
               "adapter_name='iso')`.")
        expect(False, f"`model` es el modelo base ({_type_name(model)}), sin adaptador. Envuélvelo: "
                      "`model = PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'], adapter_name='iso')`.")
    expect(lora_layers(model), "El PeftModel no tiene capas LoRA: ¿lo descargaste ya con `unload()`? "
                                "Vuelve a cargar el adaptador.")
    active = model.active_adapter
    fmt = _which_shipped(model, active)
    if fmt != "iso":
        loaded_iso = [name for name in model.peft_config if _which_shipped(model, name) == "iso"]
        if loaded_iso:
            expect(False, f"El adaptador ISO está cargado como '{loaded_iso[0]}', pero el activo es '{active}'. "
                          f"Actívalo con `model.set_adapter('{loaded_iso[0]}')`.")
        expect(fmt is not None or not _lora_b_is_zero(model, active),
               "Los pesos LoRA B del adaptador activo están a cero: es un adaptador nuevo, sin entrenar "
               "(¿usaste `get_peft_model`?). Carga el entrenado con `PeftModel.from_pretrained(base, "
               "ADAPTER_DIRS['iso'], adapter_name='iso')`.")
        expect(fmt is not None, f"El adaptador activo ('{active}') no coincide con ninguno de `adapters/`. Cárgalo "
                                "con `PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'], adapter_name='iso')`.")
        expect(False, f"El adaptador activo es el de formato {FORMAT_NAMES[fmt]} (`adapters/{fmt}`); el "
                      "ejercicio pide el ISO: `ADAPTER_DIRS['iso']`.")
    expect(active == "iso", f"El adaptador ISO está cargado y activo, pero con el nombre '{active}': el ejercicio "
                            "pide el nombre `\"iso\"`, y una celda de más abajo lo vuelve a activar por su nombre, "
                            "`model.set_adapter(\"iso\")`. Vuelve a ejecutar la celda que carga `base` (PEFT ya "
                            "inyectó este adaptador en él) y después la tuya con `PeftModel.from_pretrained(base, "
                            "ADAPTER_DIRS['iso'], adapter_name='iso')`.")
    layers = lora_layers(model)
    expect(not any(module.merged for _, module in layers),
           "El adaptador ya está fusionado en los pesos (`merge_adapter`). En este ejercicio solo hay que cargarlo.")
    expect(not any(module.disable_adapters for _, module in layers),
           "Los adaptadores están desactivados. ¿Quedó algo a medias de `disable_adapter()`? Vuelve a cargar el modelo.")
    expect(not _carries_iso_delta(model),
           "Los pesos del modelo base que hay debajo ya llevan sumado el ΔW del ISO: " + BASE_MODIFIED +
           "Lo envolviste sobre un modelo que ya se había fusionado. Carga un modelo base nuevo y envuélvelo.")
    hits = _answers_in_format(model, "iso", examples)
    expect(hits >= 6, f"El adaptador ISO está cargado, pero el modelo solo responde {hits}/8 fechas en ISO. ¿Cambiaste "
                      "los pesos del modelo base? Vuelve a cargar el modelo base y el adaptador.")
    config = model.peft_config[active]
    return (f"Adaptador ISO cargado como '{active}' y activo: {len(layers)} capas LoRA "
            f"({', '.join(sorted(config.target_modules))}), r={config.r}; responde en ISO {hits}/8 fechas de prueba.")


def _expect_plain_model(model, name: str, call: str, lora_advice: str) -> None:
    """``model`` es lo que devuelve ``call``: un modelo de transformers sin PeftModel ni capas LoRA."""
    expect(model is not None, f"`{name}` es None: guarda lo que devuelve `{call}`.")
    expect(_is_torch_model(model), f"`{name}` es un {_type_name(model)}, no un modelo: pasa lo que devuelve "
                                   f"`{call}`.")
    expect(not is_peft_model(model), f"`{name}` todavía es un PeftModel: `{call}` devuelve el modelo sin "
                                      f"envoltorio (`{name} = {call}`).")
    lora_left = lora_layers(model)
    expect(not lora_left, f"`{name}` todavía tiene {len(lora_left)} capas LoRA dentro. {lora_advice}")


# ---------------------------------------------------------------- 🦁 cambiar y decidir
def _expect_mystery_model(mystery, names: list[str]) -> None:
    expect(mystery is not None, "`mystery` es None: carga los tres adaptadores de `MYSTERY_DIRS` en un PeftModel.")
    expect(_is_torch_model(mystery) and is_peft_model(mystery),
           f"`mystery` es un {_type_name(mystery)}: debe ser el `PeftModel` con los adaptadores "
           f"{', '.join(repr(n) for n in names)} cargados (uno con `PeftModel.from_pretrained`, los otros con "
           "`load_adapter`).")
    missing = [name for name in names if name not in mystery.peft_config]
    expect(not missing, f"En `mystery` faltan los adaptadores {', '.join(repr(m) for m in missing)}: un mismo "
                        "PeftModel tiene que llevar los tres (añade cada uno con `load_adapter(carpeta, "
                        "adapter_name=nombre)`).")
    extra = [name for name in mystery.peft_config if name not in names]
    expect(not (set(extra) & set(ADAPTER_FORMATS)),
           f"`mystery` lleva además los adaptadores {', '.join(repr(e) for e in extra)}, los de `model`: lo "
           "cargaste sobre `base`, y " + BASE_MODIFIED + "`base` ya llevaba dentro los de la sección 2. "
           "Carga los misteriosos sobre un modelo base nuevo, `fresh_model()`.")
    expect(not extra, f"`mystery` lleva además los adaptadores {', '.join(repr(e) for e in extra)}: deja solo "
                      f"{', '.join(repr(n) for n in names)}.")
    for name in names:
        found = _which_mystery(mystery, name)
        if found == name:
            continue
        expect(found is None, f"El adaptador '{name}' de `mystery` tiene los pesos de `MYSTERY_DIRS['{found}']`: "
                              f"carga cada carpeta con su nombre (`adapter_name='{name}'` para `MYSTERY_DIRS['{name}']`).")
        shipped = _which_shipped(mystery, name)
        expect(shipped is None, f"El adaptador '{name}' de `mystery` es `adapters/{shipped}`, uno con etiqueta: "
                                f"carga el de `MYSTERY_DIRS['{name}']`.")
        expect(variant_token() is None, f"El adaptador '{name}' de `mystery` no es el de `MYSTERY_DIRS['{name}']` de "
                                        "esta ejecución: al corregir, cada entrega recibe sus propios adaptadores sin "
                                        f"etiqueta. Cárgalo con `MYSTERY_DIRS['{name}']` (sin escribir la ruta a mano ni "
                                        "cambiar las variables del curso), en la misma ejecución.")
        expect(False, f"El adaptador '{name}' de `mystery` no es el de `MYSTERY_DIRS['{name}']`: cárgalo otra vez de "
                      "su carpeta, sin entrenarlo ni cambiarlo.")


def _expect_tables(answers_by_adapter, format_of, names: list[str]) -> int:
    """Las dos tablas del alumno tienen una entrada por adaptador; devuelve cuántas respuestas hay por columna."""
    for label, table in (("answers_by_adapter", answers_by_adapter), ("format_of", format_of)):
        expect(table is not None, f"`{label}` es None: complétalo con una entrada por adaptador ({', '.join(names)}).")
        expect(isinstance(table, dict), f"`{label}` es un {_type_name(table)}: debe ser un dict con una entrada por "
                                        f"adaptador ({', '.join(names)}).")
        expect(set(table) == set(names), f"`{label}` tiene las claves {sorted(map(str, table))}; deben ser "
                                         f"exactamente {names} (los nombres de los adaptadores, no formatos).")
    lengths = set()
    for name in names:
        column = answers_by_adapter[name]
        expect(isinstance(column, (list, tuple)) and column and all(isinstance(a, str) for a in column),
               f"`answers_by_adapter['{name}']` debe ser la lista de respuestas (texto) que devuelve `generate`.")
        lengths.add(len(column))
    n = lengths.pop()
    expect(not lengths, "Las columnas de `answers_by_adapter` tienen longitudes distintas: genera con los mismos "
                        "`mystery_prompts` para los tres.")
    expect(n >= MYSTERY_MIN_ROWS, f"Hay {n} respuesta(s) por adaptador: la columna tiene que ser entera, las de todos "
                                  f"los `mystery_prompts` (al menos {MYSTERY_MIN_ROWS}). Con una o dos fechas no se decide.")
    expect(n <= 120, f"Hay {n} respuestas por adaptador, más que fechas de test (120): usa `mystery_prompts`.")
    for name in names:
        said = format_of[name]
        expect(said is not None, f"`format_of['{name}']` es None. Los misteriosos no aciertan todas las fechas: "
                                 "decide por el formato en el que acierta la mayoría.")
        expect(isinstance(said, str) and said.lower() in FORMAT_NAMES, f"`format_of['{name}']` = {said!r}: usa "
                                                                       "'iso', 'us' o 'en'.")
        expect(said in FORMAT_NAMES, f"`format_of['{name}']` = {said!r}: escríbelo en minúsculas, '{said.lower()}'.")
    return n


@exercise(NOTEBOOK, handover={"mystery": handover.Model(), "answers_by_adapter": handover.Value(),
                              "format_of": handover.Value()}, hint=(
    ("Los tres adaptadores van en **un** PeftModel sobre un modelo base que PEFT no haya tocado: el primero lo envuelve, "
    "los demás se añaden. Activa uno cada vez y genera con todos los `mystery_prompts`. Después compara cada columna "
    "con `mystery_expected` de cada formato: no aciertan todas, así que decide por el formato en el que más aciertan."),
    ("`mystery = PeftModel.from_pretrained(fresh_model(), MYSTERY_DIRS[...], adapter_name=...)`, "
    "`mystery.load_adapter(...)`; en un bucle, `mystery.set_adapter(name)` y `generate(mystery, tokenizer, ...)`; "
    "`format_of = {name: max(FORMATS, key=lambda fmt: exact_match(..., mystery_expected[fmt])) for ...}`"),
))
def switch_adapters(mystery, answers_by_adapter, format_of, examples=None):
    """Los tres adaptadores sin etiqueta en un PeftModel, sus respuestas y el formato que produce cada uno.

    Qué formato produce cada uno no está escrito en ningún sitio: la comprobación lo mide, generando con cada
    adaptador activo sobre fechas de ``examples`` (ocultas en la corrección). Al corregir, los pesos de cada nombre
    tienen que ser los que la variante de la entrega puso en ``MYSTERY_DIRS`` (``helpers.shipped.mystery_weights``).
    """
    from ..data import Examples
    from ..evaluation import exact_match, generate
    from ..model import load_tokenizer

    names = list(MYSTERY_NAMES)
    _expect_mystery_model(mystery, names)
    n = _expect_tables(answers_by_adapter, format_of, names)
    tokenizer, prompts = load_tokenizer(), Examples("test").prompts(n)
    key = {fmt: [r["completion"][-1]["content"] for r in Examples("test").rows(fmt, n)] for fmt in ADAPTER_FORMATS}
    columns = {name: list(answers_by_adapter[name]) for name in names}
    expect(len({tuple(c) for c in columns.values()}) > 1,
           "Las tres columnas de `answers_by_adapter` son iguales: generaste siempre con el mismo adaptador. "
           "`set_adapter(nombre)` antes de cada `generate`.")
    active = mystery.active_adapter
    produced, truth, hits = {}, {}, {}

    def answers_with(name):  # lo que responde `mystery` con ``name`` activo (se genera una vez)
        if name not in produced:
            mystery.set_adapter(name)
            produced[name] = generate(mystery, tokenizer, prompts)
        return produced[name]

    def matches(name, column):
        return sum(a == b for a, b in zip(answers_with(name), column)) >= n - MYSTERY_MAX_MISMATCHES

    try:
        for name in names:
            column = columns[name]
            if matches(name, column):
                continue
            typed = next((fmt for fmt in ADAPTER_FORMATS if column == key[fmt]), None)
            if typed is not None:
                expect(False, f"La columna de '{name}' es la clave de respuestas (`mystery_expected['{typed}']`), "
                              f"no lo que responde el adaptador: con '{name}' activo, el modelo acierta "
                              f"{exact_match(answers_with(name), key[typed])}/{n} en ese formato. Genera sus "
                              "respuestas con el modelo.")
            twin = next((other for other in names if other != name and matches(other, column)), None)
            expect(twin is None, f"La columna de '{name}' es lo que responde '{twin}': ¿activaste '{name}' con "
                                 f"`set_adapter('{name}')` antes de generar su columna?")
            same = sum(a == b for a, b in zip(answers_with(name), column))
            expect(False, f"Las respuestas de '{name}' en `answers_by_adapter` no son las que da `mystery` con ese "
                          f"adaptador ({same}/{n} coinciden). Genéralas con el modelo: `mystery.set_adapter('{name}')` "
                          "y después `generate(mystery, tokenizer, mystery_prompts)`.")
        for name in names:  # qué formato produce cada uno: se mide aquí, en su columna regenerada y en otras fechas
            mystery.set_adapter(name)
            hits[name] = _hits_by_format(mystery, examples, MYSTERY_PROBE_ROWS)
            hits[name] = {fmt: hits[name][fmt] + exact_match(answers_with(name), key[fmt]) for fmt in ADAPTER_FORMATS}
            best = max(hits[name], key=hits[name].get)
            truth[name] = best if hits[name][best] >= MYSTERY_MIN_SHARE * (n + MYSTERY_PROBE_ROWS) else None
    finally:
        mystery.set_adapter(active)
    for name in names:
        expect(truth[name] is not None, f"Con el adaptador '{name}' activo, el modelo no responde en ninguno de los "
                                        "tres formatos: ¿cambiaste sus pesos? Vuelve a cargarlo de su carpeta.")
        said = format_of[name]
        if said != truth[name]:
            mine = exact_match(columns[name], key[said])
            expect(False, f"El adaptador '{name}' no produce el formato {FORMAT_NAMES[said]}: en tu propia columna "
                          f"acierta {mine}/{n} fechas en ese formato. Compara su columna con `mystery_expected[fmt]` de "
                          "cada formato y quédate con el que más acierta.")
    summary = ", ".join(f"{name} → {format_of[name]}" for name in names)
    where = "fechas que el cuaderno nunca vio" if examples is not None and examples.is_hidden else "fechas de prueba más"
    measured = ", ".join(f"'{name}' {hits[name][truth[name]]}/{n + MYSTERY_PROBE_ROWS}" for name in names)
    return (f"Bien decidido: {summary}. Tus columnas salen del modelo con cada adaptador activo ({n} respuestas por "
            f"adaptador, regeneradas aquí). Qué formato produce cada uno lo medí yo, en esas {n} fechas y en "
            f"{MYSTERY_PROBE_ROWS} {where}; aciertos en el formato que dices: {measured}.")


# ---------------------------------------------------------------- 🐢 descargar
@exercise(NOTEBOOK, handover={"restored": handover.Model()}, hint=(
    ("Quieres el modelo base de vuelta, sin ninguna capa LoRA y sin que el adaptador deje rastro en sus pesos. Un "
    "PeftModel tiene tres métodos parecidos: uno devuelve el modelo de dentro tal cual (con las capas LoRA), otro "
    "suma el adaptador a los pesos antes de quitarlo, y otro lo quita sin sumar nada. Es este último."),
    "`restored = ...` (el método de `model` que quita sin sumar: ni `get_base_model()` ni `merge_and_unload()`)",
))
def unload_adapters(restored):
    """El modelo que devuelve ``model.unload()``: el base, sin capas LoRA y con sus pesos intactos.

    En los datos entregados, un modelo base recién cargado es igual: el punto certifica el resultado.
    """
    _expect_plain_model(restored, "restored", "model.unload()",
                        "`get_base_model()` devuelve el modelo con las capas inyectadas; `unload()` las quita.")
    weights = _model_weights(restored, _target_keys(every=SAMPLE_EVERY))
    story, errors = _story(weights, next(restored.parameters()).dtype)
    if story is not None and story != "sin_fusionar":
        expect(story not in ("bien", "dos_veces", "sin_escala"),
               "Los pesos de q_proj/v_proj ya no son los del modelo base: llevan sumado el ΔW del ISO. ¿Usaste "
               "`merge_and_unload()`? Ese fusiona el adaptador en los pesos; `unload()` lo quita sin fusionar.")
        expect(False, "Los pesos de q_proj/v_proj llevan sumado el ΔW de otro adaptador (¿`merge_and_unload()` con "
                      "'us' o 'en' activo?). `unload()` quita los adaptadores sin fusionar ninguno.")
    expect(errors is None or errors["sin_fusionar"] < 1e-3,
           "Los pesos de q_proj/v_proj ya no son los del modelo base. ¿Usaste `merge_and_unload()` o cambiaste algún "
           "peso? `unload()` quita los adaptadores y deja los pesos como estaban.")
    return "`unload()` devolvió el modelo base intacto: sin capas LoRA y con los pesos originales."


# ---------------------------------------------------------------- 🐕 diagnosticar y fusionar
def _expect_broken(broken) -> dict[str, str]:
    """Los fusionados de los compañeros, tal cual llegaron; devuelve {compañero: historia medida en sus pesos}."""
    import torch

    expect(broken is not None, "`broken` es None: vuelve a ejecutar la celda de `broken = colleague_merges(...)`.")
    expect(isinstance(broken, dict) and set(broken) == set(COLLEAGUES),
           f"`broken` debe ser el dict que devuelve `colleague_merges()`, con {', '.join(COLLEAGUES)}.")
    base_norm = _base_weight("model.norm.weight")
    drawn = colleague_draw()  # al corregir: lo que la variante de esta entrega sorteó para cada compañero
    stories, nonces = {}, set()
    for name in COLLEAGUES:
        model = broken[name]
        expect(_is_torch_model(model) and not is_peft_model(model) and not lora_layers(model),
               f"`broken['{name}']` no es el modelo fusionado que te pasó {name.capitalize()}: no lo cambies; si lo "
               "tocaste, vuelve a ejecutar la celda de `colleague_merges()`.")
        params = {n: p for n, p in model.named_parameters()}
        nonce = None
        if base_norm is not None and "model.norm.weight" in params:
            nonce = signature_nonce(params["model.norm.weight"].detach().float().cpu(), base_norm)
        expect(base_norm is None or nonce is not None,
               f"`broken['{name}']` no lleva la firma de {name.capitalize()}: no es el fusionado que te pasó (un modelo "
               "cargado o fusionado por ti no vale). Pasa el de `colleague_merges()` tal cual.")
        expect(nonce is None or nonce not in nonces, f"`broken['{name}']` es el mismo modelo que otro compañero: pasa "
                                                     "el dict de `colleague_merges()` tal cual.")
        expect(drawn is None or nonce is None or nonce == drawn[name]["nonce"],
               f"`broken['{name}']` lleva una firma de {name.capitalize()}, pero no la de esta ejecución: al corregir, "
               "cada entrega recibe sus propios fusionados. Pasa el dict que devuelve `colleague_merges()` en esta misma "
               "ejecución, tal cual (sin cambiar las variables del curso).")
        nonces.add(nonce)
        weights = _model_weights(model, _target_keys(every=SAMPLE_EVERY))
        story, _ = _story(weights, torch.float32)
        expect(story is not None, f"Los pesos de `broken['{name}']` ya no son los que te pasó {name.capitalize()}: "
                                  "¿los modificaste (por ejemplo, fusionando encima)? Vuelve a ejecutar la celda de "
                                  "`colleague_merges()` y mide sin tocarlos.")
        expect(drawn is None or story == drawn[name]["story"],
               f"Los pesos de `broken['{name}']` ya no son los que te pasó {name.capitalize()}: ¿los modificaste? Vuelve "
               "a ejecutar la celda de `colleague_merges()` y mide sin tocarlos.")
        stories[name] = story
    return stories


def _expect_diagnosis(diagnosis, stories: dict[str, str]) -> None:
    expect(diagnosis is not None, "Todavía no has hecho el diagnóstico: `diagnosis` es None.")
    expect(isinstance(diagnosis, dict) and set(diagnosis) == set(COLLEAGUES),
           f"`diagnosis` debe ser un dict con una historia por compañero: {', '.join(COLLEAGUES)}.")
    for name in COLLEAGUES:
        said = diagnosis[name]
        expect(said in MERGE_STORIES, f"`diagnosis['{name}']` = {said!r}: usa una de las historias, "
                                      f"{', '.join(repr(s) for s in MERGE_STORIES)}.")
    for name in COLLEAGUES:
        said, truth = diagnosis[name], stories[name]
        if said == truth:
            continue
        who = name.capitalize()
        # medido contra un base que ya llevaba ΔW: todo se desplaza −ΔW (2 → 1, 1 → 0, ½ → −½, 0 → −1)
        shifted = (("dos_veces", "bien"), ("bien", "sin_fusionar"), ("sin_escala", "otro_adaptador"),
                   ("sin_fusionar", "otro_adaptador"))
        expect((truth, said) not in shifted,
               f"El diagnóstico de {who} no encaja con sus pesos: lo que mediste está desplazado un ΔW entero. ¿Mediste "
               "contra un modelo base que ya llevaba el adaptador? " + BASE_MODIFIED +
               "Mide siempre contra un modelo base recién cargado (`fresh_model()`).")
        expect((truth, said) != ("sin_escala", "bien"),
               f"{who} no fusionó bien, aunque sus respuestas lo parezcan: sin la escala el modelo también responde en ISO. "
               "Las respuestas no bastan; mira cuánto cambiaron los pesos frente a ΔW.")
        expect(False, f"Para {who} dices «{said}», pero sus pesos no encajan con esa historia: si fuera «{said}», "
                      f"{STORY_LOOKS[said]}. Mide W − W_base de sus capas adaptadas frente a ΔW del ISO (tamaño y "
                      "dirección) y mira también sus respuestas.")


def _expect_adapter_model(adapter_model) -> None:
    expect(adapter_model is not None, "`adapter_model` es None: es el modelo con el adaptador ISO **sin fusionar**, "
                                      "el que usas para comparar.")
    expect(not isinstance(adapter_model, handover.Unexpected),
           f"`adapter_model` no llegó como un modelo con el adaptador ISO sin fusionar ({adapter_model}). ¿Lo "
           "fusionaste? `merge_and_unload()` modifica en su sitio el modelo que fusionas: fusiona otra copia, "
           "cargada sobre su propio `fresh_model()`.")
    expect(_is_torch_model(adapter_model), f"`adapter_model` es un {_type_name(adapter_model)}, no un modelo.")
    peft = is_peft_model(adapter_model)
    layers = lora_layers(adapter_model) if peft else []
    gone = not layers or _lora_b_is_zero(adapter_model, adapter_model.active_adapter)
    expect(not (gone and _carries_iso_delta(adapter_model)),
           "`adapter_model` ya no tiene el adaptador: está fusionado. `merge_and_unload()` modifica en su sitio el "
           "modelo que fusionas y el modelo base que lleva dentro. Si fusionaste `adapter_model`, o cargaste la copia "
           "que fusionas sobre el mismo modelo base, las dos son ahora el mismo modelo fusionado y comparas el "
           "fusionado consigo mismo. Carga cada copia sobre su propio `fresh_model()`.")
    expect(is_peft_model(adapter_model), "`adapter_model` no es un PeftModel: es el modelo base con el adaptador ISO "
                                         "sin fusionar (`PeftModel.from_pretrained(fresh_model(), ADAPTER_DIRS['iso'])`).")
    expect(lora_layers(adapter_model), "`adapter_model` no tiene capas LoRA: ¿lo descargaste? Tiene que llevar el "
                                       "adaptador ISO sin fusionar.")
    layers = [module for _, module in lora_layers(adapter_model)]
    expect(not any(m.merged for m in layers), "El adaptador de `adapter_model` está fusionado (`merge_adapter()`): "
                                              "para comparar hace falta sin fusionar.")
    expect(not any(m.disable_adapters for m in layers), "Los adaptadores de `adapter_model` están desactivados.")
    expect(_which_shipped(adapter_model, adapter_model.active_adapter) == "iso",
           "El adaptador activo de `adapter_model` no es el de `adapters/iso`: compara con el adaptador que fusionas.")
    expect(not _carries_iso_delta(adapter_model),
           "El modelo base de `adapter_model` ya lleva sumado el ΔW del ISO, y encima el adaptador: con él comparas "
           "contra base + 2·ΔW. " + BASE_MODIFIED + "Lo cargaste sobre un modelo que ya se había fusionado; usa "
           "`fresh_model()`.")


def _expect_merged(merged) -> None:
    _expect_plain_model(merged, "merged", "merge_and_unload()",
                        "(¿usaste `merge_adapter()` o `get_base_model()`?) `merge_and_unload()` fusiona y quita "
                        "las capas LoRA.")
    base_norm = _base_weight("model.norm.weight")
    norm = dict(merged.named_parameters()).get("model.norm.weight")
    expect(base_norm is None or norm is None or signature_nonce(norm.detach().float().cpu(), base_norm) is None,
           "`merged` es uno de los fusionados de tus compañeros (lleva su firma): el ejercicio pide que fusiones tú.")
    weights = _model_weights(merged, _target_keys(every=SAMPLE_EVERY))
    dtype = next(merged.parameters()).dtype
    _, errors = _story(weights, dtype)
    if errors is None:
        return
    best = min(errors, key=errors.get)
    if best == "bien" and errors["bien"] < 0.5:
        return
    messages = {
        "sin_fusionar": "Los pesos de q_proj/v_proj son los del modelo base: el adaptador no está fusionado. ¿Usaste "
                        "`unload()`? Ese lo quita sin fusionar; usa `merge_and_unload()`.",
        "dos_veces": "Los pesos fusionados llevan 2·ΔW: fusionaste dos veces (o sobre un modelo base que ya estaba "
                     "fusionado). " + BASE_MODIFIED + "Fusiona una copia cargada sobre `fresh_model()`.",
        "sin_escala": f"Los pesos fusionados llevan B·A sin la escala lora_alpha / r = {decimal(SCALING, 0)}: ¿fusionaste a "
                      "mano? `merge_and_unload()` aplica la escala por ti.",
        "otro_adaptador": "Los pesos fusionados son los de otro adaptador, no los del ISO: fusiona el modelo cargado con "
                          "`ADAPTER_DIRS['iso']`.",
    }
    expect(best not in messages, messages.get(best, ""))
    expect(False, f"Los pesos fusionados no son base + ΔW del adaptador ISO (error relativo "
                  f"{scientific(errors['bien'])}). ¿Fusionaste sobre un modelo ya modificado? Fusiona una copia recién "
                  "cargada.")


@exercise(NOTEBOOK, handover={"broken": handover.Mapping(handover.Model()), "diagnosis": handover.Value(),
                              "adapter_model": handover.Model(), "merged": handover.Model(),
                              "merged_dir": handover.Folder()}, hint=(
    ("Cada historia deja una huella distinta en los pesos de las capas adaptadas: compara W − W_base con ΔW del ISO "
    "(`update_vs_adapter`) contra un modelo base recién cargado, y piensa qué tamaño y qué dirección daría cada "
    "historia (la escala es lora_alpha / r). Las respuestas ayudan, pero no distinguen todas. Después fusiona tú una "
    "copia y conserva otra sin fusionar: `merge_and_unload()` modifica el modelo en su sitio."),
    ("`def diagnose(m): u = update_vs_adapter(m, fresh_model(), ADAPTER_DIRS['iso']); if u['size'] < ...: return ...`; "
    "`diagnosis = {name: diagnose(m) for name, m in broken.items()}`; "
    "`adapter_model = PeftModel.from_pretrained(fresh_model(), ...)`, `merged = PeftModel.from_pretrained(fresh_model(), "
    "...).merge_and_unload()`; `merged.save_pretrained(...)` y `tokenizer.save_pretrained(...)`"),
))
def merge_adapter(broken, diagnosis, adapter_model, merged, merged_dir, examples=None):
    """El diagnóstico de los tres fusionados de los compañeros, y tu fusión: comparada, guardada y recargable.

    La historia de cada compañero se mide en sus pesos (se sortea en cada ejecución y no se guarda; al corregir la
    sortea la variante de la entrega, y sus firmas e historias tienen que ser esas). Tu fusión se mide frente a ``adapter_model`` (el adaptador ISO sin fusionar sobre un base intacto) en pesos y en logits, y
    la carpeta se recarga.
    """
    import torch

    from ..data import Examples
    from ..evaluation import logits
    from ..model import load_tokenizer

    expect(not (diagnosis is None and adapter_model is None and merged is None),
           "Todavía no has hecho este ejercicio: completa la celda del TODO y vuelve a ejecutar esta.")
    stories = _expect_broken(broken)
    _expect_diagnosis(diagnosis, stories)
    _expect_adapter_model(adapter_model)
    _expect_merged(merged)
    dtype = next(merged.parameters()).dtype
    tolerance = MAX_DIFF_FP32 if dtype == torch.float32 else MAX_DIFF_HALF
    prompts = (examples or Examples("validation")).prompts(4)
    tokenizer = load_tokenizer()
    expect(next(adapter_model.parameters()).device == next(merged.parameters()).device,
           "`adapter_model` y `merged` están en dispositivos distintos: cárgalos los dos en `DEVICE`.")
    measured = float((logits(merged, tokenizer, prompts) - logits(adapter_model, tokenizer, prompts)).abs().max())
    expect(measured <= tolerance, f"El fusionado no se comporta como el adaptador ISO: max|Δlogits| = "
                                  f"{scientific(measured)} (se espera ≤ {scientific(tolerance, 0)}). ¿Están los dos en la "
                                  "misma precisión? Fusiona una copia recién cargada con el adaptador ISO.")
    # la carpeta guardada
    expect(merged_dir is not None, "`merged_dir` es None: pasa la carpeta donde guardaste el modelo fusionado.")
    expect(isinstance(merged_dir, (str, Path)), f"`merged_dir` es un {_type_name(merged_dir)}: pasa una ruta.")
    folder = Path(merged_dir)
    expect(folder.is_dir(), f"La carpeta `{folder.name}` no existe: guarda con `merged.save_pretrained(MERGED_DIR)`.")
    names = {p.name for p in folder.iterdir()}
    expect(not ("adapter_config.json" in names and "config.json" not in names),
           f"`{folder.name}` contiene un adaptador (adapter_config.json), no el modelo fusionado. Guarda `merged`, "
           "no el PeftModel.")
    expect("config.json" in names, f"`{folder.name}` no tiene config.json: ¿guardaste `merged.save_pretrained(...)` ahí?")
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    expect(not pickles, f"En `{folder.name}` hay archivos pickle ({', '.join(pickles)}). Guarda en safetensors "
                        "(`save_pretrained` lo hace por defecto; no uses `torch.save`).")
    shards = sorted(folder.glob("*.safetensors"))
    expect(shards, f"En `{folder.name}` no hay pesos `.safetensors`: guarda con `merged.save_pretrained(MERGED_DIR)`.")
    expect(names & {"tokenizer.json", "tokenizer_config.json"},
           f"En `{folder.name}` falta el tokenizador: sin él, quien reciba la carpeta no puede convertir texto en "
           "tokens ni aplicar la plantilla de chat. Guárdalo al lado: `tokenizer.save_pretrained(MERGED_DIR)`.")
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True).to(
        next(merged.parameters()).device)
    reload_diff = float((logits(reloaded, tokenizer, prompts[:2]) - logits(merged, tokenizer, prompts[:2])).abs().max())
    expect(reload_diff <= tolerance, f"Lo guardado en `{folder.name}` no es `merged` (max|Δlogits| = "
                                     f"{scientific(reload_diff)} al recargarlo): ¿guardaste antes de fusionar u otro "
                                     "modelo?")
    told = ", ".join(f"{name.capitalize()} «{diagnosis[name]}»" for name in COLLEAGUES)
    return (f"Diagnóstico correcto ({told}), medido en sus pesos. Tu fusión: pesos = base + ΔW del ISO, "
            f"max|Δlogits| = {scientific(measured)} frente a `adapter_model` en {integer(len(prompts))} prompts (medido "
            f"aquí), y `{folder.name}/` se recarga igual, en safetensors y con su tokenizador.")
