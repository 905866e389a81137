"""Comprobaciones del cuaderno ``lora_advanced``: ``from helpers.checks import advanced as checks``.

``checks.mixed_batch(model, mixed_prompts, mixed_names, mixed_answers)``,
``checks.cat_combination(model, exact_sum, combination_errors)``, ``checks.hotswap(swap_model)`` y
``checks.dpo_trainer(dpo_trainer)``. Cada una mide el modelo que recibe: vuelve a generar, compara ΔW
con los adaptadores publicados de ``adapters/``, cambia ella misma un adaptador en caliente o puntúa pares
de preferencias con fechas que el cuaderno no vio. Nunca reentrena. Los números que escribe el alumno
(``combination_errors``, lo que pidió en ``DPOConfig``) solo sirven para explicarle un fallo: no dan puntos.
"""

from __future__ import annotations

import ast
import functools
import json
import math

from ..advanced import (
    add_deltas,
    answer_format,
    fit_deltas,
    generate_mixed,
    implicit_margins,
    is_broken_answer,
    lora_deltas,
    preference_pairs,
    relative_difference,
)
from ..numbers import decimal, integer, percent, scientific
from ..shipped import ADAPTER_FORMATS
from . import handover
from .adapters import FORMAT_NAMES, _shipped_scaling, _shipped_weights, _which_shipped
from .cells import parse_cell
from .core import exercise, expect
from .models import adapter_off, is_peft_model, lora_layers

NOTEBOOK = "lora_advanced"
BASE = "__base__"
FORMAT_NAMES = {**FORMAT_NAMES, "dotted": "con puntos (05.03.2021)", "otro": "otro (ningún formato conocido)"}
PROBE_ROWS = 4  # fechas con las que se pone a prueba cada adaptador
# ‖ΔW − (ΔW_iso + ΔW_us)‖ / ‖ΔW_iso + ΔW_us‖ en float32. Medido: cat 6,9·10⁻⁸ (redondeo); el error real más
# pequeño, svd a rango 8, 5,9·10⁻²; linear 0,95. El umbral queda a ×1 400 del redondeo y ×590 de svd.
CAT_TOLERANCE = 1e-4
# Cambio en caliente: el rango del adaptador que la comprobación pone en el hueco (cat de iso y us, 8 + 8).
SWAP_RANK = 16
# Un ΔW que difiere del de un adaptador publicado menos que esto es ese adaptador (mismo umbral que cat:
# cargar y copiar pesos en float32 no deja error; el adaptador más cercano de los otros está a 0,9 o más).
SAME_DELTA = CAT_TOLERANCE

# DPO: qué se mide y con qué presupuesto. Medido con la fecha con puntos como elegida y lo que dice el base
# como rechazada, 12 pasos de 4 pares, tasa constante, margen medio en 5 × 8 fechas ocultas (β = 0,1), CPU
# de 2 núcleos compartida: tasa 1e-6 (la de DPOConfig) 0,014–0,015; 1e-4 1,49–1,57; 3e-4 3,9–4,3; 1e-3 10,8–12,1.
# Los adaptadores publicados, sin entrenar nada: iso 5,2–5,7; en 7,7–9,5; us 11,6–13,0 (hunden la respuesta del
# base); por eso se rechazan por su ΔW, no por el margen.
DPO_ROWS = 8  # pares (fechas ocultas) con los que se mide el margen
DPO_BETA = 0.1  # β con el que se mide el margen (el de DPOConfig por defecto)
DPO_MAX_STEPS = 12  # presupuesto: pasos del optimizador (lotes de DPO_BATCH pares)
DPO_DEFAULT_LR = 1e-6  # la tasa por defecto de DPOConfig
DPO_SLOW_LR = 1e-5  # una tasa máxima registrada hasta aquí es «la de por defecto o parecida»
# Margen medio mínimo: ×33 por encima de la tasa por defecto con todo el presupuesto (0,015) y ×3 por debajo
# de 1e-4 (1,5), la menor tasa razonable medida.
DPO_MIN_MARGIN = 0.5
# |cos| entre el ΔW del adaptador y el de un adaptador publicado. Medido: DPO entrenado de verdad 0,015–0,03 con
# cualquier tasa; los publicados entre sí 0,16–0,19; un publicado ×1,01, rellenado a r=32 o recortado a r=2,
# 0,98–1,0. Umbral: ×17 por encima de lo entrenado, lejos de las copias.
DPO_MAX_SHIPPED_SIMILARITY = 0.5
# max|B| / Σ tasas (B empieza en cero y Adam mueve cada peso como mucho ~una tasa por paso). Medido en DPO de 12
# pasos: 0,89 (1e-3), 0,99 (3e-4), 1,02 (1e-4 y 1e-6). Un historial con tasas 100 veces menores que las reales
# da ~90.
DPO_MAX_UPDATE_RATIO = 2.0
# Respuestas voraces rotas (``is_broken_answer``: sin cifras o un carácter repetido) que se toleran en las DPO_ROWS
# fechas ocultas, una vez que el margen pasa. Observado: tasa 10⁻¹, 12 pasos → todas «................» (margen
# medio 75,75; issue 29); la solución (3·10⁻⁴), 0 de 32 en el cuaderno. El modelo base sin cambios también da
# respuestas sin cifras (3 de las 8 ocultas de la semilla 11: «La fecha de la noche de la noche…»), por eso la
# regla va después del margen: un modelo que aún habla como el base falla antes por el margen, con su mensaje.
DPO_MAX_BROKEN = 2


def _type_name(obj) -> str:
    return type(obj).__name__


