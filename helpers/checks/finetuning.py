"""Comprobaciones del cuaderno ``lora_finetuning``: ``from helpers.checks import finetuning as checks``.

Cada comprobación recibe los objetos reales del ejercicio (la configuración, los trainers, las carpetas
guardadas, el pipeline) y mide lo que da puntos: genera con los modelos en fechas que elige ella
(``examples``: en la corrección, fechas que ningún cuaderno ve), cuenta parámetros en los pesos, recarga
lo guardado y lo compara. Nunca reentrena.

Lo que da puntos sale de lo que el entrenamiento dejó, no de lo que se pidió: los pasos que dio el
optimizador (``handover.optimizer_steps``), el historial (tasa y tokens de cada paso) y los pesos mismos
(``lora_weights``: parecido con los adaptadores publicados, rango numérico, cuánto se movió B, el residuo
de OLoRA). Los entrenamientos del cuaderno enseñan el formato con puntos (``TRAINED_FORMAT``), que no
produce ningún archivo del curso: un adaptador que lo responde lo ha entrenado quien lo entrega.
``trainer.args`` (lo que el alumno pidió) solo sirve para explicarle un fallo.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from .. import numbers
from ..data import FORMATS, TRAINED_FORMAT
from ..model import fresh_base
from . import handover, lora_weights
from .core import exercise, expect
from .models import adapter_off, base_checkpoint, is_peft_model, lora_layers

NOTEBOOK = "lora_finetuning"
FORMAT = TRAINED_FORMAT  # lo que aprenden todos los entrenamientos del cuaderno
LOGIT_TOLERANCE_FP32 = 1e-2  # max |Δlogits| entre modelos que deben ser iguales (float32; logits ~10-30)
LOGIT_TOLERANCE_LOW_PRECISION = 0.5  # en bf16/fp16 el redondeo da diferencias de décimas
LOSS_ROWS = 16  # fechas con las que se mide la pérdida de un modelo: una pasada, barata en CPU
PROBE_ROWS = 8  # fechas con las que se comparan salidas (logits y respuestas voraces)
ACCURACY_ROWS = 32  # fechas con las que se mide la exactitud: en el cuaderno, las 32 primeras de prueba
# Medidas de diciembre de 2026 (CPU de 2 núcleos), en el formato con puntos. Fechas ocultas: semillas 7 y 11.
#
# Exactitud del adaptador principal: MIN_RIGHT de 32 fechas. La receta del cuaderno (40 pasos de lote 8 a
# 1e-3) acierta 109/120 fechas de prueba (90,8 %; IC 95 % de Wilson 84,3–94,8 %). Con p = 0,843 (el extremo
# bajo) falla este umbral con probabilidad 2,1 % (binomial), con p = 0,908 un 0,04 %; un adaptador del
# presupuesto de las comparaciones (8 pasos de lote 4: 16/32 de prueba, 19/32 ocultas, p ≈ 0,55) lo pasa un 4 %.
MIN_RIGHT = 23
PIPELINE_ROWS, PIPELINE_MIN_RIGHT = 8, 5  # el modelo base acierta 0; el principal, con p = 0,843, falla un 2,5 %
# merge_and_save juzga la fusión frente al adaptador principal: ese adaptador tiene que responder el formato con
# puntos en las PROBE_ROWS (8) fechas que compara, como en el pipeline (mismo adaptador, mismas 8 fechas). Un
# adaptador sin entrenar con un historial inventado de 40 pasos acierta 0 (lo que el modelo base).
MERGE_MIN_RIGHT = PIPELINE_MIN_RIGHT
# «Movido» en un ajuste completo (``_full_moves``), en las matrices de los bloques. Medido (CPU AVX2, 2 pasos de
# lote 2 a 2·10⁻⁴): el honesto cambia ≥ 99,9998 % de los números de cada matriz, con deriva media ≥ 0,63·Σ tasas,
# y W − W₀ tiene rango 576 (completo) en las matrices medidas. Un LoRA de r = 8 en todas las lineales, fusionado
# y con 10⁻⁶ sumado a un número de cada dos tensores: 99,994 % y 0,43 (¡pasa!), pero rango 8. Solo el rango lo
# separa; las dos primeras cotas atrapan capas congeladas o un modelo que no se movió.
# «La base intacta»: cada número del modelo base a ≤ BASE_NOISE del suyo. Medido: 3 veces merge_adapter +
# unmerge_adapter del ISO en float32 dejan max|W − W₀| = 6·10⁻⁸; el ΔW fusionado más pequeño que hemos visto (un
# adaptador de 2 pasos a 10⁻³, r = 8) mueve ≥ 8·10⁻⁴ algún número de cada matriz, y el ISO publicado, ≥ 0,04.
BASE_NOISE = 1e-5
MIN_CHANGED_SHARE = 0.5  # la parte de los números de cada matriz que cambió (la peor matriz)
MIN_FULL_DRIFT = 0.01  # |W − W₀| medio / Σ tasas (la peor matriz)
MAX_LORA_RANK = 256  # el mayor r que acepta `lora_config`: W − W₀ de un LoRA fusionado no pasa de él
RANK_EVERY = 8  # el rango se mide en una de cada RANK_EVERY matrices densas grandes (cada SVD cuesta ~0,1 s)
# Parecido (|coseno| de ΔW, ``lora_weights.similarity``) con el adaptador publicado más cercano. Honestos,
# entrenados en el formato con puntos: 0,00–0,09 (el principal 0,06; r = 2, 3, 16 y 32, atención, MLP), y 0,15–0,28
# el de q_proj y v_proj con r = 8 y semilla 0, la configuración de los publicados (empieza con la misma A).
# Fabricados a partir de `adapters/iso`: B × 1,01 y relleno a r = 32, 1,000; recortado a r = 2 con la SVD, 0,981.
SHIPPED_SIMILARITY_MAX = 0.5
# max|B| / Σ tasas del historial (``lora_weights.update_ratio``). Adam mueve cada peso como mucho ~una tasa
# por paso y B empieza en cero: honestos de 8 pasos, 1,002–1,006 (un peso que va siempre en la misma
# dirección); de 32 y 40 pasos, 0,80–0,86. Un publicado con un paso encima (Σ tasas = 1·10⁻³): 100–300.
# La misma cota vale para A (``lora_weights.a_drift_ratio``: max|A| menos su cota inicial 1/√entradas, entre
# Σ tasas), que empieza acotada y no en cero: honestos de 2 pasos a 10⁻³ (r = 2 y 8, atención o todas), 0,372.
# Sin ella, el ΔW de otro adaptador recortado a r = 2 con la SVD pasaba con B × 1/k y A × k: con k = 10, B da 1,35
# (pasa) y A 217; con k = 100, B 0,14 y A 2 361.
UPDATE_RATIO_MAX = 1.5
# Dónde poner LoRA (🐕 rank_sweep): como mucho PARAM_BUDGET parámetros entrenables (la configuración de la
# sección 4 entrena 2 442 240) y al menos SWEEP_MIN_RIGHT de 32 fechas. Con el presupuesto de las
# comparaciones (8 pasos de lote 4 a 2e-3), las maneras de caber miden, en 32 fechas de prueba / 32 ocultas:
# todas r=2 12/13, todas r=3 13/16, atención r=8 14/13, MLP r=4 14/12, q y v r=16 13/11, q y v r=8 16/11
# (p ≈ 0,34–0,5, todas dentro del ruido unas de otras). Con p = 0,34 una honesta falla 6 de 32 un 1,8 %; un
# adaptador que no aprendió el formato acierta 0. La meta es un suelo: lo que decide es el presupuesto.
PARAM_BUDGET = 1_000_000
SWEEP_MIN_RIGHT = 6
MIN_SWEEP = 3
# Entrenamientos distintos: |coseno| de ΔW entre dos del barrido (``lora_weights.similarity``). Honestos de 2 pasos
# a 10⁻³ (todas r = 8, todas r = 2, atención r = 8): 0,007–0,051; un mismo entrenamiento con dos nombres o dos
# etiquetas, 1,000.
SWEEP_SIMILARITY_MAX = 0.5
SCALE_TOLERANCE = 1e-6  # escalas lora_alpha / r iguales (relativo): «si cambias r, cambia lora_alpha»
# El ajuste completo «aprendió» si su pérdida en 16 fechas baja de esta fracción de la del modelo base (1,754
# en las ocultas de la semilla 11). 8 pasos de lote 4: a 2e-3 sube a 2,37 veces la del base (diverge); a
# 2e-4, 0,16 (4/32 aciertos); a 1e-4, 0,055 (19/32); a 5e-5, 0,056 (20/32); a 2e-5, 0,10 (17/32); a 5e-6,
# 0,30 (2/32: apenas aprendió).
FULL_LOSS_FRACTION = 0.25
# Una pérdida a menos de esta fracción de la del modelo base es «no cambió» (tasa diminuta), no «empeoró».
UNCHANGED_LOSS = 0.01
# En bf16/fp16 (sin medir: en CPU el curso usa float32) «igual» al modelo base en float32 se deja en ≤ 5 %. La
# fusión de un compañero debajo (entrenada en el formato con puntos) baja la pérdida sin adaptador a una fracción.
LOW_PRECISION_LOSS = 0.05
# OLoRA: error relativo del residuo que deja en los pesos base (``lora_weights.olora_residual_error``): ≈0
# si empezó con OLoRA en este modelo, ≈1 si solo lo dice la etiqueta.
OLORA_RESIDUAL_MAX = 0.05
# Capas en las que se mira el residuo (de 210 con "all-linear"), sorteadas con la semilla oculta (en el cuaderno, al
# azar): cada QR cuesta ~0,05 s. Un residuo a mano en k capas pasa con probabilidad C(k, 15) / C(210, 15): con
# k = 14 (1 de cada 15, las que se miraban antes), 0; con k = 105 (la mitad), 2·10⁻⁵.
OLORA_SAMPLE = 15
# Y aprendió: su pérdida baja de esta fracción de la del modelo base (OLoRA a 2e-4, 8 pasos: 22/32 ocultas).
OLORA_LOSS_FRACTION = 0.5


# --- utilidades ----------------------------------------------------------------------------------------


def _examples(examples):
    from ..data import Examples

    return examples if examples is not None else Examples("test")


def _where(examples, n: int) -> str:
    """Qué fechas midió la comprobación: en el cuaderno, las primeras de prueba; en la corrección, fechas ocultas
    (que ningún cuaderno ve)."""
    if _examples(examples).is_hidden:
        return f"{n} fechas ocultas"
    return f"las {n} primeras fechas de prueba"


def _param(model):
    return next(model.parameters())


def _tolerance(model) -> float:
    import torch

    return LOGIT_TOLERANCE_FP32 if _param(model).dtype == torch.float32 else LOGIT_TOLERANCE_LOW_PRECISION


def _fresh_base(like):
    """Un modelo base recién cargado, en el dispositivo y la precisión de ``like``."""
    model = fresh_base()
    param = _param(like)
    return model.to(device=param.device, dtype=param.dtype)


def _tokenizer():
    from ..model import load_tokenizer

    return load_tokenizer()


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rate(value) -> str:
    """Una tasa de aprendizaje en español: «1·10⁻³», «2,5·10⁻⁴»."""
    if not _number(value) or value <= 0:
        return numbers.decimal(value, 0) if _number(value) else "?"
    mantissa = value / 10 ** math.floor(math.log10(value))
    return numbers.scientific(value, 0 if abs(mantissa - round(mantissa)) < 1e-6 else 1)


def _expect_delivered(value, what: str) -> None:
    """En la corrección, lo entregado que no se pudo aceptar llega como ``handover.Unexpected``: se dice por qué."""
    if isinstance(value, handover.Unexpected):
        expect(False, f"{what} no se pudo aceptar en la corrección: llegó {value.description}.")


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


def _lora_count(model) -> int:
    return sum(p.numel() for p in _lora_weights(model).values())


def _adapter_bytes(model) -> int:
    """Lo que ocupan en disco los pesos del adaptador (safetensors guarda los tensores tal cual)."""
    return sum(p.numel() * p.element_size() for p in _lora_weights(model).values())


def _b_is_zero(model) -> bool:
    b = [p for name, p in _lora_weights(model).items() if ".lora_B." in name]
    return not b or all(float(p.detach().abs().max()) == 0.0 for p in b)


def _config(model):
    return model.peft_config[model.active_adapter]


# --- lo que dejó el entrenamiento ----------------------------------------------------------------------


def _history(trainer) -> list[dict]:
    history = getattr(trainer.state, "log_history", None)
    return [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []


def _steps(trainer) -> int:
    """Los pasos que dio el optimizador (su contador, no ``global_step`` ni ``max_steps``)."""
    steps = handover.optimizer_steps(trainer)
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else 0


def _learning_rates(trainer) -> list[float] | None:
    """La tasa de cada paso del optimizador, leída del historial (None si el historial no la registra).

    Con ``logging_steps=1`` el ``Trainer`` anota la tasa de cada paso (medido con TRL 1.16: con tasa lineal
    anota 2·10⁻³, 1,94·10⁻³... desde el paso 1). Si anota cada k pasos, cada paso sin anotar toma la de la
    anotación siguiente (o la última).
    """
    steps = _steps(trainer)
    logged = sorted((e["step"], e["learning_rate"]) for e in _history(trainer)
                    if _number(e.get("learning_rate")) and isinstance(e.get("step"), int))
    if not steps or not logged:
        return None
    return [next((lr for s, lr in logged if s >= step), logged[-1][1]) for step in range(1, steps + 1)]


def _tokens(trainer) -> int | None:
    """Tokens que vio el entrenamiento (``num_tokens`` acumulado del historial), o None."""
    counts = [e["num_tokens"] for e in _history(trainer) if _number(e.get("num_tokens"))]
    return int(max(counts)) if counts else None


def _budget(trainer) -> dict:
    return {"pasos": _steps(trainer), "tokens": _tokens(trainer)}


def _steps_text(steps: int) -> str:
    return f"{steps} paso" if steps == 1 else f"{steps} pasos"


def _budget_text(budget: dict) -> str:
    tokens = budget["tokens"]
    return _steps_text(budget["pasos"]) + (f" y {numbers.integer(tokens)} tokens" if tokens else "")


def _rates_text(rates) -> str:
    values = sorted(set(rates or []))
    return " a ".join(_rate(v) for v in (values[:1] + values[-1:] if len(values) > 1 else values)) or "?"


def _expect_own_adapter(model, what: str, rates=None) -> None:
    """El adaptador activo de ``model`` no es uno publicado, ni viene de uno, ni entrenó más de lo que dice."""
    found = lora_weights.factors(model)
    fmt, similarity = lora_weights.closest_shipped(found)
    expect(similarity < SHIPPED_SIMILARITY_MAX,
           f"El adaptador de {what} es, en sus pesos, el publicado en `adapters/{fmt}` (su cambio ΔW se le "
           f"parece un {numbers.percent(similarity, 0)}): no lo has entrenado tú desde cero. Crea el trainer "
           "con `fresh_model()` y `peft_config`, sin cargar antes ningún adaptador.")
    if rates is not None:
        init = _config(model).init_lora_weights
        expect(init is True or init == "gaussian",
               f"El adaptador de {what} empezó con `init_lora_weights={init!r}`: este ejercicio entrena con la "
               "inicialización por defecto de LoRA (la de `peft_config`), la única en la que se puede medir cuánto "
               "se movieron A y B. Usa `peft_config` (o `replace(peft_config, ...)` sin tocar `init_lora_weights`).")
        drift = lora_weights.a_drift_ratio(found, rates, init)
        expect(drift <= UPDATE_RATIO_MAX,
               f"Las matrices A de {what} se alejaron de su valor inicial {numbers.ratio(drift, 1)} lo que "
               f"permiten los {len(rates)} pasos y las tasas de su historial (Adam mueve cada peso como mucho una "
               "tasa por paso). Ese adaptador no salió solo de este entrenamiento: vuelve a crear el trainer con "
               "`fresh_model()` y entrena una vez.")
        ratio = lora_weights.update_ratio(found, rates)
        expect(ratio <= UPDATE_RATIO_MAX,
               f"Las matrices B de {what} se movieron {numbers.ratio(ratio, 1)} lo que permiten los "
               f"{len(rates)} pasos y las tasas de su historial (Adam mueve cada peso como mucho una tasa por "
               "paso, y B empieza en cero). Ese adaptador no salió solo de este entrenamiento: ¿llamaste dos "
               "veces a `train()` sobre el mismo modelo, o empezaste desde otro adaptador? Vuelve a crear el "
               "trainer con `fresh_model()` y entrena una vez.")


def _expect_trained_adapter(trainer, what: str) -> None:
    """``trainer`` es un trainer con un adaptador LoRA propio, entrenado por su optimizador."""
    expect(_is_trainer(trainer), f"{what} no es un trainer (recibí un {type(trainer).__name__}): pasa el "
                                 "`SFTTrainer` que entrenaste.")
    expect(is_peft_model(trainer.model) and lora_layers(trainer.model),
           f"El modelo de {what} no tiene adaptadores LoRA: pasa `peft_config=...` a `SFTTrainer` (así entrena "
           "solo el adaptador, no los 135 millones de pesos).")
    expect(_steps(trainer) > 0, f"{what} todavía no ha entrenado (su optimizador no ha dado ningún paso): llama "
                                "a `trainer.train()`.")
    expect(not _b_is_zero(trainer.model), f"Las matrices B del adaptador de {what} siguen a cero: el adaptador "
                                          "no ha cambiado nada. ¿Entrenaste este mismo trainer?")
    rates = _learning_rates(trainer)
    expect(rates is not None, f"El historial de {what} no registra la tasa de aprendizaje de sus pasos: entrena "
                              "con `logging_steps=1` (como el cuaderno), que anota la pérdida y la tasa de "
                              "cada paso.")
    _expect_own_adapter(trainer.model, what, rates)


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


_BASE_LOSSES: dict = {}  # {(conjunto, semilla, filas): pérdida del modelo base}: no depende de la entrega


def _base_loss(examples, rows, peft_model=None) -> float:
    """La pérdida del modelo base del curso en ``rows`` (las ``LOSS_ROWS`` primeras de ``examples``).

    Con ``peft_model`` (un LoRA normal) se mide con su adaptador desactivado; si no, con un modelo base recién
    cargado. Se calcula una vez por conjunto de fechas.
    """
    key = (examples.split, examples.hidden_seed, len(rows))
    if key not in _BASE_LOSSES:
        if peft_model is not None:
            with adapter_off(peft_model):
                _BASE_LOSSES[key] = _completion_loss(peft_model, rows)
        else:
            _BASE_LOSSES[key] = _completion_loss(fresh_base(), rows)
    return _BASE_LOSSES[key]


def _right(model, rows) -> tuple[int, list[str]]:
    """Cuántas respuestas voraces de ``model`` son exactas en ``rows``, y las respuestas."""
    from ..data import answer
    from ..evaluation import generate

    predictions = generate(model, _tokenizer(), [r["prompt"] for r in rows])
    return sum(p == answer(r) for p, r in zip(predictions, rows)), predictions


def _other_format(examples, predictions: list[str]) -> str | None:
    """El formato (distinto del entrenado) en que están al menos la mitad de ``predictions``, si lo hay."""
    from ..data import answer

    for fmt in FORMATS:
        if fmt == FORMAT:
            continue
        rows = _examples(examples).rows(fmt, len(predictions))
        if 2 * sum(p == answer(r) for p, r in zip(predictions, rows)) >= len(predictions):
            return fmt
    return None


def _expect_right_format(examples, predictions: list[str], what: str) -> None:
    other = _other_format(examples, predictions)
    if other is not None:
        expect(False,
               f"{what} responde en formato {FORMATS[other]} (p. ej. «{predictions[0]}»), no {FORMATS[FORMAT]}: "
               f"aprendió otra tarea. ¿Entrenaste con `make_splits(\"{other}\")` o cargaste `adapters/{other}`? "
               "El cuaderno entrena `make_splits(TRAINED_FORMAT)`.")


def _weight_pairs(model, every: int = 1):
    """(nombre, W₀ del modelo base, W actual) de uno de cada ``every`` tensores de pesos, sin las capas LoRA."""
    from .handover import _base_tensor, _plain_name

    files = base_checkpoint() or {}
    names = [(name, param) for name, param in model.named_parameters() if "lora_" not in name]
    for name, param in names[::every]:
        base = _base_tensor(files, _plain_name(name))
        if base is not None:
            yield _plain_name(name), base, param.detach().cpu()


def _changed_tensors(model, every: int = 3) -> tuple[int, int]:
    """(tensores de pesos distintos de los del modelo base, tensores comparados), sin las capas LoRA.

    Compara uno de cada ``every`` (``every=1``: todos, lo que pide «la base intacta»). «Distinto» es a más de
    ``BASE_NOISE`` en algún número: fusionar y separar un adaptador (``merge_adapter`` + ``unmerge_adapter``)
    deja ese ruido de redondeo, y eso no es cambiar la base.
    """
    changed = total = 0
    for _, base, tensor in _weight_pairs(model, every):
        total += 1
        changed += (base.shape != tensor.shape
                    or float((tensor.float() - base.float()).abs().max()) > BASE_NOISE)
    return changed, total


def _full_moves(model, rates, every: int = 3) -> dict:
    """Cuánto se movieron las matrices de los bloques (``layers.``) de un ajuste completo, frente a sus tasas.

    Por tensor: la parte de sus números que cambió y la deriva media |W − W₀| / Σ tasas; y el rango numérico
    de W − W₀ en las matrices densas (con ``MIN_CHANGED_SHARE`` de sus números cambiados) de más de
    ``MAX_LORA_RANK`` filas y columnas (una de cada ``RANK_EVERY`` de ellas; ∞ si no hay ninguna): un LoRA
    fusionado no pasa de su r. Una tasa diminuta, que apenas cambia números, no llega a la medida del rango.
    """
    total = float(sum(rates or [])) or math.inf
    shares, drifts, ranks, dense = [], [], [], 0
    for name, base, tensor in _weight_pairs(model, every):
        if tensor.ndim != 2 or ".layers." not in f".{name}":
            continue
        if base.shape != tensor.shape:
            shares.append(1.0)
            drifts.append(math.inf)
            continue
        delta = tensor.float() - base.float()
        shares.append(float((delta != 0).float().mean()))
        drifts.append(float(delta.abs().mean()) / total)
        if min(delta.shape) > MAX_LORA_RANK and shares[-1] >= MIN_CHANGED_SHARE:
            if dense % RANK_EVERY == 0:
                ranks.append(lora_weights.delta_rank(delta))
            dense += 1
    return {"tensors": len(shares), "share": min(shares, default=0.0), "drift": min(drifts, default=0.0),
            "rank": min(ranks, default=math.inf)}


def _expect_base_intact(model, what: str, examples) -> None:
    """Los pesos base del modelo con LoRA son los del curso, y sin el adaptador responde como el modelo base.

    LoRA congela los pesos base: un modelo de otro (p. ej. la fusión de un compañero) debajo de un adaptador
    sin entrenar respondería bien sin que el adaptador aprendiera nada.
    """
    changed, total = _changed_tensors(model, every=1)
    expect(total and not changed,
           f"Bajo su adaptador, {what} no tiene los pesos del modelo base del curso ({changed} de {total} tensores "
           "cambiados): con LoRA quedan congelados. Crea el modelo con `fresh_model()` (o carga el adaptador sobre el modelo "
           "base), no sobre otro modelo ya ajustado.")
    examples = _examples(examples)
    rows = examples.rows(FORMAT, LOSS_ROWS)
    with adapter_off(model):
        disabled = _completion_loss(model, rows)
    base = _base_loss(examples, rows)
    tolerance = UNCHANGED_LOSS if _tolerance(model) == LOGIT_TOLERANCE_FP32 else LOW_PRECISION_LOSS
    expect(abs(disabled - base) <= tolerance * base,
           f"Sin el adaptador, {what} no responde como el modelo base (pérdida {numbers.decimal(disabled, 3)} "
           f"frente a {numbers.decimal(base, 3)}): lo que acierta no sale solo del adaptador.")


@functools.lru_cache(maxsize=1)
def _architecture():
    """El modelo del curso sin pesos (dispositivo «meta»): basta para ver los nombres de sus capas."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..model import base_model_path

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_model_path()))


