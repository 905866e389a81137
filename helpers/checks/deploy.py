"""Comprobaciones del cuaderno ``lora_deploy``: ``from helpers.checks import deploy as checks``.

``checks.export_gguf(merged, gguf_path)`` y ``checks.smallest_format(merged, gguf_path)``. El archivo GGUF
entregado se valida byte a byte (``helpers.checks.gguf_files``) antes de que nada lo abra; después la
comprobación lo mide ella misma: compara sus pesos con los del modelo fusionado y lo ejecuta en llama.cpp,
con sus propias fechas (ocultas en la corrección). Para la decisión del formato, la comprobación exporta ella
misma el modelo en cada formato y mide cuál conserva el ajuste fino: ningún número escrito da puntos.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..gguf_export import export_model, unpermute_qk
from ..numbers import decimal, integer
from . import handover
from .core import exercise as _exercise
from .core import expect
from .gguf_files import GGUFFile, matrix_format, validate_model
from .safe_files import Refused

NOTEBOOK = "lora_deploy"
EXACT_FORMATS = ("F32", "F16", "BF16")  # sin cuantizar: ΔW llega casi entero
FORMATS_BY_SIZE = ("Q4_1", "Q8_0", "F16")  # de menor a mayor: los que mide la decisión del 🦁
CHECK_ROWS = 8  # fechas con las que se ejecuta el GGUF en llama.cpp
DECISION_ROWS = 24  # fechas con las que se decide qué formato conserva el ajuste fino
# El ajuste fino que se despliega es el TUYO (lora_finetuning, formato con puntos): ningún adaptador del curso
# responde ese formato (el base y los publicados aciertan 0), así que ningún archivo del curso da estos puntos.
MIN_RIGHT = 5  # de CHECK_ROWS, como merge_and_save
# Lo guardado frente a ``merged`` redondeado al mismo tipo, en unidades de ‖ΔW‖: una exportación fiel da 0 (el
# mismo redondeo); el base exportado, ≈ 1; q y k sin permutar, > 1. El umbral queda lejos de los dos.
MAX_DELTA_ERROR = 0.05
# Respuestas idénticas a las de PyTorch que se piden al GGUF sin cuantizar (de CHECK_ROWS)
MIN_AGREEMENT = CHECK_ROWS - 1
# Un formato «conserva el ajuste fino» si acierta, en llama.cpp, al menos esta fracción de lo que acierta el
# modelo fusionado en PyTorch con las mismas fechas (la regla del cuaderno).
KEEP_FRACTION = 0.75
# El cuaderno decide con 120 fechas de prueba; la comprobación mide con DECISION_ROWS fechas suyas. Un formato
# cuya tasa de aciertos está cerca del umbral puede caer a un lado en unas y al otro en otras: con p ≈ 0,8 y
# 24 fechas, la desviación típica es ≈ 2 aciertos. MARGIN (≈ 1,5 desviaciones) es la zona gris: en ella no se
# castiga ni elegir ese formato ni descartarlo.
MARGIN = 3


def exercise(hint):
    return _exercise(NOTEBOOK, hint=hint, handover={"merged": handover.Model(), "gguf_path": GGUFFile()})


def _expect_merged(merged) -> None:
    import torch

    from .models import is_peft_model

    expect(merged is not None, "`merged` es None: asígnale el modelo que devuelve `merge_and_unload()`.")
    expect(not isinstance(merged, handover.Unexpected), f"`merged` no es lo que se pide: llegó {merged}.")
    expect(isinstance(merged, torch.nn.Module), f"`merged` es un {type(merged).__name__}, no un modelo.")
    expect(not is_peft_model(merged), "`merged` todavía es un PeftModel: fusiónalo con `merge_and_unload()`.")


def _validated(gguf_path) -> tuple[Path, dict]:
    expect(gguf_path is not None, "`gguf_path` es None: pon la ruta del archivo que escribiste.")
    expect(not isinstance(gguf_path, handover.Unexpected), f"El archivo GGUF no se acepta: llegó {gguf_path}.")
    path = Path(gguf_path)
    expect(path.is_file(), f"No encuentro el archivo {path.name!r}: ¿lo escribiste con `export_model`?")
    try:
        return path, validate_model(path)
    except Refused as refused:
        expect(False, f"El archivo GGUF no pasa la validación: {refused}.")


def delta_errors(merged, path: Path) -> dict[str, float]:
    """{matriz GGUF: error de lo guardado} en las matrices que el ajuste fino cambió (q y k, sin permutar).

    Lo guardado se compara con los pesos de ``merged`` redondeados al tipo de ese tensor (lo que escribe una
    exportación fiel), en unidades de ‖ΔW‖: 0 = el archivo lleva exactamente ``merged``; ≈ 1, el base.
    """
    from gguf import GGUFReader, quants

    from ..gguf_export import gguf_name, roundtrip
    from ..model import fresh_base

    base = fresh_base().state_dict()
    state = merged.state_dict()
    config = merged.config
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    tensors = {t.name: t for t in GGUFReader(path).tensors}
    errors = {}
    for key, weight in state.items():
        if key not in base or weight.ndim != 2 or key == "lm_head.weight" or weight.equal(base[key]):
            continue
        name = gguf_name(key)
        t = tensors[name]
        stored = quants.dequantize(t.data, t.tensor_type).reshape(weight.shape).astype(np.float32)
        part = name.split(".")[2]
        if part in heads:
            stored = unpermute_qk(stored, heads[part])
        delta = (weight - base[key]).float().numpy()
        target = roundtrip(weight.float().numpy(), t.tensor_type.name)
        errors[name] = float(np.linalg.norm(stored - target) / np.linalg.norm(delta))
    return errors


def _torch_answers(merged, prompts) -> list[str]:
    from ..evaluation import generate
    from ..model import load_tokenizer

    return generate(merged, load_tokenizer(), prompts)


def _llama_answers(path: Path, prompts) -> list[str]:
    from ..llama import LlamaRunner

    runner = LlamaRunner(path)
    try:
        return runner.answers(prompts)
    finally:
        runner.close()


def _task(examples, n: int):
    """(filas en el formato con puntos, prompts, respuestas esperadas, de dónde salen) para ``n`` fechas."""
    from ..data import TRAINED_FORMAT, Examples, answer

    examples = examples or Examples("test")
    rows = examples.rows(TRAINED_FORMAT, n)
    where = "fechas ocultas" if examples.is_hidden else "primeras fechas de prueba"
    return [row["prompt"] for row in rows], [answer(row) for row in rows], where


def _expect_fine_tune(torch_out, expected, where) -> int:
    from ..evaluation import exact_match

    right = exact_match(torch_out, expected)
    expect(right >= MIN_RIGHT * len(expected) // CHECK_ROWS,
           f"El modelo fusionado acierta {right}/{len(expected)} {where} en el formato con puntos: lo que se "
           "despliega aquí es TU ajuste fino de lora_finetuning (ningún adaptador del curso responde ese formato). "
           "Ejecuta antes lora_finetuning para que guarde su adaptador y vuelve a empezar este cuaderno.")
    return right


def _expect_llama() -> None:
    from ..llama import available, missing_reason

    expect(available(), f"Esta comprobación ejecuta el GGUF en llama.cpp. {missing_reason()}")


# ---------------------------------------------------------------- 🐢 exportar a GGUF sin perder nada
@exercise(hint=(
    ("El modelo fusionado ya está en `merged`; escríbelo sin cuantizar con `export_model`: convierte los nombres, "
     "permuta q y k y copia del GGUF base el tokenizador y la plantilla de chat."),
    "`gguf_path = export_model(merged, BASE_GGUF, OUT / \"fusionado-F16.gguf\", qtype=...)`",
))
def export_gguf(merged, gguf_path, examples=None):
    """El GGUF sin cuantizar del modelo fusionado: lleva ΔW entero y llama.cpp responde como PyTorch."""
    _expect_merged(merged)
    path, types = _validated(gguf_path)
    fmt = matrix_format(types)
    expect(fmt in EXACT_FORMATS, f"El archivo está en {fmt}: en este ejercicio, expórtalo sin cuantizar "
                                 "(`qtype=\"F16\"`).")
    errors = delta_errors(merged, path)
    expect(errors, "`merged` es el modelo base: no lleva ningún cambio. Fusiona el adaptador antes de exportar.")
    worst = max(errors, key=errors.get)
    expect(errors[worst] <= MAX_DELTA_ERROR,
           f"En el GGUF, {worst} no lleva los pesos del modelo fusionado (diferencia {decimal(errors[worst], 2)} "
           f"‖ΔW‖; se espera ≤ {decimal(MAX_DELTA_ERROR, 2)}). Cerca de 1: exportaste otro modelo (¿el base?); "
           "mayor: revisa la permutación de q y k.")
    _expect_llama()
    prompts, expected, where = _task(examples, CHECK_ROWS)
    torch_out = _torch_answers(merged, prompts)
    _expect_fine_tune(torch_out, expected, where)
    llama_out = _llama_answers(path, prompts)
    from ..evaluation import exact_match

    same = exact_match(torch_out, llama_out)
    first = next((i for i, (a, b) in enumerate(zip(torch_out, llama_out)) if a != b), 0)
    expect(same >= MIN_AGREEMENT,
           f"llama.cpp responde distinto que PyTorch en {CHECK_ROWS - same} de {CHECK_ROWS} {where} (p. ej. "
           f"{llama_out[first]!r} frente a {torch_out[first]!r}).")
    return (f"El GGUF lleva los pesos de `merged` en las {integer(len(errors))} matrices que cambió el ajuste "
            f"(diferencia máxima {decimal(errors[worst], 4)} ‖ΔW‖) y llama.cpp responde como PyTorch en "
            f"{same}/{CHECK_ROWS} {where}.")


def format_hits(merged, prompts, expected, formats) -> dict[str, int]:
    """{formato: aciertos en llama.cpp} del modelo que la propia comprobación exporta en cada formato."""
    from ..evaluation import exact_match
    from ..model import bundled_gguf

    found = {}
    with tempfile.TemporaryDirectory(prefix="formatos-") as tmp:
        for fmt in formats:
            path = export_model(merged, bundled_gguf(), Path(tmp) / f"{fmt}.gguf", fmt)
            found[fmt] = exact_match(_llama_answers(path, prompts), expected)
            path.unlink()
    return found


# ---------------------------------------------------------------- 🦁 el formato más pequeño que conserva el ajuste
@exercise(hint=(
    ("Conservar el ajuste fino se mide: compara los aciertos de cada formato en llama.cpp (`llama_out`) con los de "
     "PyTorch (`torch_eval.correct`). El más pequeño que llega al 75 % es la respuesta; entrega ESE archivo."),
    ("`keeps = {fmt: hits(llama_out[fmt]) >= 0.75 * torch_eval.correct for fmt in FORMATS_GGUF}` y "
     "`chosen_path = paths[...]` con el más pequeño que conserva."),
))
def smallest_format(merged, gguf_path, examples=None):
    """El GGUF entregado está en el formato más pequeño que conserva el ajuste fino en llama.cpp (medido aquí)."""
    _expect_merged(merged)
    path, types = _validated(gguf_path)
    fmt = matrix_format(types)
    expect(fmt in FORMATS_BY_SIZE, f"El archivo está en {fmt}: elige entre {', '.join(FORMATS_BY_SIZE)}.")
    _expect_llama()
    errors = delta_errors(merged, path)
    expect(errors, "`merged` es el modelo base: no lleva ningún cambio. Fusiona el adaptador antes de exportar.")
    expect(max(errors.values()) <= MAX_DELTA_ERROR, "El GGUF no lleva los pesos del modelo fusionado `merged` "
                                                    "en su formato: expórtalo de `merged` con `export_model`.")
    prompts, expected, where = _task(examples, DECISION_ROWS)
    torch_out = _torch_answers(merged, prompts)
    reference = _expect_fine_tune(torch_out, expected, where)
    needed = KEEP_FRACTION * reference
    from ..evaluation import exact_match

    submitted = exact_match(_llama_answers(path, prompts), expected)
    expect(submitted >= needed - MARGIN,
           f"Tu archivo ({fmt}) acierta {submitted}/{DECISION_ROWS} {where} en llama.cpp, frente a {reference}/"
           f"{DECISION_ROWS} en PyTorch: pierde el ajuste fino. Mide antes de decidir.")
    smaller = FORMATS_BY_SIZE[:FORMATS_BY_SIZE.index(fmt)]
    measured = format_hits(merged, prompts, expected, smaller)
    kept = [f for f in smaller if measured[f] >= needed + MARGIN]
    expect(not kept, f"{kept[0] if kept else ''} es más pequeño y también conserva el ajuste fino "
                     f"({measured.get(kept[0], 0) if kept else 0}/{DECISION_ROWS} {where} en llama.cpp, "
                     f"PyTorch {reference}/{DECISION_ROWS}): no es el más pequeño.")
    lost = ", ".join(f"{f} {measured[f]}/{DECISION_ROWS}" for f in smaller) or "no hay ninguno más pequeño"
    return (f"{fmt} conserva el ajuste fino ({submitted}/{DECISION_ROWS} {where} en llama.cpp; PyTorch "
            f"{reference}/{DECISION_ROWS}) y los más pequeños no ({lost}).")
