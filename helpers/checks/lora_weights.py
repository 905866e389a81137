"""Lo que dicen los pesos de un adaptador LoRA, medido en ellos (no en lo que el adaptador dice de sí mismo).

Un adaptador son, por capa, dos matrices pequeñas y una escala: ``ΔW = escala · B · A``. Aquí se comparan
ΔW sin construirlas (con productos de matrices r×r), así que cuesta poco incluso con 210 capas:

- ``factors(model)`` / ``folder_factors(carpeta)`` / ``shipped_factors(fmt)``: ``{capa: (A, B, escala)}``;
- ``similarity(f, g)``: coseno entre los ΔW de dos adaptadores en las capas que comparten (1 = el mismo
  cambio, aunque tenga otro rango, otra escala u otros bytes; 0 = nada en común);
- ``closest_shipped(f)``: el adaptador publicado de ``adapters/`` más parecido y cuánto se parece;
- ``numerical_ranks(f)``: el rango de verdad de cada ΔW (un rango 32 relleno con ceros tiene rango 8);
- ``olora_residual_error(model)``: si los pesos base llevan restado el trozo que resta OLoRA al empezar;
- ``update_ratio(f, tasas)``: cuánto se movió B (que LoRA empieza en cero) frente a la suma de las tasas;
  ``a_drift_ratio(f, tasas, init)``: lo mismo para A, que empieza acotada (``init_bound``);
- ``delta_rank(d)``: el rango numérico de un cambio W − W₀ (un LoRA fusionado no pasa de su r).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

PREFIX = "base_model.model."
# Un valor singular cuenta si pasa de esta fracción del mayor. El redondeo de float32 deja ~1e-7; un
# relleno con ceros deja 0.
RANK_TOLERANCE = 1e-4


def _layer(key: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` -> ``model.layers.0.self_attn.q_proj``."""
    key = key.removeprefix(PREFIX)
    for part in (".lora_A.", ".lora_B."):
        if part in key:
            return key.split(part)[0]
    raise KeyError(key)


def factors(model, adapter: str | None = None) -> dict:
    """``{capa: (A, B, escala)}`` del adaptador ``adapter`` (el activo si no se dice) de un PeftModel."""
    from peft.tuners.lora import LoraLayer

    name = adapter or model.active_adapter
    found = {}
    for key, module in model.named_modules():
        if isinstance(module, LoraLayer) and name in module.lora_A:
            scale = module.scaling[name]
            found[key.removeprefix(PREFIX)] = (module.lora_A[name].weight.detach().float().cpu(),
                                               module.lora_B[name].weight.detach().float().cpu(), float(scale))
    return found


def scale_of(config: dict) -> float:
    """``lora_alpha / r`` (o ``/ √r`` con rsLoRA), de un ``adapter_config.json`` ya validado."""
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def state_factors(state: dict, scale: float) -> dict:
    """``{capa: (A, B, escala)}`` de un diccionario de pesos guardado por PEFT."""
    found = {}
    for key, tensor in state.items():
        if ".lora_A." in key:
            b_key = key.replace(".lora_A.", ".lora_B.")
            found[_layer(key)] = (tensor.float(), state[b_key].float(), scale)
    return found