LAYER_NAMES = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj y down_proj"


def _target_report(config, model) -> tuple[list[str], list[str]]:
    """Los ``target_modules`` que no existen en ``model`` y los que existen pero no son capas (bloques).

    Un texto solo vale si es ``"all-linear"``: PEFT lee cualquier otro como una expresión regular, y el
    curso no las usa (``lora_config`` las rechaza antes de llegar aquí).
    """
    import torch

    targets = config.target_modules
    if isinstance(targets, str):
        return ([], []) if targets == "all-linear" else ([targets], [])
    modules = list(model.named_modules())
    missing, blocks = [], []
    for target in sorted(targets):
        found = [m for n, m in modules if n == target or n.endswith("." + target)]
        if not found:
            missing.append(target)
        elif not any(isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) or hasattr(m, "base_layer")
                     for m in found):
            blocks.append(target)
    return missing, blocks


def _scale(config) -> float:
    return config.lora_alpha / (math.sqrt(config.r) if getattr(config, "use_rslora", False) else config.r)


# --- 🐢 LoraConfig -------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"config": handover.PeftConfig()},
    hint=(("Cada fila de la tabla es un argumento de `LoraConfig`. Los nombres de las capas salen de "
          "`print(model)` (o de la lista `linear_names` de arriba); `\"all-linear\"` las elige todas menos "
          "`lm_head`. La escala del cambio es `lora_alpha / r`."),
          ("`peft_config = LoraConfig(r=..., lora_alpha=..., lora_dropout=..., target_modules=..., "
          "bias=\"none\", task_type=...)`")),
)
def lora_config(config, model=None):
    """Comprueba la ``LoraConfig``: tarea, rango, escala, dropout y que los módulos existan en el modelo.

    Sin ``model`` (en la corrección) mira los nombres en la arquitectura del modelo del curso.
    """
    from peft import LoraConfig

    expect(config is not None, "Todavía no hay configuración: crea `peft_config = LoraConfig(...)`.")
    _expect_delivered(config, "La configuración")
    expect(isinstance(config, LoraConfig), f"Esperaba una `LoraConfig` de PEFT y recibí un {type(config).__name__}: "
                                           "usa `from peft import LoraConfig` y `peft_config = LoraConfig(...)`.")
    expect(config.task_type == "CAUSAL_LM", f"`task_type` es {config.task_type!r}: nuestro modelo genera texto, "
                                            'así que usa `task_type="CAUSAL_LM"` (o `TaskType.CAUSAL_LM`).')
    r = config.r
    expect(isinstance(r, int) and not isinstance(r, bool) and r >= 1,
           f"El rango `r={r!r}` no vale: tiene que ser un entero positivo. Prueba con r=8.")
    expect(r <= 256, f"`r={r}` es enorme para un modelo de 576 dimensiones: LoRA funciona con rangos bajos; "
                     "prueba entre 4 y 32.")
    expect(_number(config.lora_alpha) and config.lora_alpha > 0,
           f"`lora_alpha={config.lora_alpha!r}`: la escala del cambio es lora_alpha / r, así que con 0 o menos "
           "el adaptador no hace nada (o va al revés). Un valor típico es 2·r, p. ej. 16.")
    scale = _scale(config)
    expect(scale >= 1,
           f"La escala del cambio es {'lora_alpha / √r' if config.use_rslora else 'lora_alpha / r'} = "
           f"{numbers.decimal(config.lora_alpha, 0)} / {r if not config.use_rslora else f'√{r}'} = "
           f"{numbers.decimal(scale, 2)}: menos de 1 encoge cada cambio del adaptador. ¿Intercambiaste `r` y "
           "`lora_alpha`? `r` es el rango (las filas de A) y `lora_alpha` el numerador de la escala: en la tabla, "
           "r=8 y lora_alpha=16.")
    expect(_number(config.lora_dropout) and 0 <= config.lora_dropout < 0.5,
           f"`lora_dropout={config.lora_dropout!r}`: es una probabilidad; usa algo entre 0 y 0.1.")
    expect(config.bias in ("none", "lora_only", "all"), f'`bias={config.bias!r}` no existe: usa "none" (no '
                                                         "entrenar sesgos).")
    targets = config.target_modules
    expect(targets, "Faltan `target_modules`: di qué capas reciben adaptador, p. ej. "
                    '["q_proj", "v_proj"] o "all-linear".')
    expect(not isinstance(targets, str) or targets == "all-linear",
           f"`target_modules={targets!r}` es un texto: PEFT lo lee como una expresión regular que debe coincidir "
           "con el nombre completo de cada capa, y con este no pone LoRA donde crees (en un bloque entero, "
           "`get_peft_model` falla). Usa una lista de nombres de capas lineales, p. ej. "
           '["q_proj", "v_proj"], o "all-linear".')
    missing, blocks = _target_report(config, model if model is not None else _architecture())
    expect(not missing, f"Estos `target_modules` no existen en el modelo: {', '.join(map(repr, missing))}. Mira "
                        f"los nombres con `print(model)`: en SmolLM2 son {LAYER_NAMES}.")
    expect(not blocks, f"{', '.join(map(repr, blocks))}: son bloques que contienen otras capas, no capas "
                       f"lineales. LoRA se pone en las capas lineales de dentro: {LAYER_NAMES}.")
    shown = targets if isinstance(targets, str) else sorted(targets)
    return (f"LoraConfig correcta: r={r}, lora_alpha={numbers.decimal(config.lora_alpha, 0)} (escala "
            f"{numbers.decimal(scale, 2)}), dropout {numbers.decimal(config.lora_dropout, 2)}, módulos {shown}.")


