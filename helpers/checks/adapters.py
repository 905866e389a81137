"""Comprobaciones del cuaderno ``load_lora_adapter_example``: cargar, fusionar y cambiar adaptadores.

En el cuaderno: ``from helpers.checks import adapters as checks`` y después
``checks.load_adapter(model)``, ``checks.merge_adapter(merged, max_diff, merged_dir)`` y
``checks.switch_adapters(answers_by_adapter, restored)``.

Las comprobaciones miran los objetos reales: qué pesos LoRA hay dentro del modelo (comparados con
los de ``adapters/``), qué pesos quedan tras fusionar o descargar, y qué hay en la carpeta guardada.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from ..build_adapters import ADAPTER_FORMATS, adapter_dir
from . import handover
from .core import exercise, expect
from .models import base_checkpoint, is_peft_model, lora_layers

NOTEBOOK = "load_lora_adapter_example"
FORMAT_NAMES = {"iso": "ISO (2021-03-05)", "us": "EE. UU. (03/05/2021)", "en": "inglés (March 5, 2021)"}
MAX_DIFF_FP32 = 1e-3  # max|Δlogits| aceptable entre fusionado y adaptador en float32
MAX_DIFF_HALF = 1.0  # en float16/bfloat16 el redondeo pesa más
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
SAMPLE_EVERY = 5  # capas que se miran al comparar pesos: una de cada cinco (q_proj y v_proj alternas)


# ---------------------------------------------------------------- utilidades
def _type_name(obj) -> str:
    return type(obj).__name__


def _is_torch_model(obj) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


@functools.lru_cache(maxsize=None)
def _shipped_weights(fmt: str) -> dict:
    """Pesos LoRA del adaptador publicado ``adapters/<fmt>`` (claves como las guarda PEFT)."""
    from safetensors.torch import load_file

    return load_file(adapter_dir(fmt) / "adapter_model.safetensors")


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
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


def _answers_for(fmt: str, n: int) -> list[str]:
    from ..data import answer, make_splits

    return [answer(row) for row in make_splits(fmt)["test"].select(range(n))]


# ---------------------------------------------------------------- 🐢 cargar
@exercise(NOTEBOOK, handover={"model": handover.Model()}, hint=(
    "Importa `from peft import PeftModel` y envuelve el modelo base con el adaptador guardado: "
    "`model = PeftModel.from_pretrained(base, ADAPTER_DIRS['iso'], adapter_name='iso')`. "
    "No hace falta `get_peft_model` ni `LoraConfig`: la configuración viene en `adapter_config.json`."
))
def load_adapter(model):
    """El modelo con el adaptador ISO de ``adapters/iso`` cargado y activo."""
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
    config = model.peft_config[active]
    return (f"Adaptador ISO cargado como '{active}' y activo: {len(layers)} capas LoRA "
            f"({', '.join(sorted(config.target_modules))}), r={config.r}.")


def _expect_plain_model(model, name: str, call: str, lora_advice: str) -> None:
    """``model`` es lo que devuelve ``call``: un modelo de transformers sin PeftModel ni capas LoRA."""
    expect(model is not None, f"`{name}` es None: guarda lo que devuelve `{call}`.")
    expect(_is_torch_model(model), f"`{name}` es un {_type_name(model)}, no un modelo: pasa lo que devuelve "
                                   f"`{call}`.")
    expect(not is_peft_model(model), f"`{name}` todavía es un PeftModel: `{call}` devuelve el modelo sin "
                                      f"envoltorio (`{name} = {call}`).")
    lora_left = lora_layers(model)
    expect(not lora_left, f"`{name}` todavía tiene {len(lora_left)} capas LoRA dentro. {lora_advice}")


# ---------------------------------------------------------------- 🐕 fusionar
@exercise(NOTEBOOK, handover={"merged": handover.Model(), "max_diff": handover.Value(), "merged_dir": handover.Folder()}, hint=(
    "`merged = merge_model.merge_and_unload()` devuelve el modelo fusionado (ya no es un PeftModel). Calcula "
    "`max_diff` con `(logits(merged, tokenizer, merge_prompts) - adapter_logits).abs().max().item()` usando los "
    "logits del adaptador que calculaste ANTES de fusionar, y guarda con `merged.save_pretrained(MERGED_DIR)` "
    "y `tokenizer.save_pretrained(MERGED_DIR)`."
))
def merge_adapter(merged, max_diff, merged_dir):
    """El modelo fusionado con el adaptador ISO, su max|Δlogits| frente al adaptador y la carpeta guardada."""
    import torch

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
                                    f"{errors['iso']:.2f}). ¿Fusionaste dos veces o sobre un modelo ya modificado? "
                                    "Fusiona una copia recién cargada.")
    # max|Δlogits|
    expect(max_diff is not None, "`max_diff` es None: calcula max|Δlogits| entre `merged` y el adaptador sobre "
                                 "`merge_prompts`.")
    expect(isinstance(max_diff, (int, float, torch.Tensor)) and not isinstance(max_diff, bool),
           f"`max_diff` es un {_type_name(max_diff)}: debe ser un número (usa `.item()` si es un tensor).")
    value = float(max_diff)
    tolerance = MAX_DIFF_FP32 if dtype == torch.float32 else MAX_DIFF_HALF
    expect(math.isfinite(value) and value >= 0, f"`max_diff` = {value}: debe ser un valor absoluto finito (≥ 0).")
    expect(value != 0.0, "`max_diff` es exactamente 0: parece que comparaste el modelo fusionado consigo mismo. "
                         "`merge_and_unload()` modifica el modelo en su sitio: calcula los logits del adaptador "
                         "ANTES de fusionar (o en otra copia, como `adapter_model`).")
    expect(value <= tolerance, f"`max_diff` = {value:.3g} es demasiado grande (en {str(dtype).removeprefix('torch.')} "
                               f"se espera ≤ {tolerance:g}). ¿Comparaste con el modelo base en vez del adaptador, o "
                               "con logits de otros prompts?")
    # la carpeta guardada
    expect(merged_dir is not None, "`merged_dir` es None: pasa la carpeta donde guardaste el modelo fusionado.")
    expect(isinstance(merged_dir, (str, Path)), f"`merged_dir` es un {_type_name(merged_dir)}: pasa una ruta.")
    folder = Path(merged_dir)
    expect(folder.is_dir(), f"La carpeta `{folder}` no existe: guarda con `merged.save_pretrained(MERGED_DIR)`.")
    names = {p.name for p in folder.iterdir()}
    expect(not ("adapter_config.json" in names and "config.json" not in names),
           f"`{folder}` contiene un adaptador (adapter_config.json), no el modelo fusionado. Guarda `merged`, "
           "no el PeftModel.")
    expect("config.json" in names, f"`{folder}` no tiene config.json: ¿guardaste `merged.save_pretrained(...)` ahí?")
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    expect(not pickles, f"En `{folder}` hay archivos pickle ({', '.join(pickles)}). Guarda en safetensors "
                        "(`save_pretrained` lo hace por defecto; no uses `torch.save`).")
    shards = sorted(folder.glob("*.safetensors"))
    expect(shards, f"En `{folder}` no hay pesos `.safetensors`: guarda con `merged.save_pretrained(MERGED_DIR)`.")
    expect(names & {"tokenizer.json", "tokenizer_config.json"},
           f"En `{folder}` falta el tokenizador: `tokenizer.save_pretrained(MERGED_DIR)`, así la carpeta se "
           "carga sola.")
    key = _target_keys()[0]
    saved = next((_read_tensor(str(p), key) for p in shards if _has_key(p, key)), None)
    expect(saved is not None, f"Los pesos de `{folder}` no tienen la capa `{key}`: ¿es el modelo del curso?")
    expect(torch.allclose(saved.float(), weights[key], atol=1e-6),
           f"Los pesos guardados en `{folder}` no son los de `merged`: ¿guardaste antes de fusionar u otro modelo?")
    return (f"Fusionado correcto: pesos = base + ΔW del adaptador ISO, max|Δlogits| = {value:.2e} frente al "
            f"adaptador, y guardado en safetensors con su tokenizador en `{folder.name}/`.")


def _has_key(path: Path, key: str) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return key in f.keys()


# ---------------------------------------------------------------- 🦁 cambiar y descargar
@exercise(NOTEBOOK, handover={"answers_by_adapter": handover.Value(), "restored": handover.Model()}, hint=(
    "Recorre los nombres: `for name in ['iso', 'us', 'en']: model.set_adapter(name); answers_by_adapter[name] = "
    "generate(model, tokenizer, test_prompts)`. Al final, `restored = model.unload()` quita las capas LoRA y "
    "devuelve el modelo base (no uses `get_base_model()`, que las deja dentro, ni `merge_and_unload()`, que las "
    "fusiona)."
))
def switch_adapters(answers_by_adapter, restored):
    """Respuestas por adaptador ({'iso': [...], 'us': [...], 'en': [...]}) y el modelo tras ``unload()``."""
    expect(answers_by_adapter is not None, "`answers_by_adapter` es None: construye el diccionario "
                                           "{nombre del adaptador: lista de respuestas}.")
    expect(isinstance(answers_by_adapter, dict), f"`answers_by_adapter` es un {_type_name(answers_by_adapter)}; "
                                                 "debe ser un dict {nombre del adaptador: lista de respuestas}.")
    missing = [fmt for fmt in ADAPTER_FORMATS if fmt not in answers_by_adapter]
    expect(not missing, f"Faltan los adaptadores {', '.join(repr(m) for m in missing)} en `answers_by_adapter`. "
                        "Cárgalos con `model.load_adapter(ADAPTER_DIRS[nombre], adapter_name=nombre)` y usa su "
                        "nombre como clave.")
    columns = {}
    for fmt in ADAPTER_FORMATS:
        column = answers_by_adapter[fmt]
        expect(isinstance(column, (list, tuple)) and column and all(isinstance(a, str) for a in column),
               f"`answers_by_adapter['{fmt}']` debe ser una lista no vacía de respuestas (texto), como la que "
               "devuelve `generate`.")
        columns[fmt] = list(column)
    sizes = {len(c) for c in columns.values()}
    expect(len(sizes) == 1, "Las listas de respuestas tienen longitudes distintas: genera con los mismos prompts "
                            "para cada adaptador.")
    n = sizes.pop()
    expect(n <= 120, f"Hay {n} respuestas por adaptador; usa las primeras filas de test (como mucho 120).")
    expect(not (columns["iso"] == columns["us"] == columns["en"]),
           "Las tres columnas son idénticas: generaste siempre con el mismo adaptador. Llama a "
           "`model.set_adapter(nombre)` antes de cada `generate`.")
    from ..evaluation import exact_match

    expected = {fmt: _answers_for(fmt, n) for fmt in ADAPTER_FORMATS}
    needed = math.ceil(0.6 * n)
    for fmt, column in columns.items():
        scores = {other: exact_match(column, expected[other]) for other in ADAPTER_FORMATS}
        best = max(scores, key=scores.get)
        expect(best == fmt or scores[best] < needed,
               f"La columna '{fmt}' tiene respuestas del formato {FORMAT_NAMES[best]}: activa '{fmt}' con "
               f"`model.set_adapter('{fmt}')` antes de generar su columna.")
        expect(scores[fmt] >= needed, f"La columna '{fmt}' acierta solo {scores[fmt]}/{n} respuestas del formato "
                                      f"{FORMAT_NAMES[fmt]}. ¿Generaste con las primeras {n} filas de test "
                                      "(`test_prompts`) y con el adaptador correcto?")
    # el modelo tras unload()
    _expect_plain_model(restored, "restored", "model.unload()",
                        "`get_base_model()` devuelve el modelo con las capas inyectadas; `unload()` las quita.")
    weights = _model_weights(restored, _target_keys(every=SAMPLE_EVERY))
    error = _relative_error(weights, None, next(restored.parameters()).dtype)
    expect(error is None or error < 1e-3,
           "Los pesos de q_proj/v_proj ya no son los del modelo base: ¿usaste `merge_and_unload()`? Ese fusiona "
           "el adaptador en los pesos; `unload()` lo quita sin fusionar.")
    scores = {fmt: exact_match(columns[fmt], expected[fmt]) for fmt in ADAPTER_FORMATS}
    summary = ", ".join(f"{fmt} {scores[fmt]}/{n}" for fmt in ADAPTER_FORMATS)
    return (f"Cada adaptador responde en su formato ({summary}) y `unload()` devolvió el modelo base intacto, "
            "sin capas LoRA.")