def _expect_peft(model, name: str, advice: str) -> None:
    import torch

    expect(model is not None, f"`{name}` es None. {advice}")
    expect(not isinstance(model, handover.Unexpected), f"`{name}` no es lo que se pide: llegó {model}. {advice}")
    expect(isinstance(model, torch.nn.Module), f"`{name}` es un {_type_name(model)}, no un modelo. {advice}")
    expect(is_peft_model(model), f"`{name}` es un {_type_name(model)} sin adaptadores (no es un PeftModel). {advice}")
    expect(lora_layers(model), f"`{name}` no tiene capas LoRA: ¿las quitaste con `unload()`? {advice}")


def _tokenizer():
    from ..model import load_tokenizer

    return load_tokenizer()


@functools.cache
def _shipped_factors(fmt: str) -> dict:
    """{capa: (A, B)} del adaptador publicado ``adapters/<fmt>`` (claves como las de ``lora_deltas``)."""
    weights = _shipped_weights(fmt)
    found = {}
    for key, a in weights.items():
        if key.endswith(".lora_A.weight"):
            stem = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            found[stem] = (a.float(), weights[key.replace("lora_A", "lora_B")].float())
    return found


def _shipped_deltas(fmt: str) -> dict:
    """ΔW = escala · B · A de cada capa del adaptador publicado ``adapters/<fmt>``."""
    scaling = _shipped_scaling(fmt)
    return {key: (b @ a) * scaling for key, (a, b) in _shipped_factors(fmt).items()}


def _cross_deltas(first: str, second: str) -> dict:
    """Los términos cruzados que añade ``combination_type="linear"``: s·(B₁A₂ + B₂A₁) de cada capa."""
    scaling = _shipped_scaling(first)
    one, two = _shipped_factors(first), _shipped_factors(second)
    return {key: scaling * (b1 @ two[key][0] + two[key][1] @ a1) for key, (a1, b1) in one.items()}


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
            with adapter_off(model):
                out = generate(model, tokenizer, group)
        else:
            model.set_adapter(name)
            out = generate(model, tokenizer, group)
        for i, text in zip(rows, out):
            answers[i] = text
    model.set_adapter(previous)
    return answers