# --- 🐢 SFTTrainer -------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"trainer": handover.Trainer()},
    hint=(("`SFTConfig` lleva el presupuesto (pasos, lote, tasa, calendario), el registro y el dispositivo; "
          "`SFTTrainer` recibe un modelo base recién cargado, los datos, el tokenizador y `peft_config`. "
          "Después `trainer.train()` y `evaluate(...)` en el conjunto de prueba."),
          ("`args = SFTConfig(output_dir=..., max_steps=MAIN_STEPS, per_device_train_batch_size=..., "
          "learning_rate=..., lr_scheduler_type=..., logging_steps=1, eval_strategy=\"steps\", "
          "eval_steps=..., per_device_eval_batch_size=..., save_strategy=\"no\", seed=SEED, "
          "**sft_device_args(DEVICE))`; `trainer = SFTTrainer(model=fresh_model(), args=args, "
          "train_dataset=..., eval_dataset=validation, processing_class=..., peft_config=...)`; "
          "`trainer.train()`; `after = evaluate(trainer.model, tokenizer, ..., progress=False)`")),
)
def sft_trainer(trainer, after=None, examples=None):
    """Comprueba el adaptador del ``SFTTrainer`` por lo que hace: ≥ MIN_RIGHT de 32 fechas nuevas bien.

    ``after`` (la evaluación del alumno) solo se muestra como información.
    """
    expect(trainer is not None, "Todavía no hay trainer: crea `trainer = SFTTrainer(...)` y llama a "
                                "`trainer.train()`.")
    _expect_delivered(trainer, "El trainer")
    _expect_trained_adapter(trainer, "el trainer")
    _expect_base_intact(trainer.model, "el trainer", examples)
    rows = _examples(examples).rows(FORMAT, ACCURACY_ROWS)
    right, predictions = _right(trainer.model, rows)
    measured = numbers.accuracy(right, len(rows))
    where = _where(examples, len(rows))
    if right < MIN_RIGHT:
        _expect_right_format(examples, predictions, "El adaptador")
    expect(right >= MIN_RIGHT, f"El adaptador acierta {measured} en {where}; hace falta al menos {MIN_RIGHT} de "
                               f"{len(rows)}. Entrena más pasos (MAIN_STEPS) o sube la tasa de aprendizaje (tu "
                               f"entrenamiento usó {_rates_text(_learning_rates(trainer))}).")
    yours = ""
    if all(hasattr(after, name) for name in ("correct", "total")) and after.total:
        yours = f" Tu evaluación (`after`, {after.total} fechas) dice {numbers.accuracy(after.correct, after.total)}."
    return (f"El adaptador dio {_steps_text(_steps(trainer))} de optimización y acierta {measured} en {where}.{yours}")


