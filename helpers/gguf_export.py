"""Del modelo de PyTorch a un archivo GGUF que entiende llama.cpp, con el paquete ``gguf``.

Lo que hace ``convert_hf_to_gguf.py`` de llama.cpp para un modelo llama, en pocas líneas que se pueden leer:

- **nombres**: ``model.layers.3.self_attn.q_proj.weight`` → ``blk.3.attn_q.weight`` (``gguf_name``);
- **la permutación de q y k**: Hugging Face guarda las dos mitades de cada cabeza de q y k juntas (RoPE «por
  mitades»); llama.cpp las quiere intercaladas (RoPE «por pares»). ``permute_qk`` reordena las filas;
  ``unpermute_qk`` deshace el cambio (lo que hace el lector GGUF de transformers);
- **tipos**: las normas en F32; el resto en el tipo pedido (F16, Q8_0, Q4_1...), cuantizado con
  ``gguf.quants.quantize``;
- **metadatos**: se copian del GGUF base (arquitectura, tokenizador, plantilla de chat, tokens especiales):
  el archivo nuevo habla y se tokeniza igual que el base.

``lora_adapter_gguf`` escribe el adaptador LoRA sin fusionar, como ``convert_lora_to_gguf.py``: tensores
``<nombre>.lora_a`` y ``<nombre>.lora_b`` y la clave ``adapter.lora.alpha``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# Nombre de Hugging Face (con {i} = número de bloque) → nombre en GGUF
NAME_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}
_BLOCK = re.compile(r"\.(\d+)\.")
# El tipo de archivo (general.file_type) que declara cada formato (enum LlamaFileType de llama.cpp)
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "BF16": 32}
SKIPPED_KEYS = ("GGUF.", "general.architecture", "general.file_type", "general.name")


def gguf_name(hf_name: str) -> str:
    """El nombre GGUF de un tensor de Hugging Face (``KeyError`` si no es de un modelo llama)."""
    match = _BLOCK.search(hf_name)
    pattern = _BLOCK.sub(".{i}.", hf_name, count=1) if match else hf_name
    return NAME_MAP[pattern].format(i=match.group(1) if match else "")


def permute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Filas de q o k de «mitades» (Hugging Face) a «pares» (llama.cpp), cabeza a cabeza.

    Cada cabeza tiene ``2 · m`` filas: Hugging Face pone primero las ``m`` que rotan como parte real y después
    las ``m`` imaginarias; llama.cpp las quiere alternadas (real, imaginaria, real...).
    """
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def unpermute_qk(weight: np.ndarray, n_head: int) -> np.ndarray:
    """La inversa de ``permute_qk``: de «pares» (llama.cpp) a «mitades» (Hugging Face)."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def gguf_tensors(state_dict: dict, n_head: int, n_head_kv: int, permute=permute_qk) -> dict[str, np.ndarray]:
    """{nombre GGUF: matriz float32} de un ``state_dict`` de Hugging Face (llama), q y k permutadas."""
    tensors = {}
    for name, tensor in state_dict.items():
        if name == "lm_head.weight" and "model.embed_tokens.weight" in state_dict:
            continue  # pesos atados: la salida usa token_embd
        array = tensor.detach().float().cpu().numpy()
        if name.endswith("q_proj.weight"):
            array = permute(array, n_head)
        elif name.endswith("k_proj.weight"):
            array = permute(array, n_head_kv)
        tensors[gguf_name(name)] = array
    return tensors


def tensor_type(name: str, array: np.ndarray, qtype: str, base_types: dict | None = None) -> str:
    """El tipo de un tensor: F32 si es un vector (normas); si no, el del base o el pedido."""
    if array.ndim == 1:
        return "F32"
    if base_types and qtype == base_types.get("__file__"):
        return base_types.get(name, qtype)  # el formato del base: los mismos tipos, tensor a tensor
    return qtype


def encode(array: np.ndarray, qtype: str) -> np.ndarray:
    """La matriz codificada en ``qtype`` (F32, F16 o un tipo cuantizado de ``gguf.quants``)."""
    from gguf import GGMLQuantizationType, quants

    if qtype == "F32":
        return array.astype(np.float32)
    if qtype == "F16":
        return array.astype(np.float16)
    return quants.quantize(array.astype(np.float32), GGMLQuantizationType[qtype])


def roundtrip(array: np.ndarray, qtype: str) -> np.ndarray:
    """Cuantiza y descuantiza: lo que queda de ``array`` guardada en ``qtype``."""
    from gguf import GGMLQuantizationType, quants

    if qtype in ("F32", "F16"):
        return encode(array, qtype).astype(np.float32)
    return quants.dequantize(encode(array, qtype), GGMLQuantizationType[qtype]).reshape(array.shape)


def base_metadata(base_gguf: Path) -> tuple[list, dict]:
    """([(clave, valor, tipo, subtipo)], {tensor: tipo}) del GGUF base (el tipo del archivo en ``__file__``)."""
    from gguf import GGUFReader, GGUFValueType, LlamaFileType

    reader = GGUFReader(base_gguf)
    fields = []
    for key, field in reader.fields.items():
        if key.startswith(SKIPPED_KEYS):
            continue
        sub = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
        fields.append((key, field.contents(), field.types[0], sub))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    file_type = int(reader.fields["general.file_type"].contents())
    types["__file__"] = LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    return fields, types


def write_gguf(tensors: dict[str, np.ndarray], base_gguf: Path, path: Path, qtype: str, name: str) -> Path:
    """Escribe ``tensors`` en ``path`` (tipo ``qtype``) con los metadatos del GGUF base."""
    from gguf import GGMLQuantizationType, GGUFWriter

    fields, base_types = base_metadata(base_gguf)
    writer = GGUFWriter(path, arch="llama")
    for key, value, vtype, sub in fields:
        writer.add_key_value(key, value, vtype, sub_type=sub)
    writer.add_name(name)
    writer.add_file_type(FILE_TYPES[qtype])
    for tensor_name, array in tensors.items():
        kind = tensor_type(tensor_name, array, qtype, base_types)
        data = encode(array, kind)
        raw = None if kind in ("F32", "F16") else GGMLQuantizationType[kind]
        writer.add_tensor(tensor_name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def export_model(model, base_gguf: Path, path: Path, qtype: str = "F16", permute=permute_qk) -> Path:
    """Un modelo de transformers (llama, ya fusionado) → archivo GGUF en ``qtype``."""
    config = model.config
    tensors = gguf_tensors(model.state_dict(), config.num_attention_heads, config.num_key_value_heads, permute)
    return write_gguf(tensors, base_gguf, Path(path), qtype, name=f"{Path(path).stem}")


def lora_adapter_gguf(peft_model, base_gguf: Path, path: Path) -> Path:
    """El adaptador LoRA de ``peft_model`` como GGUF de adaptador de llama.cpp (sin fusionar).

    Para cada capa: ``lora_a`` = A (r × entradas) y ``lora_b`` = B (salidas × r), en F32. En q y k, B lleva
    la misma permutación de filas que el peso (ΔW = B·A: permutar las filas de ΔW es permutar las de B).
    La escala α/r la aplica llama.cpp con ``adapter.lora.alpha``.
    """
    from gguf import GGUFWriter

    config = peft_model.peft_config[peft_model.active_adapter]
    base_config = peft_model.get_base_model().config
    heads = {"q_proj": base_config.num_attention_heads, "k_proj": base_config.num_key_value_heads}
    writer = GGUFWriter(path, arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config.lora_alpha))
    for key, tensor in peft_model.state_dict().items():
        if ".lora_A." not in key:
            continue
        stem = key.removeprefix("base_model.model.").split(".lora_A.")[0]
        a = tensor.detach().float().cpu().numpy()
        b = peft_model.state_dict()[key.replace(".lora_A.", ".lora_B.")].detach().float().cpu().numpy()
        module = stem.rsplit(".", 1)[-1]
        if module in heads:
            b = permute_qk(b, heads[module])
        name = gguf_name(f"{stem}.weight").removesuffix(".weight")
        writer.add_tensor(f"{name}.weight.lora_a", a)
        writer.add_tensor(f"{name}.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def delta_survival(delta: np.ndarray, weight: np.ndarray, qtype: str) -> float:
    """Error relativo de ΔW tras guardar W + ΔW en ``qtype``: ‖Q(W+ΔW) − Q(W) − ΔW‖ / ‖ΔW‖.

    0 = ΔW llega entero; 1 o más = lo que llega de ΔW es del tamaño del ruido de cuantizar (se pierde).
    """
    kept = roundtrip(weight + delta, qtype) - roundtrip(weight, qtype)
    return float(np.linalg.norm(kept - delta) / np.linalg.norm(delta))
