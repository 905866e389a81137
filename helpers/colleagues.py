"""Los modelos fusionados "de tres compañeros" del ejercicio 🐕 del cuaderno de carga.

``colleague_merges()`` los hace al momento, cada uno con una historia sorteada (bien hecho, o con uno de
cuatro fallos típicos al fusionar; ver ``helpers.shipped.MERGE_STORIES``) y con una firma en sus pesos que
dice que llegó de un compañero. Al corregir, las historias, el adaptador de «otro_adaptador» y las firmas
salen de la variante de la entrega (``colleague_draw``), y el juez exige exactamente esas.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .model import fresh_base
from .shipped import (
    ADAPTER_FORMATS,
    COLLEAGUES,
    LORA_ALPHA,
    LORA_R,
    MERGE_STORIES,
    adapter_dir,
    variant_random,
)

# Firma de un fusionado de compañero: `model.norm.weight` × (1 ± 2⁻¹⁶) con un patrón de signos que sale de
# un número al azar. No cambia lo que se mide (pesos de las capas adaptadas; los logits se mueven ~1e-3, lo
# mismo que el ruido de una fusión correcta), pero un modelo recién cargado o fusionado por uno mismo no la
# lleva: así la comprobación sabe que `broken` es el que llegó del compañero.
SIGNATURE_SCALE = 2.0**-16
SIGNATURE_NONCE_BITS = 32


def _signature_signs(nonce: int, size: int):
    """±1 de la firma: los primeros bits son ``nonce``; el resto sale de un generador sembrado con él."""
    import torch

    bits = [(nonce >> i) & 1 for i in range(SIGNATURE_NONCE_BITS)]
    rest = torch.randint(0, 2, (size - SIGNATURE_NONCE_BITS,), generator=torch.Generator().manual_seed(nonce))
    return torch.tensor(bits + rest.tolist(), dtype=torch.float32) * 2 - 1


def signature_nonce(norm_weight, base_norm_weight) -> int | None:
    """El número de la firma que lleva ``norm_weight`` frente al original, o None si no la lleva."""
    import torch

    ratio = norm_weight.detach().float().cpu() / base_norm_weight.float()
    signs = torch.sign(ratio - 1)
    if not bool(torch.all(torch.isclose((ratio - 1).abs(), torch.full_like(ratio, SIGNATURE_SCALE), rtol=0.05))):
        return None
    nonce = sum(1 << i for i in range(SIGNATURE_NONCE_BITS) if signs[i] > 0)
    return nonce if torch.equal(signs, _signature_signs(nonce, len(signs))) else None


def _lora_deltas(folder: Path) -> dict:
    """{nombre del peso en el modelo: ΔW = escala · B · A} de un adaptador guardado."""
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    scaling = config["lora_alpha"] / config["r"]
    weights = load_file(folder / "adapter_model.safetensors")
    prefix, suffix = "base_model.model.", ".lora_A.weight"
    return {key[len(prefix):-len(suffix)] + ".weight": (weights[key.replace("lora_A", "lora_B")] @ weights[key]) * scaling
            for key in weights if key.endswith(suffix)}


def _draw_one(rng: random.Random, story: str | None = None) -> dict:
    """Lo que se sortea de un compañero: historia, el adaptador de «otro_adaptador» y el número de su firma."""
    story = story or rng.choice(list(MERGE_STORIES))
    return {"story": story, "other": rng.choice([fmt for fmt in ADAPTER_FORMATS if fmt != "iso"]),
            "nonce": rng.getrandbits(SIGNATURE_NONCE_BITS)}


def colleague_draw(token: str | None = None) -> dict[str, dict] | None:
    """{compañero: {"story", "other", "nonce"}} de la variante (``token`` o la de esta ejecución); None sin ella."""
    rng = variant_random("compañeros", token)
    if rng is None:
        return None
    drawn: dict[str, dict] = {}
    while len(drawn) < len(COLLEAGUES):
        one = _draw_one(rng)
        if one["nonce"] not in {d["nonce"] for d in drawn.values()}:  # dos firmas iguales serían un mismo modelo
            drawn[COLLEAGUES[len(drawn)]] = one
    return drawn


def colleague_merge(story: str, rng: random.Random | None = None, drawn: dict | None = None):
    """Un fusionado del adaptador ISO con la historia ``story`` (ver ``MERGE_STORIES``), en CPU y float32.

    ``drawn``: el adaptador de «otro_adaptador» y el número de la firma ya sorteados (``colleague_draw``);
    sin él se sortean con ``rng``. Todas las historias se construyen igual (base recién cargado + lo que esa
    historia suma a los pesos + la firma), así que el objeto no guarda ningún rastro de cuál es: solo sus
    pesos lo dicen.
    """
    import torch

    if story not in MERGE_STORIES:
        raise ValueError(f"Historia desconocida {story!r}. Usa una de: {', '.join(MERGE_STORIES)}.")
    drawn = drawn or _draw_one(rng or random.SystemRandom(), story)
    other = drawn["other"]
    source, factor = {"bien": ("iso", 1.0), "sin_fusionar": ("iso", 0.0), "dos_veces": ("iso", 2.0),
                      "sin_escala": ("iso", LORA_R / LORA_ALPHA), "otro_adaptador": (other, 1.0)}[story]
    model = fresh_base()
    params = dict(model.named_parameters())
    with torch.no_grad():
        if factor:
            for key, delta in _lora_deltas(adapter_dir(source)).items():
                params[key] += factor * delta
        norm = params["model.norm.weight"]
        norm.mul_(1 + SIGNATURE_SCALE * _signature_signs(drawn["nonce"], norm.numel()))
    return model.eval()


def colleague_merges(device: str | None = None) -> dict:
    """{compañero: modelo fusionado}: tres fusionados del adaptador ISO, cada uno con una historia al azar.

    Se sortea en cada llamada (con el azar del sistema, no con una semilla del curso) y no se guarda cuál
    salió: cada ejecución del cuaderno trae otros, y solo se sabe qué les pasó midiéndolos. Al corregir, los
    sortea la variante de la entrega (``colleague_draw``).
    """
    drawn = colleague_draw()
    if drawn is None:
        rng = random.SystemRandom()
        drawn = {name: _draw_one(rng) for name in COLLEAGUES}
    merges = {name: colleague_merge(one["story"], drawn=one) for name, one in drawn.items()}
    return {name: model.to(device) if device else model for name, model in merges.items()}