# --- 🐕 Dónde poner LoRA con un presupuesto de parámetros -----------------------------------------------


def _expect_claimed_rank(model, what: str) -> int:
    """Cada ΔW del adaptador tiene el rango que dice su configuración; devuelve ese rango."""
    r = _config(model).r
    ranks = lora_weights.numerical_ranks(lora_weights.factors(model))
    short = {layer: rank for layer, rank in ranks.items() if rank < r}
    expect(not short,
           f"El adaptador de {what} dice r={r}, pero en {len(short)} de {len(ranks)} capas su cambio ΔW tiene "
           f"menos rango (p. ej. {min(short.values()) if short else r}): filas o columnas de ceros, o copias, "
           "no son rango. Entrena cada configuración desde cero con su `r`.")
    return r


def _expect_same_scale(sweep: dict) -> None:
    """Todas las configuraciones del barrido con la escala ``lora_alpha / r`` de la primera (la referencia)."""
    names = list(sweep)
    scales = {name: _scale(_config(sweep[name].model)) for name in names}
    first = scales[names[0]]
    other = [name for name in names if abs(scales[name] - first) > SCALE_TOLERANCE * abs(first)]
    expect(not other,
           "Cambiaste `r` sin ajustar `lora_alpha`: la escala `lora_alpha / r` es "
           + "; ".join(f"{name}: {numbers.decimal(scales[name], 2)}" for name in [names[0], *other])
           + ". Así no comparas solo dónde va LoRA y con qué rango, también cuánto pesa cada cambio. Pon "
           f"`lora_alpha` = {numbers.decimal(first, 2)} · r en cada candidata (p. ej. r=3, lora_alpha=3·escala).")