def _cell_that_assigned(name: str) -> str | None:
    """En el kernel del alumno, el código de la última celda ejecutada que asigna ``name`` (None fuera de IPython).

    Solo sirve para comentar CÓMO se hizo algo (el juez, en otro proceso, no lo ve ni lo puntúa).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    history = list(shell.user_ns.get("In", [])) if shell is not None else []
    for source in reversed(history[:-1]):  # la última es la celda de la comprobación
        try:
            tree = parse_cell(source)
        except SyntaxError:
            continue
        targets = {t.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                   for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        if name in targets:
            return source
    return None


def _called(call: ast.Call) -> str:
    """El nombre de lo que se llama: ``model.generate(...)`` → ``generate``; ``generate(...)`` → ``generate``."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _how_generated(source: str | None) -> str:
    """Una nota si la celda de ``mixed_answers`` no usó una sola llamada a ``generate`` con ``adapter_names``."""
    if not source:
        return ""
    try:
        tree = parse_cell(source)
    except SyntaxError:
        return ""
    loops = [node for node in ast.walk(tree) if isinstance(node, (ast.For, ast.While, ast.comprehension))]
    in_loop = {id(n) for loop in loops for n in ast.walk(loop)}
    calls = [(node, _called(node)) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    generates = [c for c, name in calls if name in ("generate", "generate_mixed")]
    switches = sorted({name for _, name in calls if name in ("set_adapter", "disable_adapter")})
    mixed = [c for c in generates if _called(c) == "generate_mixed" or any(k.arg == "adapter_names" for k in c.keywords)]
    looped = [c for c in generates if id(c) in in_loop]
    if not generates or (mixed and not looped and len(generates) == 1):
        return ""  # sin `generate` en la celda (p. ej. una función de otra celda) no se puede decir cómo
    how = (f"{len(generates)} llamadas a `generate`" if len(generates) != 1 else "una llamada a `generate`")
    if looped:
        how = "un bucle que llama a `generate` una vez por vuelta"
    if switches:
        how += " y cambia de adaptador con `" + "` y `".join(switches) + "`"
    return (f" Ojo: según tu celda, las generaste con {how}. Las respuestas coinciden, así que la comprobación (y la "
            "corrección, que solo ve los datos) no puede distinguirlo y el punto cuenta; pero el ejercicio pide UNA "
            "sola llamada a `model.generate(..., adapter_names=mixed_names)`, que sirve todas las filas en una "
            "pasada (mira en la sección siguiente cuánto se gana).")


# ---------------------------------------------------------------- 🐢 un lote, varios adaptadores
@exercise(NOTEBOOK, handover={"model": handover.Model(), "prompts": handover.Value(), "names": handover.Value(),
                              "answers": handover.Value()}, hint=(
    ("Un `PeftModel` puede llevar varios adaptadores, cada uno con su nombre: el primero entra al crear el "
    "`PeftModel` y los demás se añaden. Después, `model.generate` acepta `adapter_names`: un nombre por fila del "
    "lote (\"__base__\" = sin adaptador). Prepara el lote con `encode_prompts` y quédate con el texto nuevo con "
    "`decode_new`."),
    ("`model = PeftModel.from_pretrained(fresh_base(), ADAPTER_DIRS[\"iso\"], adapter_name=...)`, "
    "`model.load_adapter(..., adapter_name=...)` para us y en; después "
    "`batch = encode_prompts(tokenizer, mixed_prompts, DEVICE)`, "
    "`out = model.generate(**batch, adapter_names=..., max_new_tokens=MAX_NEW_TOKENS, do_sample=False)` y "
    "`mixed_answers = decode_new(tokenizer, out, batch)`."),
))
def mixed_batch(model, prompts, names, answers, examples=None):
    """Los tres adaptadores en un PeftModel; un solo ``generate(..., adapter_names=...)`` los sirve a la vez.

    Lo que certifica el punto es el resultado: el modelo entregado lleva iso, us y en de ``adapters/`` con sus
    nombres, y un lote mezclado que genera la propia comprobación (fechas nuevas) responde cada fila en el
    formato de su adaptador. Las respuestas del alumno deben ser las de cada adaptador por separado (un bucle
    con ``set_adapter`` daría las mismas: eso no se puede distinguir en los datos). En el cuaderno, la
    comprobación lee además la celda que asignó ``mixed_answers`` y, si usó un bucle, se lo dice (sin
    cambiar el veredicto, que es el mismo que dará la corrección).
    """
    from ..data import Examples, answer

    _expect_peft(model, "model", "Crea un PeftModel con `PeftModel.from_pretrained` y añade los otros dos "
                                 "adaptadores con `load_adapter`.")
    missing = [fmt for fmt in ADAPTER_FORMATS if fmt not in model.peft_config]
    expect(not missing, f"Faltan los adaptadores {', '.join(map(repr, missing))} en el modelo (tiene "
                        f"{', '.join(map(repr, model.peft_config))}): carga cada carpeta de `ADAPTER_DIRS` con "
                        "`adapter_name=` igual a su formato.")
    for fmt in ADAPTER_FORMATS:
        found = _which_shipped(model, fmt)
        expect(found == fmt, f"El adaptador '{fmt}' del modelo no es el de `adapters/{fmt}`"
                             + (f" (es el de `adapters/{found}`)" if found else "") + ": cárgalo de "
                             f"`ADAPTER_DIRS[\"{fmt}\"]`.")
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
                                "activo. Pasa a `model.generate` un nombre de adaptador por fila (`adapter_names`).")
        expect(False, f"La fila {i + 1} ('{names[i]}') respondió {answers[i]!r}, pero con solo ese adaptador "
                      f"responde {alone[i]!r}. ¿Generaste con otros nombres u otro orden? Usa `mixed_names` tal cual.")
    # el resultado: un lote mezclado que genera la comprobación, con otras fechas
    live = examples is None  # en el cuaderno del alumno (la corrección pasa fechas ocultas)
    examples = examples or Examples("test")
    cycle = [*ADAPTER_FORMATS, BASE]
    probe_names = [cycle[i % len(cycle)] for i in range(PROBE_ROWS * len(cycle))]
    rows = {fmt: examples.rows(fmt, len(probe_names)) for fmt in ADAPTER_FORMATS}
    probe = generate_mixed(model, tokenizer, [r["prompt"] for r in rows["iso"]], probe_names)
    right = sum(out == answer(rows[name][i]) for i, (out, name) in enumerate(zip(probe, probe_names))
                if name != BASE)
    total = PROBE_ROWS * len(ADAPTER_FORMATS)
    base_in_format = sum(answer_format(out) != "otro" for out, name in zip(probe, probe_names) if name == BASE)
    needed = math.ceil(0.75 * total)
    expect(right >= needed, f"En un lote mezclado con otras fechas, cada adaptador en su fila acierta solo "
                            f"{right}/{total}: ¿son los adaptadores de `adapters/`, sin cambiar?")
    where = (f"{len(probe_names)} fechas que el cuaderno no vio" if examples.is_hidden
             else f"otras {len(probe_names)} fechas del conjunto de prueba")
    note = _how_generated(_cell_that_assigned("mixed_answers")) if live else ""
    return (f"Tus {len(names)} filas son las de cada adaptador por separado. Con {where}, en un "
            f"solo lote mezclado: {right}/{total} aciertos en el formato de su adaptador, y las filas "
            f"\"{BASE}\" responden como el modelo base ({base_in_format} de {PROBE_ROWS} en algún formato).{note}")


# ---------------------------------------------------------------- 🐕 combinar: ¿qué tipo suma exactamente?
@exercise(NOTEBOOK, handover={"model": handover.Model(), "name": handover.Value(), "errors": handover.Value()},
          hint=(
    ("Crea una combinación de iso y us (pesos 1 y 1) por cada tipo, cada una con su nombre, y mide cada una frente "
    "a `delta_sum` con `relative_difference(lora_deltas(model, nombre), delta_sum)`. La suma exacta deja solo el "
    "redondeo de float32 (del orden de 10⁻⁷); una combinación aproximada se aleja mucho más."),
    ("```\ncombination_errors = {}\nfor kind in COMBINATION_TYPES:\n    name = f\"iso_us_{kind}\"\n"
    "    model.add_weighted_adapter([...], [...], name, combination_type=...)\n"
    "    combination_errors[name] = relative_difference(..., delta_sum)\n"
    "exact_sum = min(combination_errors, key=...)\n```"),
))
def cat_combination(model, name, errors=None):
    """El adaptador ``name`` del modelo tiene exactamente ΔW_iso + ΔW_us (medido con los archivos publicados).

    ``errors`` (lo que midió el alumno) es solo para comentarlo: la comprobación mide por su cuenta.
    """
    _expect_peft(model, "model", "Pasa el PeftModel con los adaptadores iso y us cargados y las combinaciones.")
    expect(isinstance(name, str), f"`exact_sum` debe ser el nombre (texto) del adaptador combinado que suma "
                                  f"exactamente; es un {_type_name(name)}.")
    expect(name in model.peft_config, f"El modelo no tiene ningún adaptador '{name}' (tiene "
                                      f"{', '.join(map(repr, model.peft_config))}). Crea las combinaciones con "
                                      "`model.add_weighted_adapter` y guarda en `exact_sum` el nombre de una.")
    iso, us = _shipped_deltas("iso"), _shipped_deltas("us")
    deltas = lora_deltas(model, name)
    expect(set(deltas) == set(iso), f"El adaptador '{name}' no toca las mismas capas que iso y us "
                                    f"({len(deltas)} capas frente a {len(iso)}).")
    target = add_deltas(iso, us)
    measured = relative_difference(deltas, target)
    rank = model.peft_config[name].r
    if measured > CAT_TOLERANCE:
        for fmt in ADAPTER_FORMATS:
            expect(relative_difference(deltas, _shipped_deltas(fmt)) > CAT_TOLERANCE,
                   f"'{name}' es el adaptador {fmt} tal cual, no una combinación: elige el nombre de una de las "
                   "que creaste con `add_weighted_adapter`.")
        _diagnose_combination(name, rank, measured, deltas, iso, us)
    praise = (f"'{name}' (rango {rank}) suma exactamente los dos adaptadores: lo medí con los archivos de "
              f"`adapters/` y ‖ΔW − (ΔW_iso + ΔW_us)‖ / ‖ΔW_iso + ΔW_us‖ = {scientific(measured)}.")
    return praise + _errors_feedback(model, errors, target)