def folder_factors(folder) -> dict:
    """Los factores de un adaptador guardado con ``save_pretrained`` (solo safetensors)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return state_factors(load_file(str(folder / "adapter_model.safetensors")), scale_of(config))


@functools.cache
def shipped_factors(fmt: str) -> dict:
    """Los factores del adaptador publicado ``adapters/<fmt>``."""
    from ..shipped import adapter_dir

    return folder_factors(adapter_dir(fmt))


def _inner(x: tuple, y: tuple) -> float:
    """⟨ΔW_x, ΔW_y⟩ de Frobenius sin formar ΔW: s_x s_y · traza((B_xᵀ B_y)(A_y A_xᵀ))."""
    (ax, bx, sx), (ay, by, sy) = x, y
    return sx * sy * float(((bx.double().T @ by.double()) @ (ay.double() @ ax.double().T)).trace())


def similarity(f: dict, g: dict) -> float:
    """|coseno| entre los ΔW de ``f`` y ``g`` en las capas que comparten (0 si no comparten ninguna)."""
    common = [key for key in f if key in g and f[key][1].shape[0] == g[key][1].shape[0]
              and f[key][0].shape[1] == g[key][0].shape[1]]
    if not common:
        return 0.0
    dot = sum(_inner(f[k], g[k]) for k in common)
    norm_f = sum(_inner(f[k], f[k]) for k in common)
    norm_g = sum(_inner(g[k], g[k]) for k in common)
    if norm_f <= 0 or norm_g <= 0:
        return 0.0
    return abs(dot) / math.sqrt(norm_f * norm_g)


def closest_shipped(f: dict, formats=None) -> tuple[str | None, float]:
    """(formato, similitud) del adaptador publicado de ``adapters/`` cuyo ΔW más se parece al de ``f``."""
    from ..shipped import ADAPTER_FORMATS

    scores = {fmt: similarity(f, shipped_factors(fmt)) for fmt in (formats or ADAPTER_FORMATS)}
    best = max(scores, key=scores.get)
    return best, scores[best]


def singular_values(a, b, scale: float):
    """Los valores singulares de ``scale · B · A`` (de mayor a menor), con matrices r×r."""
    import torch

    _, rb = torch.linalg.qr(b.double())
    _, ra = torch.linalg.qr(a.double().T)
    return abs(scale) * torch.linalg.svdvals(rb @ ra.T)


def numerical_ranks(f: dict, tolerance: float = RANK_TOLERANCE) -> dict[str, int]:
    """``{capa: rango numérico de ΔW}``: cuántos valores singulares pasan de ``tolerance`` · el mayor."""
    ranks = {}
    for key, (a, b, scale) in f.items():
        values = singular_values(a, b, scale)
        ranks[key] = int((values > tolerance * values[0]).sum()) if len(values) and values[0] > 0 else 0
    return ranks


def update_ratio(f: dict, learning_rates) -> float:
    """max |B| / Σ tasas: Adam mueve cada peso como mucho ~una tasa por paso, y LoRA empieza con B = 0.

    Un adaptador entrenado con esas tasas da menos de 1; uno que llegó de otro sitio (o entrenó más
    pasos de los que cuenta su historial), bastante más.
    """
    total = float(sum(learning_rates))
    moved = max((float(b.abs().max()) for _, b, _ in f.values()), default=0.0)
    return math.inf if total <= 0 else moved / total


def init_bound(a, init) -> float | None:
    """La mayor |A| posible al empezar, según la inicialización de PEFT (None si no se conoce una cota).

    Por defecto (``True``), ``kaiming_uniform_(A, a=√5)``: uniforme en ±1/√entradas. ``"gaussian"``: normal de
    desviación 1/r, que en menos de 10⁸ números no pasa de 6 desviaciones.
    """
    if init is True:
        return 1 / math.sqrt(a.shape[1])
    if init == "gaussian":
        return 6 / a.shape[0]
    return None


def a_drift_ratio(f: dict, learning_rates, init=True) -> float:
    """(max |A| − su cota inicial) / Σ tasas: A empieza acotada y Adam la mueve como mucho ~una tasa por paso.

    Así, escalar B hacia abajo y A hacia arriba (el mismo ΔW, con un B que pasa ``update_ratio``) no pasa
    inadvertido. 0 si la inicialización no tiene cota conocida (OLoRA, PiSSA...: lo miran otras medidas).
    """
    total = float(sum(learning_rates))
    drift = 0.0
    for a, _, _ in f.values():
        bound = init_bound(a, init)
        if bound is None:
            return 0.0
        drift = max(drift, float(a.abs().max()) - bound)
    return math.inf if total <= 0 else max(drift, 0.0) / total


def delta_rank(delta, tolerance: float = 1e-3) -> int:
    """El rango numérico de ``delta`` (= W − W₀): valores singulares por encima de ``tolerance`` · el mayor."""
    import torch

    values = torch.linalg.svdvals(delta.double())
    return int((values > tolerance * values[0]).sum()) if len(values) and values[0] > 0 else 0


def olora_residual_error(model, adapter: str | None = None, every: int = 1, sample: int | None = None,
                         seed: int | None = None) -> float | None:
    """Qué parte del trozo que resta OLoRA falta en los pesos base, en la capa peor (≈0 si es OLoRA de verdad).

    OLoRA empieza con ``B₀A₀ = Q_r R_r`` (la QR de W, sin pivotar) y deja en la capa ``W − escala · Q_r R_r``.
    ``Q_r R_r`` es la proyección de W sobre sus r primeras columnas, así que no depende de signos. Se miran
    una de cada ``every`` capas o, con ``sample``, tantas capas sorteadas con ``seed`` (la semilla oculta de
    quien corrige; None: una al azar del sistema): quien fabrica el residuo a mano no sabe en cuáles. None si no
    se pueden leer los pesos originales.
    """
    import torch
    from peft.tuners.lora import LoraLayer

    from .handover import _base_tensor
    from .models import base_checkpoint

    files = base_checkpoint() or {}
    name = adapter or model.active_adapter
    layers = [(key.removeprefix(PREFIX), m) for key, m in model.named_modules()
              if isinstance(m, LoraLayer) and name in m.lora_A]
    chosen = layers[::every]
    if sample is not None and sample < len(layers):
        import random

        draw = random.Random(seed) if seed is not None else random.SystemRandom()
        chosen = [layers[i] for i in sorted(draw.sample(range(len(layers)), sample))]
    worst = None
    for key, module in chosen:
        original = _base_tensor(files, f"{key}.weight")
        if original is None:
            return None
        original = original.float()
        r, scale = module.r[name], float(module.scaling[name])
        q, rr = torch.linalg.qr(original)
        removed = scale * (q[:, :r] @ rr[:r])
        current = module.get_base_layer().weight.detach().float().cpu()
        den = float(removed.pow(2).sum())
        if den <= 0:
            return None
        error = math.sqrt(float((current - (original - removed)).pow(2).sum()) / den)
        worst = error if worst is None else max(worst, error)
    return worst