def _expect_distinct(sweep: dict) -> None:
    """Cada entrada del barrido es un entrenamiento distinto: otra configuración y otro cambio ΔW."""
    names = list(sweep)
    configs = {}
    for name in names:
        config = _config(sweep[name].model)
        key = (config.r, _targets_text(config))
        expect(key not in configs, f"`sweep[{configs.get(key)!r}]` y `sweep[{name!r}]` tienen la misma configuración "
                                   f"(r={config.r} en {_targets_text(config)}): compara maneras distintas de "
                                   "gastar el presupuesto.")
        configs[key] = name
    found = {name: lora_weights.factors(sweep[name].model) for name in names}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            similar = lora_weights.similarity(found[first], found[second])
            expect(similar < SWEEP_SIMILARITY_MAX,
                   f"`sweep[{first!r}]` y `sweep[{second!r}]` tienen, en sus pesos, el mismo cambio ΔW (se parecen "
                   f"un {numbers.percent(similar, 0)}): son un mismo entrenamiento con dos nombres. Entrena cada "
                   "configuración por separado con `lora_trainer(...)`.")


def _targets_text(config) -> str:
    targets = config.target_modules
    return targets if isinstance(targets, str) else ", ".join(sorted(targets))


@exercise(
    NOTEBOOK,
    handover={"sweep": handover.Mapping(handover.Trainer()), "choice": handover.Value()},
    hint=(("Un adaptador entrena r·(entradas + salidas) parámetros en cada capa que toca: para caber en el "
          "presupuesto, o bajas `r` en todas las capas o pones LoRA en menos capas. `lora_parameters(config)` "
          "los cuenta sin entrenar. Prueba al menos dos maneras que quepan, entrénalas con el mismo presupuesto "
          "y elige la que mejor acierta."),
          ("`candidates = {\"...\": replace(peft_config, r=..., lora_alpha=..., target_modules=[...]), ...}`; "
          "después de medir, `choice = \"...\"` (la clave de la que eliges)")),
)
def rank_sweep(sweep, choice, examples=None):
    """Comprueba la elección: configuraciones auténticas, mismo presupuesto, y la elegida cabe y acierta.

    ``sweep``: ``{nombre: trainer}`` (la referencia y los candidatos); ``choice``: la clave elegida.
    """
    expect(sweep is not None, "Todavía no hay comparación: rellena `candidates` y ejecuta la celda que crea "
                              "`sweep`.")
    _expect_delivered(sweep, "`sweep`")
    expect(isinstance(sweep, dict), f"Esperaba un diccionario {{nombre: trainer}} y recibí un "
                                    f"{type(sweep).__name__}.")
    names = list(sweep)
    expect(len(names) >= MIN_SWEEP, f"Solo hay {len(names)} entrenamiento(s) en `sweep`: compara al menos "
                                    f"{MIN_SWEEP} (la referencia y dos candidatos).")
    for name in names:
        trainer = sweep[name]
        _expect_delivered(trainer, f"`sweep[{name!r}]`")
        expect(_is_trainer(trainer), f"`sweep[{name!r}]` es un {type(trainer).__name__}, no un trainer: guarda en "
                                     "`sweep` los trainers de `lora_trainer(...)` (las medidas las calcula "
                                     "`measure(trainer)`).")
        _expect_trained_adapter(trainer, f"`sweep[{name!r}]`")
        _expect_claimed_rank(trainer.model, f"`sweep[{name!r}]`")
    budgets = {name: _budget(sweep[name]) for name in names}
    first = budgets[names[0]]
    expect(all(b == first for b in budgets.values()),
           "No todos los entrenamientos tienen el mismo presupuesto ("
           + "; ".join(f"{name}: {_budget_text(b)}" for name, b in budgets.items())
           + "): así la comparación no es justa. Crea todos con `lora_trainer(...)`, que usa `compare_args`.")
    rates = {name: _learning_rates(sweep[name]) for name in names}
    expect(all(r == rates[names[0]] for r in rates.values()),
           "Los entrenamientos usan tasas distintas ("
           + "; ".join(f"{name}: {_rates_text(r)}" for name, r in rates.items())
           + "): usa la misma (`COMPARE_LR`) para comparar solo dónde va LoRA y con qué rango.")
    _expect_same_scale(sweep)
    _expect_distinct(sweep)
    counts = {name: _lora_count(sweep[name].model) for name in names}
    inside = [name for name in names if counts[name] <= PARAM_BUDGET]
    table = "; ".join(f"{name}: {numbers.integer(counts[name])}" for name in names)
    expect(len(inside) >= 2, f"Solo {len(inside)} de tus configuraciones caben en el presupuesto de "
                             f"{numbers.integer(PARAM_BUDGET)} parámetros ({table}): prueba al menos dos "
                             "maneras de gastarlo (menos rango en todas las capas, o el rango en menos capas).")
    expect(choice is not None, "Falta tu elección: `choice = \"...\"`, la clave de `sweep` que eliges.")
    expect(isinstance(choice, str) and choice in sweep,
           f"`choice` tiene que ser una de las claves de `sweep` ({', '.join(map(repr, names))}); recibí "
           f"{choice!r}.")
    expect(counts[choice] <= PARAM_BUDGET,
           f"`{choice}` entrena {numbers.integer(counts[choice])} parámetros: no cabe en el presupuesto de "
           f"{numbers.integer(PARAM_BUDGET)}. Elige una de las que caben: {', '.join(inside)}.")
    rows = _examples(examples).rows(FORMAT, ACCURACY_ROWS)
    where = _where(examples, len(rows))
    right, predictions = _right(sweep[choice].model, rows)
    if right < SWEEP_MIN_RIGHT:
        _expect_right_format(examples, predictions, f"`sweep[{choice!r}]`")
    config = _config(sweep[choice].model)
    expect(right >= SWEEP_MIN_RIGHT,
           f"`{choice}` (r={config.r} en {_targets_text(config)}) acierta {numbers.accuracy(right, len(rows))} en "
           f"{where}; la meta es al menos {SWEEP_MIN_RIGHT} de {len(rows)}. Con el mismo presupuesto de "
           "parámetros hay maneras que aprenden más: compara con tus otros candidatos, o prueba otra.")
    return (f"{len(names)} entrenamientos distintos con el mismo presupuesto según sus historiales "
            f"({_budget_text(first)}), cada uno con el rango que declara. Tu elección, `{choice}` (r={config.r} en "
            f"{_targets_text(config)}), entrena "
            f"{numbers.integer(counts[choice])} parámetros (presupuesto: {numbers.integer(PARAM_BUDGET)}) y acierta "
            f"{numbers.accuracy(right, len(rows))} en {where} (meta: {SWEEP_MIN_RIGHT}).")