def _weights(first: float, second: float) -> str:
    return f"pesos {decimal(first, 2)} y {decimal(second, 2)}"


def _unit_weights(first: float, second: float) -> bool:
    return abs(first - 1) <= 0.01 and abs(second - 1) <= 0.01


# Tras un ajuste de pesos, un residuo por debajo de esto es «exactamente esa mezcla» (el redondeo de float32 deja
# ~10⁻⁷); un coeficiente de términos cruzados por encima de CROSS_MIN es `linear` (√(w₁w₂): 1 con pesos 1 y 1).
CROSS_MIN = 1e-3
RERUN_NOTE = (" Si cambiaste los pesos y volviste a ejecutar la celda con los mismos nombres, `add_weighted_adapter` "
              "no hizo nada: PEFT no reemplaza un adaptador que ya existe y se queda el viejo. Las primeras líneas "
              "de la celda los borran (`delete_adapter`) para que cada ejecución empiece de cero.")


def _diagnose_combination(name, rank, measured, deltas, iso, us) -> None:
    """Falla con lo que ES el adaptador, medido: qué tipo de combinación y con qué pesos (ajustados por mínimos
    cuadrados sobre ΔW_iso, ΔW_us y los términos cruzados de `linear`)."""
    found, rest = fit_deltas(deltas, {"iso": iso, "us": us, "cruzados": _cross_deltas("iso", "us")})
    w_iso, w_us = found["iso"], found["us"]
    off = "" if _unit_weights(w_iso, w_us) else " Además, sus pesos no son 1 y 1: el ejercicio pide [1.0, 1.0]."
    if rest <= CAT_TOLERANCE and abs(found["cruzados"]) > CROSS_MIN:
        expect(False, f"'{name}' se hizo con `linear` ({_weights(w_iso, w_us)}, medidos en sus pesos): se aleja de "
                      f"la suma un {percent(measured, 0)} (error relativo {decimal(measured, 2)}, rango {rank}). "
                      "`linear` suma por separado las A y las B, y al multiplicar B·A aparecen términos cruzados "
                      "(B_iso·A_us y B_us·A_iso) que no son de ningún adaptador. Mira cuál de tus combinaciones dio "
                      f"un error del orden de 10⁻⁷.{off}")
    if rest <= CAT_TOLERANCE:
        label = ("la media" if abs(w_iso - 0.5) <= 0.01 and abs(w_us - 0.5) <= 0.01
                 else "iso − us" if abs(w_iso - 1) <= 0.01 and abs(w_us + 1) <= 0.01 else "una mezcla")
        sign = "−" if w_us < 0 else "+"
        expect(False, f"El ΔW de '{name}' es exactamente {label}: {decimal(w_iso, 2)}·ΔW_iso {sign} "
                      f"{decimal(abs(w_us), 2)}·ΔW_us ({_weights(w_iso, w_us)}, medidos en sus pesos; rango {rank}), no "
                      "iso + us: combina [\"iso\", \"us\"] con pesos [1.0, 1.0]." + RERUN_NOTE)
    for label, other in (("iso + en", "en"), ("us + en", "en")):
        first = iso if label.startswith("iso") else us
        expect(relative_difference(deltas, add_deltas(first, _shipped_deltas(other))) > CAT_TOLERANCE,
               f"El ΔW de '{name}' es exactamente {label}, no iso + us: combina [\"iso\", \"us\"] con pesos "
               "[1.0, 1.0].")
    pair, pair_rest = fit_deltas(deltas, {"iso": iso, "us": us})
    expect(not (rank < 16 and pair_rest < 0.5),
           f"'{name}' tiene rango {rank} y se aleja de la suma un {percent(measured, 1)} (error relativo "
           f"{scientific(measured)}): es `svd` ({_weights(pair['iso'], pair['us'])}, medidos en sus pesos), que "
           f"calcula la suma y se queda con sus {rank} direcciones principales; lo que no cabe en ese rango se "
           "pierde. La suma de dos adaptadores de rango 8 puede necesitar rango 16: ¿cuál de tus combinaciones "
           "tiene ese rango?" + ("" if _unit_weights(pair["iso"], pair["us"]) else
                                 " Además, sus pesos no son 1 y 1: el ejercicio pide [1.0, 1.0]."))
    expect(False, f"El ΔW de '{name}' no es ΔW_iso + ΔW_us (error relativo {scientific(measured)}, rango "
                  f"{rank}). Crea las combinaciones sobre los adaptadores iso y us recién cargados, con pesos "
                  "[1.0, 1.0].")


