"""Comprobaciones del cuaderno ``load_lora_adapter_example``: cargar, cambiar, descargar y fusionar adaptadores.

En el cuaderno: ``from helpers.checks import adapters as checks`` y después ``checks.load_adapter(model)``,
``checks.switch_adapters(mystery, answers_by_adapter, format_of)``, ``checks.unload_adapters(restored)`` y
``checks.merge_adapter(merged, max_diff, merged_dir)``.

Las comprobaciones miran los objetos reales y miden lo que hacen: qué pesos LoRA hay dentro del modelo
(comparados con los de ``adapters/``), qué responde el modelo con cada adaptador (con las fechas de
``examples``: en la corrección, fechas que el cuaderno nunca vio), qué pesos quedan tras fusionar o
descargar, y qué se recarga de la carpeta guardada.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from ..build_adapters import ADAPTER_FORMATS, MYSTERY_NAMES, adapter_dir
from ..numbers import decimal
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


# ---------------------------------------------------------------- utilidades
def _type_name(obj) -> str:
    return type(obj).__name__


def _is_torch_model(obj) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


@functools.cache
def _shipped_weights(fmt: str) -> dict:
    """Pesos LoRA del adaptador publicado ``adapters/<fmt>`` (claves como las guarda PEFT)."""
    from safetensors.torch import load_file

    return load_file(adapter_dir(fmt) / "adapter_model.safetensors")


@functools.cache
def _shipped_scaling(fmt: str) -> float:
    config = json.loads((adapter_dir(fmt) / "adapter_config.json").read_text())
    return config["lora_alpha"] / config["r"]


def _same_tensors(state: dict, reference: dict) -> bool:
    import torch

    if set(state) != set(reference):
        return False
    return all(torch.allclose(state[k].detach().float().cpu(), reference[k].float(), atol=1e-6, rtol=1e-4)
               for k in reference)


def _loaded_adapter_state(model, name: str) -> dict:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)


def _which_shipped(model, name: str) -> str | None:
    """Qué adaptador de ``adapters/`` es el adaptador ``name`` del modelo (o None si ninguno)."""
    state = _loaded_adapter_state(model, name)
    return next((fmt for fmt in ADAPTER_FORMATS if _same_tensors(state, _shipped_weights(fmt))), None)


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


def _model_weights(model, keys: list[str]) -> dict:
    params = dict(model.named_parameters())
    missing = [k for k in keys if k not in params]
    expect(not missing, f"No encuentro en el modelo las capas que toca el adaptador (p. ej. {missing[:1]}): "
                        "¿es el modelo base del curso?")
    return {k: params[k].detach().float().cpu() for k in keys}


def _relative_error(weights: dict, fmt: str | None, dtype=None) -> float | None:
    """||W − (W_base + ΔW_fmt)|| / ||ΔW_iso||: ~0 si ``weights`` = base + ΔW de ``fmt`` (None: sin ΔW).

    ``dtype``: la precisión del modelo; el esperado se redondea igual que al fusionar en ella.
    """
    num, den = 0.0, 0.0
    for key, w in weights.items():
        base = _base_weight(key)
        if base is None:
            return None
        if dtype is not None:
            base = base.to(dtype).float()
        expected = base + _lora_delta(fmt, key) if fmt else base
        if dtype is not None:
            expected = expected.to(dtype).float()
        num += float((w - expected).pow(2).sum())
        den += float(_lora_delta("iso", key).pow(2).sum())
    return math.sqrt(num / den)


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


def _fresh_adapter_model(fmt: str, like):
    """Un modelo base nuevo con el adaptador publicado ``fmt``, en el dispositivo y la precisión de ``like``."""
    from peft import PeftModel

    from .handover import fresh_base

    param = next(like.parameters())
    return PeftModel.from_pretrained(fresh_base().to(param.dtype).to(param.device), str(adapter_dir(fmt)))


# ---------------------------------------------------------------- 🐢 cargar
@exercise(NOTEBOOK, handover={"model": handover.Model()}, hint=(
    "Importa `from peft import PeftModel` y envuelve el modelo base con el adaptador guardado: "
    "`model = PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'], adapter_name='iso')`. "
    "No hace falta `get_peft_model` ni `LoraConfig`: la configuración viene en `adapter_config.json`."
))
def load_adapter(model, examples=None):
    """El modelo con el adaptador ISO de ``adapters/iso`` cargado y activo, que responde en ISO."""
    expect(model is not None, "`model` es None: asígnale lo que devuelve `PeftModel.from_pretrained(base, ...)`.")
    expect(_is_torch_model(model), f"`model` es un {_type_name(model)}, no un modelo. "
                                   "Pasa el `PeftModel` que devuelve `PeftModel.from_pretrained(base, ...)`.")
    if not is_peft_model(model):
        expect(not getattr(model, "_hf_peft_config_loaded", False),
               "Has cargado el adaptador con la API de transformers (`base.load_adapter`). Funciona, pero en este "
               "ejercicio usa la de PEFT: `model = PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'])`.")
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
               "ADAPTER_DIRS['iso'])`.")
        expect(fmt is not None, f"El adaptador activo ('{active}') no coincide con ninguno de `adapters/`. "
                                "Cárgalo con `PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'])`.")
        expect(False, f"El adaptador activo es el de formato {FORMAT_NAMES[fmt]} (`adapters/{fmt}`); el "
                      "ejercicio pide el ISO: `ADAPTER_DIRS['iso']`.")
    layers = lora_layers(model)
    expect(not any(module.merged for _, module in layers),
           "El adaptador ya está fusionado en los pesos (`merge_adapter`). En este ejercicio solo hay que cargarlo.")
    expect(not any(module.disable_adapters for _, module in layers),
           "Los adaptadores están desactivados. ¿Quedó algo a medias de `disable_adapter()`? Vuelve a cargar el modelo.")
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
@exercise(NOTEBOOK, handover={"mystery": handover.Model(), "answers_by_adapter": handover.Value(),
                              "format_of": handover.Value()}, hint=(
    "Carga el primero con `mystery = PeftModel.from_pretrained(fresh_model(), MYSTERY_DIRS['a'], adapter_name='a')` "
    "y los otros con `mystery.load_adapter(MYSTERY_DIRS[nombre], adapter_name=nombre)`. Para cada nombre: "
    "`mystery.set_adapter(nombre)` y `generate(mystery, tokenizer, test_prompts)`. Para decidir el formato, compara "
    "las respuestas con `expected[fmt]` de cada formato (`exact_match`) y quédate con el que más acierta."
))
def switch_adapters(mystery, answers_by_adapter, format_of, examples=None):
    """Los tres adaptadores misteriosos en un PeftModel, sus respuestas y el formato que produce cada uno."""
    names = list(MYSTERY_NAMES)
    expect(mystery is not None, "`mystery` es None: carga los tres adaptadores de `MYSTERY_DIRS` en un PeftModel.")
    expect(_is_torch_model(mystery) and is_peft_model(mystery),
           f"`mystery` es un {_type_name(mystery)}: debe ser el `PeftModel` con los adaptadores "
           "`a`, `b` y `c` cargados (`PeftModel.from_pretrained` y `load_adapter`).")
    missing = [name for name in names if name not in mystery.peft_config]
    expect(not missing, f"En `mystery` faltan los adaptadores {', '.join(repr(m) for m in missing)}: cárgalos con "
                        "`mystery.load_adapter(MYSTERY_DIRS[nombre], adapter_name=nombre)`.")
    truth = {name: _which_shipped(mystery, name) for name in names}
    wrong = [name for name, fmt in truth.items() if fmt is None]
    expect(not wrong, f"El adaptador '{wrong[0] if wrong else ''}' de `mystery` no es el de su carpeta de "
                      "`MYSTERY_DIRS`: cárgalo otra vez de `MYSTERY_DIRS` sin entrenarlo ni cambiarlo.")
    for label, table in (("answers_by_adapter", answers_by_adapter), ("format_of", format_of)):
        expect(isinstance(table, dict), f"`{label}` es un {_type_name(table)}: debe ser un dict con una entrada por "
                                        f"adaptador ({', '.join(names)}).")
        expect(set(table) == set(names), f"`{label}` tiene las claves {sorted(map(str, table))}; deben ser "
                                         f"exactamente {names}.")
    from ..evaluation import generate
    from ..model import load_tokenizer

    active = mystery.active_adapter
    try:
        for name in names:
            column = answers_by_adapter[name]
            expect(isinstance(column, (list, tuple)) and column and all(isinstance(a, str) for a in column),
                   f"`answers_by_adapter['{name}']` debe ser la lista de respuestas (texto) que devuelve `generate`.")
            expect(len(column) <= 32, f"Hay {len(column)} respuestas para '{name}': usa `test_prompts`.")
            mystery.set_adapter(name)
            produced = generate(mystery, load_tokenizer(), _examples(None).prompts(len(column)))
            same = sum(a == b for a, b in zip(produced, column))
            expect(same >= len(column) - 1,
                   f"Las respuestas de '{name}' en `answers_by_adapter` no son las que da `mystery` con ese adaptador "
                   f"({same}/{len(column)} coinciden). Genéralas con el modelo: `mystery.set_adapter('{name}')` y "
                   "después `generate(mystery, tokenizer, test_prompts)`.")
            said = format_of[name]
            expect(said in FORMAT_NAMES, f"`format_of['{name}']` = {said!r}: usa 'iso', 'us' o 'en'.")
            expect(said == truth[name], f"El adaptador '{name}' no responde en formato {FORMAT_NAMES[said]}. Mira sus "
                                        "respuestas otra vez y compáralas con `expected` de cada formato.")
            hits = _answers_in_format(mystery, truth[name], examples)
            expect(hits >= 6, f"Con el adaptador '{name}' activo, el modelo responde solo {hits}/8 fechas en "
                              f"{FORMAT_NAMES[truth[name]]}: ¿cambiaste sus pesos?")
    finally:
        mystery.set_adapter(active)
    summary = ", ".join(f"{name} → {format_of[name]}" for name in names)
    return (f"Bien decidido: {summary}. Las respuestas salen del modelo con cada adaptador activo, y cada uno "
            "responde en su formato también con fechas nuevas.")


# ---------------------------------------------------------------- 🐢 descargar
@exercise(NOTEBOOK, handover={"restored": handover.Model()}, hint=(
    "`restored = model.unload()` quita las capas LoRA y devuelve el modelo base. No uses `get_base_model()`, que las "
    "deja dentro, ni `merge_and_unload()`, que las fusiona en los pesos."
))
def unload_adapters(restored):
    """El modelo que devuelve ``model.unload()``: el base, sin capas LoRA y con sus pesos intactos."""
    _expect_plain_model(restored, "restored", "model.unload()",
                        "`get_base_model()` devuelve el modelo con las capas inyectadas; `unload()` las quita.")
    weights = _model_weights(restored, _target_keys(every=SAMPLE_EVERY))
    error = _relative_error(weights, None, next(restored.parameters()).dtype)
    expect(error is None or error < 1e-3,
           "Los pesos de q_proj/v_proj ya no son los del modelo base: ¿usaste `merge_and_unload()`? Ese fusiona "
           "el adaptador en los pesos; `unload()` lo quita sin fusionar.")
    return "`unload()` devolvió el modelo base intacto: sin capas LoRA y con los pesos originales."


# ---------------------------------------------------------------- 🐕 fusionar
@exercise(NOTEBOOK, handover={"merged": handover.Model(), "max_diff": handover.Value(),
                              "merged_dir": handover.Folder()}, hint=(
    "`merged = merge_model.merge_and_unload()` devuelve el modelo fusionado (ya no es un PeftModel). Calcula "
    "`max_diff` con `(logits(merged, tokenizer, merge_prompts) - adapter_logits).abs().max().item()` usando los "
    "logits del adaptador que calculaste ANTES de fusionar, y guarda con `merged.save_pretrained(MERGED_DIR)` "
    "y `tokenizer.save_pretrained(MERGED_DIR)`."
))
def merge_adapter(merged, max_diff, merged_dir, examples=None):
    """El modelo fusionado con el adaptador ISO, su max|Δlogits| frente al adaptador y la carpeta guardada."""
    import torch

    from ..data import Examples
    from ..evaluation import logits
    from ..model import load_tokenizer

    _expect_plain_model(merged, "merged", "merge_model.merge_and_unload()",
                        "(¿usaste `merge_adapter()` o `get_base_model()`?) `merge_and_unload()` fusiona y quita "
                        "las capas LoRA.")
    weights = _model_weights(merged, _target_keys(every=SAMPLE_EVERY))
    dtype = next(merged.parameters()).dtype
    errors = {fmt: _relative_error(weights, fmt, dtype) for fmt in (None, *ADAPTER_FORMATS)}
    if errors["iso"] is not None:
        best = min(errors, key=lambda f: errors[f])
        expect(best is not None, "Los pesos de q_proj/v_proj son los del modelo base: el adaptador no está "
                                 "fusionado. ¿Usaste `unload()`? Ese lo quita sin fusionar; usa `merge_and_unload()`.")
        expect(best == "iso", f"Los pesos fusionados son los del adaptador {FORMAT_NAMES.get(best)}, no los del "
                              "ISO: fusiona el modelo cargado con `ADAPTER_DIRS['iso']`.")
        expect(errors["iso"] < 0.5, f"Los pesos fusionados no son base + ΔW del adaptador ISO (error relativo "
                                    f"{decimal(errors['iso'], 2)}). ¿Fusionaste dos veces o sobre un modelo ya "
                                    "modificado? Fusiona una copia recién cargada.")
    tolerance = MAX_DIFF_FP32 if dtype == torch.float32 else MAX_DIFF_HALF
    # max|Δlogits| medido aquí, con nuestras fechas: el número del alumno no es la prueba
    prompts = (examples or Examples("validation")).prompts(4)
    tokenizer = load_tokenizer()
    measured = float((logits(merged, tokenizer, prompts)
                      - logits(_fresh_adapter_model("iso", merged), tokenizer, prompts)).abs().max())
    expect(measured <= tolerance, f"El fusionado no se comporta como el adaptador ISO: max|Δlogits| = {measured:.3g} "
                                  f"(se espera ≤ {tolerance:g}). Fusiona una copia recién cargada con el adaptador ISO.")
    expect(max_diff is not None, "`max_diff` es None: calcula max|Δlogits| entre `merged` y el adaptador sobre "
                                 "`merge_prompts`.")
    expect(isinstance(max_diff, (int, float, torch.Tensor)) and not isinstance(max_diff, bool),
           f"`max_diff` es un {_type_name(max_diff)}: debe ser un número (usa `.item()` si es un tensor).")
    value = float(max_diff)
    expect(math.isfinite(value) and value >= 0, f"`max_diff` = {value}: debe ser un valor absoluto finito (≥ 0).")
    expect(value != 0.0, "`max_diff` es exactamente 0: parece que comparaste el modelo fusionado consigo mismo. "
                         "`merge_and_unload()` modifica el modelo en su sitio: calcula los logits del adaptador "
                         "ANTES de fusionar (o en otra copia, como `adapter_model`).")
    expect(value <= tolerance, f"`max_diff` = {value:.3g} es demasiado grande (en {str(dtype).removeprefix('torch.')} "
                               f"se espera ≤ {tolerance:g}; yo mido {measured:.2g}). ¿Comparaste con el modelo base en "
                               "vez del adaptador, o con logits de otros prompts?")
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
           f"En `{folder.name}` falta el tokenizador: `tokenizer.save_pretrained(MERGED_DIR)`, así la carpeta se "
           "carga sola.")
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True).to(
        next(merged.parameters()).device)
    reload_diff = float((logits(reloaded, tokenizer, prompts[:2]) - logits(merged, tokenizer, prompts[:2])).abs().max())
    expect(reload_diff <= tolerance, f"Lo guardado en `{folder.name}` no es `merged` (max|Δlogits| = {reload_diff:.3g} "
                                     "al recargarlo): ¿guardaste antes de fusionar u otro modelo?")
    return (f"Fusionado correcto: pesos = base + ΔW del adaptador ISO, max|Δlogits| = {measured:.1e} frente al "
            f"adaptador (medido aquí; tú mediste {value:.1e}), y `{folder.name}/` se recarga igual, en safetensors "
            "y con su tokenizador.")