# --- 🐕 Ajuste fino completo ---------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"full": handover.Trainer(), "lora": handover.Trainer()},
    hint=(("Con todos los pesos a la vez, cada paso de Adam mueve 135 millones de números en vez de 2: la tasa "
          "de LoRA lo desestabiliza (lo acabas de ver). Prueba una mucho menor, y compara con el trainer LoRA "
          "que tuvo el mismo presupuesto y tu configuración."),
          ("`FULL_LR = ...`; `full_trainer = SFTTrainer(model=fresh_model(), args=compare_args(\"completo\", "
          "FULL_LR), train_dataset=..., eval_dataset=validation, processing_class=tokenizer)` (sin "
          "`peft_config`); `full = measure(full_trainer)`; `lora_reference = sweep[...]`")),
)
def full_finetuning(full, lora, examples=None):
    """Comprueba la comparación: el completo aprendió con su tasa, y la referencia LoRA tuvo el mismo presupuesto."""
    expect(full is not None, "Falta el trainer del ajuste completo (`full_trainer`).")
    expect(lora is not None, "Falta el trainer LoRA de referencia (`lora_reference`).")
    _expect_delivered(full, "El trainer del ajuste completo")
    _expect_delivered(lora, "La referencia LoRA")
    expect(_is_trainer(full), f"El primer argumento es un {type(full).__name__}, no un trainer: pasa "
                              "`full_trainer` (las medidas de `measure` no bastan: la comprobación mide ella).")
    expect(_is_trainer(lora), f"El segundo argumento es un {type(lora).__name__}, no un trainer: pasa la "
                              "referencia LoRA del barrido, p. ej. `sweep[\"referencia\"]`.")
    expect(not is_peft_model(full.model), "El ajuste completo tiene adaptador LoRA: crea ese `SFTTrainer` sin "
                                          "`peft_config`, para que entrene todos los pesos.")
    expect(_steps(full) > 0, "El ajuste completo todavía no ha entrenado: `measure(full_trainer)`.")
    _expect_trained_adapter(lora, "la referencia LoRA")
    run = Path(str(getattr(lora.args, "output_dir", None) or "")).name
    expect(not run.startswith("candidata_"),
           f"La referencia LoRA es `{run}`, una de tus candidatas del barrido (¿la que mejor salió?). El "
           "enunciado pide comparar con tu configuración, la de `peft_config`: `lora_reference = "
           "sweep[\"referencia\"]`.")
    full_budget, lora_budget = _budget(full), _budget(lora)
    expect(full_budget == lora_budget,
           f"Presupuestos distintos: el ajuste completo entrenó {_budget_text(full_budget)} y la referencia LoRA "
           f"{_budget_text(lora_budget)}. Compara con los mismos pasos y el mismo lote (`compare_args`), y como "
           "referencia el trainer del barrido con tu configuración.")
    lora_changed, _ = _changed_tensors(lora.model, every=1)
    expect(lora_changed == 0, f"La referencia LoRA cambió {lora_changed} tensores del modelo base: con LoRA los "
                              "pesos base quedan congelados. ¿Es un trainer del barrido?")
    full_rates = _learning_rates(full)
    moves = _full_moves(full.model, full_rates)
    expect(moves["rank"] > MAX_LORA_RANK,
           f"El cambio W − W₀ del ajuste completo tiene rango {moves['rank']} en alguna matriz: eso es un cambio de "
           "rango bajo, como el de un LoRA fusionado, no un ajuste de todos los pesos. Entrena `full_trainer` sin "
           "`peft_config` sobre un `fresh_model()`.")
    examples = _examples(examples)
    rows = examples.rows(FORMAT, LOSS_ROWS)
    lora_loss, base_loss = _completion_loss(lora.model, rows), _base_loss(examples, rows, lora.model)
    full_loss = _completion_loss(full.model, rows)
    rate = _rates_text(full_rates)
    losses = (f"su pérdida en {_where(examples, len(rows))} es {numbers.decimal(full_loss, 3)}; la del modelo "
              f"base, {numbers.decimal(base_loss, 3)}")
    unchanged = abs(full_loss - base_loss) <= UNCHANGED_LOSS * base_loss
    expect(unchanged or full_loss < base_loss,
           f"El ajuste completo empeoró el modelo: {losses}. Con todos los pesos a la vez, la tasa {rate} es "
           "demasiado alta: bájala (prueba 10 o 20 veces menos).")
    expect(full_loss <= FULL_LOSS_FRACTION * base_loss,
           f"El ajuste completo apenas aprendió: {losses}, y hace falta bajar a "
           f"{numbers.decimal(FULL_LOSS_FRACTION * base_loss, 3)} ({numbers.percent(FULL_LOSS_FRACTION, 0)} de la del "
           f"base). Con {_steps_text(full_budget['pasos'])}, la tasa {rate} es demasiado baja: súbela.")
    expect(moves["tensors"] and moves["share"] >= MIN_CHANGED_SHARE and moves["drift"] >= MIN_FULL_DRIFT,
           f"El ajuste completo no movió todas las matrices del modelo como lo haría su entrenamiento: en la peor "
           f"cambió un {numbers.percent(moves['share'], 0)} de sus números, {numbers.decimal(moves['drift'], 3)} "
           f"veces la suma de sus tasas de media (hace falta un {numbers.percent(MIN_CHANGED_SHARE, 0)} y "
           f"{numbers.decimal(MIN_FULL_DRIFT, 2)}). ¿Congelaste capas, o es otro modelo?")
    full_count = sum(p.numel() for p in full.model.parameters())
    lora_count = _lora_count(lora.model)
    full_bytes = sum(p.numel() * p.element_size() for p in full.model.parameters())
    return (f"Mismo presupuesto ({_budget_text(full_budget)}); el completo, a la tasa {rate}, aprendió. Entrena "
            f"{numbers.integer(full_count)} parámetros ({numbers.ratio(full_count / lora_count, 0)} los "
            f"{numbers.integer(lora_count)} de LoRA) y sus pesos ocupan en memoria {numbers.size(full_bytes)} frente "
            f"a {numbers.size(_adapter_bytes(lora.model))} (en disco, cada archivo suma su cabecera). Pérdida medida por la comprobación en "
            f"{_where(examples, len(rows))}: completo {numbers.decimal(full_loss, 3)}, LoRA "
            f"{numbers.decimal(lora_loss, 3)}, modelo base {numbers.decimal(base_loss, 3)}.")


