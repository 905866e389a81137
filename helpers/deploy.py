"""Medidas del cuaderno de despliegue: cuánto ΔW sobrevive a cada formato y qué hace llama.cpp con las activaciones.

- ``delta_survival_table``: para cada formato, cuánto de ΔW (no de W) llega tras cuantizar y descuantizar
  W + ΔW, en todas las capas que cambió el adaptador, y |ΔW| frente al paso de la rejilla.
- ``llama_activations``: imita en PyTorch lo que hace llama.cpp en CPU al multiplicar por pesos cuantizados:
  antes del producto, **también cuantiza la entrada** (las activaciones) por bloques de 32 a 8 bits
  (Q8_0/Q8_1), y a F16 si los pesos son F16. Con esto activado, el modelo de PyTorch responde como llama.cpp.
- ``agreement``: cuántas respuestas coinciden entre dos listas.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .gguf_export import gguf_name, roundtrip

BLOCK = 32  # tamaño de bloque de Q8_0, Q8_1, Q4_1... en llama.cpp
# El tipo al que llama.cpp convierte las activaciones antes del producto, según el tipo de los pesos
ACTIVATION_TYPE = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0", "Q4_0": "Q8_0", "Q4_1": "Q8_1"}


def agreement(first: list[str], second: list[str]) -> int:
    """Cuántas respuestas son idénticas, fila a fila (``helpers.evaluation.exact_match``)."""
    from .evaluation import exact_match

    return exact_match(first, second)


def changed_layers(base_state: dict, merged_state: dict) -> list[str]:
    """Los pesos (nombres de Hugging Face) que la fusión cambió."""
    return [k for k, w in merged_state.items() if k in base_state and not torch.equal(w, base_state[k])]


def grid_step(weight: np.ndarray, fmt: str) -> float:
    """El paso medio de la rejilla de ``fmt`` para ``weight`` (lo que separa dos valores guardables vecinos).

    Q8_0: max|w| / 127 por bloque de 32; Q4_1: (max − min) / 15 por bloque; F16: 2⁻¹⁰ · |w| (11 bits de mantisa).
    """
    if fmt in ("F32",):
        return float(np.mean(np.abs(weight))) * 2.0 ** -23
    if fmt in ("F16", "BF16"):
        return float(np.mean(np.abs(weight))) * 2.0 ** (-10 if fmt == "F16" else -7)
    blocks = weight.reshape(-1, BLOCK)
    if fmt == "Q8_0":
        return float(np.mean(np.abs(blocks).max(axis=1) / 127))
    if fmt in ("Q4_0", "Q4_1"):
        return float(np.mean((blocks.max(axis=1) - blocks.min(axis=1)) / 15))
    raise ValueError(f"formato desconocido: {fmt}")


def delta_survival_table(base_state: dict, merged_state: dict, formats=("F16", "Q8_0", "Q4_1")) -> list[dict]:
    """Por formato, con todas las capas que cambió el ajuste juntas, lo que queda de ΔW tras guardar W + ΔW:

    - ``|ΔW| / paso``: el |ΔW| medio dividido por el paso medio de la rejilla (por debajo de 1, ΔW es más pequeño
      que el redondeo);
    - ``ΔW que llega``: la proyección de lo guardado, Q(W+ΔW) − Q(W), sobre ΔW (1 = llega entero en promedio,
      aunque cada número lleve ruido; 0 = no llega nada);
    - ``error ΔW``: ‖Q(W+ΔW) − Q(W) − ΔW‖ / ‖ΔW‖, el ruido que acompaña a lo que llega (0 = llega exacto).
    """
    layers = changed_layers(base_state, merged_state)
    rows = []
    for fmt in formats:
        lost = total = step = size = along = 0.0
        for name in layers:
            w = base_state[name].float().numpy()
            delta = merged_state[name].float().numpy() - w
            kept = roundtrip(w + delta, fmt) - roundtrip(w, fmt)
            lost += float(np.sum((kept - delta) ** 2))
            along += float(np.sum(kept * delta))
            total += float(np.sum(delta ** 2))
            step += grid_step(w + delta, fmt)
            size += float(np.mean(np.abs(delta)))
        rows.append({"formato": fmt, "|ΔW| / paso": size / step, "ΔW que llega": along / total,
                     "error ΔW": (lost / total) ** 0.5})
    return rows


def quantize_blocks(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``x`` redondeado como lo guarda llama.cpp en ``kind``: Q8 por bloques de 32 del último eje, o F16."""
    if kind == "F32":
        return x
    if kind == "F16":
        return x.half().float()
    shape = x.shape
    blocks = x.float().reshape(-1, BLOCK)
    scale = blocks.abs().amax(dim=1, keepdim=True) / 127
    scale = scale.half().float()  # llama.cpp guarda la escala en F16
    q = torch.where(scale > 0, torch.round(blocks / scale.clamp_min(1e-30)), torch.zeros_like(blocks))
    return (q * scale).reshape(shape).to(x.dtype)


@contextlib.contextmanager
def llama_activations(model, weight_types: dict[str, str]):
    """Mientras dura el bloque, cada capa lineal cuantiza su entrada como llama.cpp según el tipo de su peso.

    ``weight_types``: {nombre GGUF: tipo} (``GGUFReader``); ``lm_head`` usa el de ``token_embd`` si no hay
    ``output``. Las capas cuyo tipo no está en ``ACTIVATION_TYPE`` se dejan como están.
    """
    hooks = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if name.endswith("lm_head"):
            gguf = "output.weight" if "output.weight" in weight_types else "token_embd.weight"
        else:
            gguf = gguf_name(f"{name}.weight")
        kind = ACTIVATION_TYPE.get(weight_types.get(gguf, "F32"), "F32")
        kind = "Q8_0" if kind == "Q8_1" else kind  # Q8_1 redondea igual que Q8_0 (añade la suma del bloque)
        hooks.append(module.register_forward_pre_hook(lambda _m, args, kind=kind: (quantize_blocks(args[0], kind),)))
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()


def weight_types(path) -> dict[str, str]:
    """{nombre GGUF: tipo} de los tensores de un archivo GGUF."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def dequantized_copy(model, types: dict[str, str]):
    """Una copia de ``model`` con cada peso como queda tras guardarlo en su tipo GGUF y volver a leerlo.

    Los bloques de cuantización van a lo largo de cada fila (las entradas): permutar filas (q, k) no los cambia,
    así que se puede redondear en el orden de Hugging Face.
    """
    import copy

    copied = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in copied.named_parameters():
            if param.ndim != 2 or name == "lm_head.weight":
                continue
            kind = types.get(gguf_name(name), "F32")
            param.copy_(torch.from_numpy(roundtrip(param.detach().float().numpy(), kind)))
    return copied