def _errors_feedback(model, errors, target) -> str:
    """Compara lo que midió el alumno con lo que mide la comprobación (sin puntos: solo lo comenta)."""
    if errors is None:
        return ""
    if not isinstance(errors, dict) or not errors:
        return (f" (Tus medidas, `combination_errors`, deberían ser un dict {{nombre: error}}; es un "
                f"{_type_name(errors)}.)")
    notes = []
    for label, value in errors.items():
        if label not in model.peft_config or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        mine = relative_difference(lora_deltas(model, label), target)
        close = abs(value - mine) <= max(1e-6, 0.05 * mine)
        notes.append(f"'{label}' {scientific(mine)}" + ("" if close else f" (tú: {scientific(value)})"))
    if not notes:
        return ""
    return " Mis medidas de tus combinaciones: " + "; ".join(notes) + "."


# ---------------------------------------------------------------- 🐕 cambio en caliente, preparado para compilar
class PreparedModel(handover.Model):
    """Un modelo con sus capas LoRA tal como están, también tras ``prepare_model_for_compiled_hotswap``.

    ``handover.Model`` guarda los adaptadores con ``save_pretrained``, que escribe la ``LoraConfig`` del modelo
    (la del primer adaptador cargado: el cambio en caliente no la toca) junto a tensores que pueden tener más
    filas (el relleno de ``target_rank``) y otra escala (la del adaptador que entró en caliente). Aquí viajan
    también las filas y la escala de verdad y si las escalas son tensores (``prepare`` las convierte); quien
    corrige reconstruye el mismo estado.
    """

    name = "modelo con LoRA tal cual"
    RECORD = "lora_tal_cual.json"

    def dump(self, value, folder):
        import torch

        super().dump(value, folder)
        record = {}
        if is_peft_model(value):
            layers = [module for _, module in lora_layers(value)]
            for adapter in value.peft_config:
                mine = [m for m in layers if adapter in m.lora_A]
                rows = {int(m.lora_A[adapter].weight.shape[0]) for m in mine}
                scales = {float(m.scaling[adapter]) for m in mine}
                tensors = {isinstance(m.scaling[adapter], torch.Tensor) for m in mine}
                if len(rows) != 1 or len(scales) != 1 or len(tensors) != 1:
                    continue  # rangos distintos por capa: viaja como lo guarda PEFT
                (r,), (scale,), (tensor,) = rows, scales, tensors
                path = folder / "adaptadores" / ("" if adapter == "default" else adapter) / "adapter_config.json"
                saved = json.loads(path.read_text(encoding="utf-8"))
                record[adapter] = {"tensor_scaling": tensor, "r": saved.get("r"), "lora_alpha": saved.get("lora_alpha"),
                                   "use_rslora": bool(saved.get("use_rslora"))}
                saved.update(r=r, lora_alpha=scale * r, use_rslora=False)  # lo que hay: filas y escala
                path.write_text(json.dumps(saved), encoding="utf-8")
        (folder / self.RECORD).write_text(json.dumps(record), encoding="utf-8")

    def _record(self, folder) -> dict:
        """El registro, validado como datos: {adaptador: {r, lora_alpha, use_rslora, tensor_scaling}}."""
        from .whitelist import read_json, refuse

        record = read_json(folder / self.RECORD, cap=64 * 2**10, label=self.RECORD)
        refuse(isinstance(record, dict) and len(record) <= handover.MAX_ADAPTERS,
               f"{self.RECORD} no es un diccionario de adaptadores")
        for saved in record.values():
            refuse(isinstance(saved, dict) and isinstance(saved.get("tensor_scaling"), bool)
                   and isinstance(saved.get("r"), int) and not isinstance(saved.get("r"), bool)
                   and 0 < saved["r"] <= 4096 and isinstance(saved.get("lora_alpha"), (int, float))
                   and not isinstance(saved.get("lora_alpha"), bool) and math.isfinite(saved["lora_alpha"])
                   and isinstance(saved.get("use_rslora", False), bool),
                   f"{self.RECORD}: una entrada con una forma desconocida")
        return record

    def validate(self, folder):
        checked = super().validate(folder)  # lo que devuelva Model.validate (las configuraciones validadas)
        self._record(folder)
        return checked

    def load(self, folder):
        import torch

        record = self._record(folder)
        model = super().load(folder)
        if isinstance(model, handover.Unexpected) or not is_peft_model(model):
            return model
        for adapter, saved in record.items():
            if adapter not in model.peft_config:
                return handover.Unexpected(f"un modelo con un registro de un adaptador que no tiene ({adapter[:40]})")
            if saved["tensor_scaling"]:
                for _, module in lora_layers(model):
                    if adapter in module.scaling:
                        module.scaling[adapter] = torch.tensor(float(module.scaling[adapter]))
            config = model.peft_config[adapter]  # la LoraConfig que tenía el modelo (la del primer adaptador)
            config.r, config.lora_alpha = saved["r"], saved["lora_alpha"]
            config.use_rslora = saved.get("use_rslora") or False
        return model