# --- 🦁 OLoRA ------------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"trainer": handover.Trainer(), "converted_dir": handover.Folder()},
    hint=(("OLoRA cambia los pesos base al empezar, así que el adaptador entrenado solo sirve sobre ellos. "
          "PEFT lo convierte al guardar en un LoRA normal (de rango 2·r) si le das el adaptador tal como "
          "empezó: guárdalo antes de entrenar y pásaselo al guardar el entrenado."),
          ("`olora_config = replace(peft_config, init_lora_weights=...)`; en `train_olora(lr)`: "
          "`trainer = lora_trainer(...)`, `trainer.model.save_pretrained(init_dir)`, `result = measure(trainer)`, "
          "`trainer.model.save_pretrained(converted_dir, path_initial_model_for_weight_conversion=...)`, "
          "`return trainer, result, converted_dir`")),
)
def olora(trainer, converted_dir, examples=None):
    """Comprueba OLoRA por sus pesos: el residuo en los pesos base, lo aprendido y lo convertido."""
    from peft import LoraConfig, PeftModel

    from ..evaluation import generate, max_logit_diff

    expect(trainer is not None, 'Todavía no hay trainer de OLoRA: entrena con `init_lora_weights="olora"`.')
    _expect_delivered(trainer, "El trainer de OLoRA")
    expect(_is_trainer(trainer), f"Esperaba el trainer de OLoRA y recibí un {type(trainer).__name__}.")
    model = trainer.model
    expect(is_peft_model(model) and lora_layers(model),
           "El modelo del trainer no tiene adaptador: pasa la configuración al SFTTrainer "
           "(`lora_trainer(..., olora_config, lr)`).")
    residual = lora_weights.olora_residual_error(model, sample=OLORA_SAMPLE,
                                                 seed=examples.hidden_seed if examples is not None else None)
    init = _config(model).init_lora_weights
    if residual is None or residual > OLORA_RESIDUAL_MAX:
        expect(init == "olora", f"Este adaptador empezó con `init_lora_weights={init!r}`, no con OLoRA: pon "
                                '`init_lora_weights="olora"` en su LoraConfig.')
        expect(False, "La configuración dice OLoRA, pero los pesos base no llevan restado lo que OLoRA resta al "
                      f"empezar (falta un {numbers.percent(residual or 1.0, 0)}): este adaptador no empezó con "
                      "OLoRA sobre este modelo. Crea el trainer con `olora_config` sobre un `fresh_model()`.")
    expect(_steps(trainer) > 0, "El trainer de OLoRA todavía no ha entrenado: `measure(trainer)`.")
    _expect_own_adapter(model, "el trainer de OLoRA")
    folder = _folder(converted_dir, "del adaptador convertido")
    expect((folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file(),
           f"En `{folder.name}` no hay un adaptador (adapter_config.json + adapter_model.safetensors).")
    saved = LoraConfig.from_pretrained(str(folder))
    trained_r = _config(model).r
    expect(saved.init_lora_weights != "olora",
           "Guardaste el adaptador sin convertir: así solo funciona sobre los pesos base que OLoRA modificó. "
           "Guárdalo con `save_pretrained(converted_dir, path_initial_model_for_weight_conversion=str(init_dir))`.")
    expect(saved.r == 2 * trained_r,
           f"El adaptador guardado tiene r={saved.r}; la conversión de PEFT lo deja en 2·r = {2 * trained_r}. "
           "¿Es la carpeta del adaptador inicial? Pasa la carpeta donde guardaste con "
           "`path_initial_model_for_weight_conversion`.")
    examples = _examples(examples)
    rows = examples.rows(FORMAT, LOSS_ROWS)
    loss, base = _completion_loss(model, rows), _base_loss(examples, rows)
    expect(loss <= OLORA_LOSS_FRACTION * base,
           f"OLoRA no ha aprendido la tarea: su pérdida en {_where(examples, len(rows))} es "
           f"{numbers.decimal(loss, 3)} y la del modelo base {numbers.decimal(base, 3)} (hace falta bajar a "
           f"{numbers.decimal(OLORA_LOSS_FRACTION * base, 3)}). Entrena con la tasa de `OLORA_LRS` que pide el "
           "enunciado.")
    fresh = PeftModel.from_pretrained(_fresh_base(model), str(folder))
    tok, prompts = _tokenizer(), [r["prompt"] for r in examples.rows(FORMAT, PROBE_ROWS)]
    diff = max_logit_diff(fresh, model, tok, prompts)
    same = generate(fresh, tok, prompts) == generate(model, tok, prompts)
    expect(diff <= _tolerance(model) and same,
           "El adaptador convertido, sobre el modelo base original, no calcula lo mismo que el modelo entrenado "
           f"(max |Δlogits| = {numbers.decimal(diff, 3)}). Guarda el adaptador inicial ANTES de entrenar y no lo "
           "sobrescribas.")
    return (f"OLoRA de verdad: los pesos base llevan restado su trozo inicial (falta un "
            f"{numbers.percent(residual, 2)}) y su pérdida en {_where(examples, len(rows))} baja de "
            f"{numbers.decimal(base, 3)} a {numbers.decimal(loss, 3)}. Convertido: sobre un modelo base recién "
            f"cargado da las mismas respuestas que el entrenado en {len(prompts)} fechas (max |Δlogits| = "
            f"{numbers.scientific(diff)}); su rango guardado es {saved.r} = 2·{trained_r}.")


# --- 🐕 Fusionar y guardar -----------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"merged": handover.Model(), "adapter_trainer": handover.Trainer(), "merged_dir": handover.Folder()},
    hint=(("`merge_and_unload()` suma el adaptador a los pesos y quita las capas LoRA del modelo sobre el que lo "
          "llamas, en su sitio: si es `trainer.model`, ya no te queda con qué comparar. Fusiona una copia "
          "cargada del adaptador guardado, y guarda el modelo con su tokenizador."),
          ("`to_merge = PeftModel.from_pretrained(fresh_model(), ...)`; `merged = to_merge....()`; "
          "`merged_dir = OUT / \"fusionado\"`; `merged.save_pretrained(...)`; `tokenizer.save_pretrained(...)`")),
)
def merge_and_save(merged, adapter_trainer, merged_dir, examples=None):
    """Comprueba la fusión midiendo: sin capas LoRA, mismos logits que el adaptador, y recargable de disco.

    ``adapter_trainer`` es el `trainer` del entrenamiento principal (su modelo, sin fusionar, es la referencia).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..data import answer
    from ..evaluation import generate, max_logit_diff

    expect(merged is not None, "Todavía no hay modelo fusionado: `merged = to_merge.merge_and_unload()`.")
    _expect_delivered(merged, "`merged`")
    _expect_delivered(adapter_trainer, "El trainer del entrenamiento principal")
    expect(isinstance(merged, torch.nn.Module), f"`merged` es un {type(merged).__name__}, no un modelo: guarda "
                                                "lo que devuelve `merge_and_unload()`.")
    expect(not lora_layers(merged),
           "El modelo «fusionado» aún tiene capas LoRA: usa lo que devuelve `merge_and_unload()`.")
    adapter_model = getattr(adapter_trainer, "model", None) if _is_trainer(adapter_trainer) else None
    expect(adapter_model is not None, f"El segundo argumento debe ser `trainer`, el del entrenamiento principal "
                                      f"(recibí {adapter_trainer!r}).")
    fused_trainer = is_peft_model(adapter_model) and not lora_layers(adapter_model)
    expect(not fused_trainer and merged is not getattr(getattr(adapter_model, "base_model", None), "model", None),
           "Fusionaste `trainer.model`: `merge_and_unload()` cambia en su sitio el modelo sobre el que lo llamas, y "
           "el trainer se quedó sin adaptador con el que comparar. Vuelve a ejecutar la sección 5 (o carga el "
           "adaptador guardado en el trainer) y fusiona una copia: `PeftModel.from_pretrained(fresh_model(), "
           "ADAPTER_DIR).merge_and_unload()`.")
    expect(not any(module.merged for _, module in lora_layers(adapter_model)),
           "El adaptador del trainer está fusionado dentro de su modelo (`merge_adapter()`): así no hay dos "
           "modelos que comparar. Llama a `trainer.model.unmerge_adapter()` y fusiona una copia.")
    expect(is_peft_model(adapter_model), "El modelo de `trainer` no tiene adaptador LoRA: pasa el `trainer` del "
                                         "entrenamiento principal, con su adaptador sin fusionar.")
    _expect_trained_adapter(adapter_trainer, "el trainer")
    _expect_base_intact(adapter_model, "el trainer", examples)
    folder = _folder(merged_dir, "del modelo fusionado")
    expect(not (folder / "adapter_config.json").is_file(),
           f"En `{folder.name}` hay un adaptador (adapter_config.json), no un modelo fusionado: guarda `merged`, lo "
           "que devuelve `merge_and_unload()`.")
    expect((folder / "config.json").is_file() and list(folder.glob("*.safetensors")),
           f"En `{folder.name}` no hay un modelo guardado (config.json + *.safetensors): `merged.save_pretrained(...)`.")
    expect((folder / "tokenizer_config.json").is_file(),
           f"En `{folder.name}` falta el tokenizador: `tokenizer.save_pretrained(...)` en la misma carpeta, para "
           "que se pueda cargar sin el modelo base.")
    examples = _examples(examples)
    tok, tol = _tokenizer(), _tolerance(adapter_model)
    rows = examples.rows(FORMAT, PROBE_ROWS)
    prompts = [r["prompt"] for r in rows]
    reference = generate(adapter_model, tok, prompts)
    right = sum(p == answer(r) for p, r in zip(reference, rows))
    if right < MERGE_MIN_RIGHT:
        _expect_right_format(examples, reference, "El adaptador del trainer")
    expect(right >= MERGE_MIN_RIGHT,
           f"El adaptador del trainer acierta {numbers.accuracy(right, len(rows))} en {_where(examples, len(rows))} "
           f"(hace falta {MERGE_MIN_RIGHT}): la fusión se juzga con el adaptador entrenado de la sección 5. "
           "Pasa el `trainer` del entrenamiento principal, ya entrenado.")
    diff = max_logit_diff(merged, adapter_model, tok, prompts)
    expect(diff <= tol and generate(merged, tok, prompts) == reference,
           f"El modelo fusionado no calcula lo mismo que el adaptador del trainer (max |Δlogits| = "
           f"{numbers.decimal(diff, 3)} en {len(prompts)} fechas): ¿usaste `unload()` (que quita el adaptador sin "
           "sumarlo) en vez de `merge_and_unload()`, o fusionaste otro adaptador?")
    param = _param(adapter_model)
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=param.dtype).to(param.device)
    reloaded_tok = AutoTokenizer.from_pretrained(str(folder))
    expect(reloaded_tok.chat_template, "El tokenizador guardado no tiene plantilla de chat: guarda el del curso.")
    diff_disk = max_logit_diff(reloaded, adapter_model, tok, prompts)
    expect(diff_disk <= tol and generate(reloaded, reloaded_tok, prompts) == reference,
           f"El modelo recargado de `{folder.name}` no calcula lo mismo que el adaptador (max |Δlogits| = "
           f"{numbers.decimal(diff_disk, 3)}): ¿guardaste el modelo fusionado (y no el base)?")
    return (f"Fusionado y guardado, medido por la comprobación en {_where(examples, len(prompts))}: max |Δlogits| "
            f"= {numbers.scientific(diff)} en memoria y {numbers.scientific(diff_disk)} tras recargar de disco, "
            "con las mismas respuestas que el adaptador.")


# --- 🐕 pipeline ------------------------------------------------------------------------------------


@exercise(
    NOTEBOOK,
    handover={"pipe": handover.Pipeline()},
    hint=(("La carpeta del adaptador basta: su `adapter_config.json` dice cuál es el modelo base, y una clase "
          "de PEFT lo carga con el adaptador encima. Después, un pipeline de generación de texto con ese modelo "
          "y el tokenizador."),
          ("`served = AutoPeftModelForCausalLM.from_pretrained(str(...), dtype=DTYPE).to(DEVICE)`; "
          "`pipe = pipeline(\"...\", model=..., tokenizer=...)`")),
)
def pipeline_inference(pipe, examples=None):
    """Comprueba un ``pipeline("text-generation")`` con el adaptador: él y su modelo responden bien."""
    from transformers import Pipeline

    from ..data import answer

    expect(pipe is not None, 'Todavía no hay pipeline: `pipe = pipeline("text-generation", model=..., '
                             "tokenizer=...)`.")
    _expect_delivered(pipe, "El pipeline")
    expect(isinstance(pipe, Pipeline), f"Esperaba un pipeline de transformers y recibí un {type(pipe).__name__}.")
    expect(getattr(pipe, "task", "") == "text-generation",
           f'El pipeline es de la tarea {getattr(pipe, "task", "?")!r}: crea uno de "text-generation".')
    model = pipe.model
    expect(is_peft_model(model) and lora_layers(model),
           "El modelo del pipeline no lleva adaptador LoRA: carga el adaptador guardado "
           "(`AutoPeftModelForCausalLM.from_pretrained(str(ADAPTER_DIR), ...)`) y crea el pipeline con ese modelo.")
    _expect_own_adapter(model, "el pipeline")
    _expect_base_intact(model, "el modelo del pipeline", examples)
    examples = _examples(examples)
    rows = list(examples.rows(FORMAT, PIPELINE_ROWS))
    replies = []
    for row in rows:
        out = pipe(row["prompt"], max_new_tokens=16, do_sample=False, return_full_text=False)
        text = out[0]["generated_text"]
        replies.append((text[-1]["content"] if isinstance(text, list) else str(text)).strip())
    right, own = _right(model, rows)
    differ = sum(a != b for a, b in zip(replies, own))
    expect(differ <= 1, f"El pipeline responde distinto que su propio modelo en {differ} de {len(rows)} fechas: "
                        "sus respuestas tienen que salir de `pipe.model`. Crea el pipeline con "
                        '`pipeline("text-generation", model=..., tokenizer=tokenizer)`, sin cambiar cómo responde.')
    if right < PIPELINE_MIN_RIGHT:
        _expect_right_format(examples, own, "El pipeline")
    wrong = [f"«{row['prompt'][-1]['content']}» → {text!r} (esperaba {answer(row)!r})"
             for row, text in zip(rows, own) if text != answer(row)]
    expect(right >= PIPELINE_MIN_RIGHT,
           f"El pipeline falla {len(wrong)} de {len(rows)} fechas: {'; '.join(wrong[:2])}. ¿Tiene cargado el "
           "adaptador que entrenaste (el de `ADAPTER_DIR`)?")
    trainable = any(p.requires_grad for p in _lora_weights(model).values())
    note = (" Ojo: su modelo tiene el adaptador entrenable, como `trainer.model`; el enunciado pide cargarlo de "
            "`ADAPTER_DIR` como lo haría otro programa (`AutoPeftModelForCausalLM.from_pretrained`), sin usar "
            "`trainer`." if trainable else "")
    return (f"El pipeline con tu adaptador responde bien {right} de {_where(examples, len(rows))} (y su modelo, "
            f"igual).{note}")