def _rank16_state(adapter_name: str) -> dict:
    """Los pesos de ``cat`` de iso y us (rango 16, escala 1) con las claves de un PeftModel y ``adapter_name``."""
    import torch

    iso, us = _shipped_factors("iso"), _shipped_factors("us")
    state = {}
    for key, (a_iso, b_iso) in iso.items():
        a_us, b_us = us[key]
        stem = f"base_model.model.{key}"
        state[f"{stem}.lora_A.{adapter_name}.weight"] = torch.cat([a_iso * _shipped_scaling("iso"),
                                                                   a_us * _shipped_scaling("us")], dim=0)
        state[f"{stem}.lora_B.{adapter_name}.weight"] = torch.cat([b_iso, b_us], dim=1)
    return state


def _slot_shapes(model, adapter: str) -> dict:
    return {key: (tuple(m.lora_A[adapter].weight.shape), tuple(m.lora_B[adapter].weight.shape))
            for key, m in lora_layers(model) if adapter in m.lora_A}


@exercise(NOTEBOOK, handover={"model": PreparedModel()}, hint=(
    ("Con un modelo compilado, un adaptador que entra en caliente debe caber en los tensores que ya hay: misma "
    "forma y escala guardada como tensor. `prepare_model_for_compiled_hotswap` lo prepara ANTES (rellena con "
    "ceros hasta `target_rank` y convierte las escalas). Mide el rango de cada adaptador que vas a servir "
    "(`model.peft_config[nombre].r`): el relleno tiene que llegar al mayor. Después, el cambio en caliente a `us`."),
    ("`swap_model = PeftModel.from_pretrained(fresh_base(), ADAPTER_DIRS[\"iso\"])`, "
    "`prepare_model_for_compiled_hotswap(swap_model, target_rank=...)` y "
    "`hotswap_adapter(swap_model, ADAPTER_DIRS[...], adapter_name=...)`."),
))
def hotswap(model, examples=None):
    """Un modelo preparado para cambiar en caliente sin recompilar, con ``us`` en su único adaptador.

    La comprobación mira el hueco (filas de relleno, escalas como tensores, pesos de ``adapters/us``), pone
    ella misma en caliente el adaptador de rango 16 (``cat`` de iso y us) en una copia y mide si algún tensor
    cambió de forma; después prueba ``us`` con fechas nuevas.
    """
    import copy

    import torch
    from peft import LoraConfig
    from peft.utils.hotswap import hotswap_adapter_from_state_dict

    from ..data import Examples, answer
    from ..evaluation import generate

    _expect_peft(model, "swap_model", "Carga `adapters/iso` con `PeftModel.from_pretrained(fresh_base(), "
                                      "ADAPTER_DIRS[\"iso\"])`, prepáralo y cambia sus pesos en caliente.")
    names = list(model.peft_config)
    expect(len(names) == 1, f"`swap_model` tiene {len(names)} adaptadores ({', '.join(names)}): `load_adapter` "
                            "añade uno nuevo (capas nuevas, y un modelo compilado se recompila). El cambio en "
                            "caliente reutiliza el que ya está: `hotswap_adapter(..., adapter_name=\"default\")`.")
    slot = names[0]
    deltas = lora_deltas(model, slot)
    distance = {fmt: relative_difference(deltas, _shipped_deltas(fmt)) for fmt in ADAPTER_FORMATS}
    rank16 = relative_difference(deltas, add_deltas(_shipped_deltas("iso"), _shipped_deltas("us")))
    expect(distance["iso"] > SAME_DELTA, "El adaptador sigue teniendo los pesos de `adapters/iso`: todavía no "
                                         "cambiaste nada. Pon en caliente los de `ADAPTER_DIRS[\"us\"]`.")
    expect(rank16 > SAME_DELTA, "El hueco lleva ya el adaptador de rango 16 (iso + us): el ejercicio pide servir "
                                "ahora `us`; del de rango 16 se encarga la comprobación, para ver si cabe.")
    other = next((fmt for fmt in ADAPTER_FORMATS if fmt != "us" and distance[fmt] <= SAME_DELTA), None)
    expect(other is None, f"El adaptador tiene ahora los pesos de `adapters/{other}` ({FORMAT_NAMES.get(other)}); "
                          "el ejercicio pide `adapters/us`.")
    expect(distance["us"] <= SAME_DELTA, f"Los pesos del adaptador no son los de ningún adaptador de `adapters/` "
                                         f"(el más cercano, us, difiere un {percent(min(distance['us'], 1), 0)}).")
    layers = [m for _, m in lora_layers(model) if slot in m.lora_A]
    tensors = [isinstance(m.scaling[slot], torch.Tensor) for m in layers]
    rows = min(int(m.lora_A[slot].weight.shape[0]) for m in layers)
    expect(all(tensors), f"El modelo no está preparado para un cambio en caliente compilado: las escalas "
                         f"(lora_alpha / r) siguen siendo números de Python, no tensores, y sus {rows} filas son las "
                         "del adaptador que cargaste. Con `torch.compile`, cambiar un número así o la forma de un "
                         "tensor obliga a recompilar. Llama a `prepare_model_for_compiled_hotswap(swap_model, "
                         "target_rank=...)` después de cargar y antes de cambiar.")
    # la medida: la comprobación pone en caliente el adaptador de rango 16 en una copia
    trial = copy.deepcopy(model)
    before = _slot_shapes(trial, slot)
    config = LoraConfig(r=SWAP_RANK, lora_alpha=SWAP_RANK, target_modules=sorted({k.split(".")[-1] for k in before}))
    hotswap_adapter_from_state_dict(trial, _rank16_state(slot), adapter_name=slot, config=config)
    after = _slot_shapes(trial, slot)
    grew = [key for key in before if before[key] != after[key]]
    swapped_error = relative_difference(lora_deltas(trial, slot), add_deltas(_shipped_deltas("iso"),
                                                                             _shipped_deltas("us")))
    del trial
    if grew:
        was, now = before[grew[0]][0][0], after[grew[0]][0][0]
        expect(False, f"Preparaste el modelo, pero con {was} filas el adaptador de rango {SWAP_RANK} (iso + us) no "
                      f"cabe: al ponerlo en caliente, lora_A pasó de {was} a {now} filas en {len(grew)} capas, y un "
                      "modelo compilado se recompilaría. `target_rank` tiene que llegar al mayor rango de los "
                      "adaptadores que vas a servir: mídelo.")
    expect(swapped_error <= SAME_DELTA, f"Tras poner en caliente el adaptador de rango {SWAP_RANK}, su ΔW no es "
                                        f"el esperado (error relativo {scientific(swapped_error)}): ¿tocaste las "
                                        "escalas a mano?")
    examples = examples or Examples("test")
    rows_us = examples.rows("us", PROBE_ROWS)
    out = generate(model, _tokenizer(), [r["prompt"] for r in rows_us])
    right = sum(o == answer(r) for o, r in zip(out, rows_us))
    expect(right >= PROBE_ROWS - 1, f"Tras el cambio, el modelo acierta solo {right}/{PROBE_ROWS} fechas en "
                                    "formato EE. UU.: ¿está activo el adaptador?")
    spare = (f" Reservaste {rows} filas: caben, aunque con {SWAP_RANK} bastaba (cada paso multiplica también las "
             "filas de ceros)." if rows > SWAP_RANK else "")
    where = "fechas que el cuaderno no vio" if examples.is_hidden else "fechas de prueba"
    return (f"El adaptador '{slot}' lleva los pesos de `adapters/us` en tensores de {rows} filas con las escalas "
            f"como tensores, y responde en formato EE. UU. ({right}/{PROBE_ROWS} {where}). Puse en "
            f"caliente el de rango {SWAP_RANK} (iso + us) en una copia: ningún tensor cambió de forma, así que "
            f"un modelo compilado no se recompilaría.{spare}")


# ---------------------------------------------------------------- 🦁 DPO: elegir tasa y pasos con un presupuesto
def _stray_lora_layers(model) -> list[str]:
    """Capas con LoRA del adaptador activo que su ``LoraConfig`` no pide (restos de un ``get_peft_model`` anterior)."""
    config = model.peft_config.get(model.active_adapter)
    targets = getattr(config, "target_modules", None)
    if not isinstance(targets, (set, list, tuple)):
        return []  # una expresión regular o "all-linear" sin resolver: no se puede decir
    return [key for key, _ in lora_layers(model) if key.split(".")[-1] not in set(targets)]


def _logged_rates(history: list) -> list[float]:
    return [float(e["learning_rate"]) for e in history
            if isinstance(e, dict) and isinstance(e.get("learning_rate"), (int, float))]


@exercise(NOTEBOOK, handover={"trainer": handover.Trainer()}, hint=(
    ("Con un adaptador LoRA, `DPOTrainer` no necesita una segunda copia del modelo: la referencia es el mismo modelo "
    "con el adaptador apagado. La decisión es la tasa de aprendizaje: la de `DPOConfig` por defecto está pensada "
    "para muchos pasos sobre un modelo grande; con una docena de pasos y LoRA, prueba tasas del orden de las que "
    "usaste con LoRA en `lora_finetuning` y mira `rewards/margins` en el historial. Mira también qué responde: "
    "con una tasa demasiado alta el margen se dispara y el modelo se rompe (solo puntos, sin cifras)."),
    ("`dpo_trainer = DPOTrainer(model=dpo_base, args=DPOConfig(output_dir=..., max_steps=..., "
    "per_device_train_batch_size=DPO_BATCH, learning_rate=..., logging_steps=1, save_strategy=\"no\", "
    "seed=SEED, **sft_device_args(DEVICE)), train_dataset=pairs, processing_class=tokenizer, "
    "peft_config=LoraConfig(...))` y `dpo_trainer.train()`."),
))
def dpo_trainer(trainer, examples=None):
    """Un ``DPOTrainer`` con LoRA y sin ``ref_model``, entrenado con el presupuesto: prefiere la fecha con puntos.

    Los pasos salen del optimizador (``handover.optimizer_steps``) y las tasas del historial, nunca de
    ``trainer.args``. El margen se mide con fechas nuevas: elegida, la fecha con puntos; rechazada, lo que
    responde el modelo base (el mismo modelo con el adaptador apagado). Y el modelo tiene que seguir
    respondiendo: con una tasa excesiva el margen se dispara mientras las respuestas se rompen
    (``is_broken_answer``), y eso no vale.
    """
    from ..data import TRAINED_FORMAT, Examples, answer
    from ..evaluation import generate
    from .lora_weights import closest_shipped, factors, update_ratio

    model, state = getattr(trainer, "model", None), getattr(trainer, "state", None)
    expect(trainer is not None and model is not None and state is not None,
           f"`dpo_trainer` debe ser el `DPOTrainer` que entrenaste; es un {_type_name(trainer)}.")
    expect(getattr(trainer, "ref_model", None) is None,
           "Le pasaste un `ref_model`: es una segunda copia entera de los pesos en memoria. Con `peft_config` no "
           "hace falta: la referencia es el mismo modelo con el adaptador desactivado. Quita `ref_model=`.")
    stray = _stray_lora_layers(model) if is_peft_model(model) else []
    if stray:
        expect(False, f"El modelo tiene capas LoRA que tu `LoraConfig` no pide ({len(stray)}, p. ej. `{stray[0]}`): "
                      "¿volviste a ejecutar la celda sobre el mismo `dpo_base`? `DPOTrainer` mete el adaptador DENTRO "
                      "del modelo que recibe, y una segunda vez lo apila sobre lo que dejó la primera. Empieza cada "
                      "prueba con un base nuevo: `dpo_base = fresh_base()` (la primera línea de la celda).")
    history = [e for e in (getattr(state, "log_history", None) or []) if isinstance(e, dict)]
    logged = [e["rewards/margins"] for e in history if isinstance(e.get("rewards/margins"), (int, float))]
    expect(logged, "El historial no tiene `rewards/margins`: ¿es un `DPOTrainer` (no un `SFTTrainer`) y lo "
                   "entrenaste con `dpo_trainer.train()`?")
    _expect_peft(model, "dpo_trainer.model", "Pasa `peft_config=LoraConfig(...)` al `DPOTrainer` y el modelo base "
                                             "(no un PeftModel) como `model`.")
    steps = handover.optimizer_steps(trainer)
    expect(isinstance(steps, int) and steps >= 1, "El optimizador no ha dado ningún paso: llama a "
                                                  "`dpo_trainer.train()`.")
    expect(steps <= DPO_MAX_STEPS, f"El optimizador dio {steps} pasos y el presupuesto es {DPO_MAX_STEPS}: "
                                   f"elige `max_steps` ≤ {DPO_MAX_STEPS} y una tasa que baste en ese presupuesto.")
    rates = _logged_rates(history)
    expect(rates, "El historial no registra la tasa de aprendizaje de cada paso: entrena con `logging_steps=1`.")
    lora = factors(model)
    shipped, similarity = closest_shipped(lora)
    expect(similarity < DPO_MAX_SHIPPED_SIMILARITY,
           f"El ΔW de este adaptador se parece al de `adapters/{shipped}` (similitud {decimal(similarity, 2)}): "
           "ese adaptador no lo entrenó este `DPOTrainer`. Entrena uno nuevo con `peft_config`.")
    moved = update_ratio(lora, [sum(rates) / len(rates)] * steps)
    expect(moved <= DPO_MAX_UPDATE_RATIO,
           f"Los pesos B del adaptador se movieron {decimal(moved, 1)} veces lo que permiten {steps} pasos con las "
           "tasas de su historial: no salen de este entrenamiento.")
    examples = examples or Examples("test")
    rows = examples.rows(TRAINED_FORMAT, DPO_ROWS)
    tokenizer = _tokenizer()
    prompts = [r["prompt"] for r in rows]
    with adapter_off(model):
        said = generate(model, tokenizer, prompts)
    margins = implicit_margins(model, tokenizer, preference_pairs(rows, rejected=said), DPO_BETA)
    mean, won = float(margins.mean()), int((margins > 0).sum())
    where = "fechas que el cuaderno no vio" if examples.is_hidden else "fechas de prueba"
    out = generate(model, tokenizer, prompts)
    expect(mean > -DPO_MIN_MARGIN / 10 or won > DPO_ROWS // 2,
           f"El modelo prefiere ahora lo que decía el base a la fecha con puntos (margen medio {decimal(mean, 2)} "
           f"en {DPO_ROWS} {where}, {won} a favor de la fecha con puntos): ¿cambiaste `chosen` y `rejected` al "
           "construir los pares? `chosen` es la respuesta buena.")
    top = max(rates)
    expect(not (top <= DPO_SLOW_LR and mean < DPO_MIN_MARGIN),
           f"Casi no cambió nada: margen medio {decimal(mean, 3)} con β = {decimal(DPO_BETA, 1)} en {DPO_ROWS} "
           f"{where}. Tu tasa fue {scientific(top)}: la de `DPOConfig` por defecto es {scientific(DPO_DEFAULT_LR)}, "
           "pensada para muchos pasos sobre un modelo grande. Con LoRA y una docena de pasos hace falta una tasa "
           "mucho mayor: pruébalo y mira `rewards/margins`.")
    expect(mean >= DPO_MIN_MARGIN and won >= DPO_ROWS - 1,
           f"El margen medio en {DPO_ROWS} {where} es {decimal(mean, 2)} ({won} a favor de la fecha con puntos); "
           f"hace falta al menos {decimal(DPO_MIN_MARGIN, 1)} y {DPO_ROWS - 1} a favor. Con tasa máxima "
           f"{scientific(top)} y {steps} pasos no basta: sube la tasa o usa más pasos (hasta {DPO_MAX_STEPS}).")
    broken = [o for o in out if is_broken_answer(o)]
    if len(broken) > DPO_MAX_BROKEN:
        expect(False, f"El modelo se rompió: {len(broken)} de sus {DPO_ROWS} respuestas en {where} no dicen nada "
                      f"(sin cifras o un carácter repetido; por ejemplo {broken[0]!r}), aunque el margen medio es "
                      f"{decimal(mean, 2)}. Con tasa máxima {scientific(max(rates))}, DPO hundió tanto la rechazada "
                      "que el modelo dejó de responder. Un margen alto no basta: baja la tasa y mira qué responde el "
                      "modelo, no solo `rewards/margins`.")
    dotted = sum(o == answer(r) for o, r in zip(out, rows))
    return (f"DPO con LoRA y la referencia desactivada, {integer(steps)} pasos con tasa máxima {scientific(top)}: en "
            f"{DPO_ROWS} {where} el modelo prefiere la fecha con puntos a lo que decía el base en {won}/{DPO_ROWS} "
            f"(margen medio {decimal(mean, 2)} con β = {decimal(DPO_BETA, 1)}). Responde con la fecha con puntos "
            f"exacta en {dotted}/{DPO_ROWS}: subir el margen no es lo mismo que responder bien.")


__all__ = ["cat_combination", "dpo_trainer", "hotswap", "mixed_batch"]
