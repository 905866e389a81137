"""Lista blanca de lo entregado: configuraciones y pesos se validan como datos ANTES de dárselos a PEFT.

Lo que escribe una entrega no es de fiar. Antes de construir nada con ello:

- **Configuraciones de LoRA** (``adapter_config.json``, el ``to_dict()`` de una ``LoraConfig``): solo
  estos campos, con rangos sensatos: ``r``, ``lora_alpha``, ``lora_dropout``, ``bias``, ``task_type``,
  ``use_rslora``, ``init_lora_weights`` (valores que PEFT conoce), ``target_modules`` (``"all-linear"`` o
  una lista de nombres de capas, nunca una expresión regular) y ``layers_to_transform`` (capas que
  existen). ``base_model_name_or_path``, ``revision``, ``peft_version`` e ``inference_mode`` solo se
  comprueban de tipo. Cualquier otro campo de ``LoraConfig`` debe faltar o valer lo que vale por defecto
  (así ``megatron_core`` no puede nombrar un módulo, ni hay ``auto_mapping``, ``modules_to_save``,
  patrones de rango, DoRA...); un campo que ``LoraConfig`` no tiene se rechaza.
- **Pesos** (``*.safetensors``): la cabecera se lee a mano (8 bytes de longitud y un JSON, con tope),
  antes de reservar memoria: claves que el modelo del curso tiene (o las de LoRA de esa configuración),
  formas exactas con las dimensiones de la arquitectura, tipos de coma flotante, datos dentro del archivo.
- **Carpetas guardadas** (``save_pretrained``): lo anterior para cada archivo, ``config.json`` igual al del
  modelo base (salvo ``dtype`` y versión), ningún ``auto_map``, y ningún pickle que un cargador pudiera
  elegir por falta de safetensors.

Lo que no pasa lanza ``Refused`` con el motivo en español. La arquitectura sale del modelo base del curso
(su ``config.json`` de la caché, construido en el dispositivo «meta»: sin pesos).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .safe_files import Refused, open_regular

MAX_RANK = 512  # el rango de la comprobación llega a 256; PEFT guarda OLoRA/PiSSA convertidos con 2·r
MAX_ALPHA = 1e6
MAX_TARGETS = 64
MAX_NAME = 64
MAX_HEADER_BYTES = 16 << 20  # una cabecera de safetensors del modelo del curso ocupa unos 30 KB
MAX_JSON_BYTES = 32 << 20
MAX_TENSOR_FILE = 2 << 30
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ALL_LINEAR = "all-linear"
INIT_VALUES = (True, False, "gaussian", "olora", "pissa", "orthogonal")
PISSA_NITER = re.compile(r"pissa_niter_[1-9][0-9]?")
BIAS_VALUES = ("none", "all", "lora_only")
CHECKED = ("r", "lora_alpha", "lora_dropout", "bias", "task_type", "use_rslora", "init_lora_weights",
           "target_modules", "layers_to_transform")
METADATA = ("base_model_name_or_path", "revision", "peft_version")  # solo textos; no se usan
MODEL_CONFIG_FREE = ("dtype", "torch_dtype", "transformers_version", "_name_or_path", "use_cache")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse(condition, message: str) -> None:
    if not condition:
        raise Refused(message)


# --- la arquitectura del modelo del curso -----------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    params: dict  # nombre del parámetro -> forma (los de ``named_parameters``, sin atados)
    linear: dict  # ruta de cada capa lineal adaptable (sin la cabeza de salida) -> (salida, entrada)
    layer_of: dict  # ruta de una capa lineal -> número de bloque
    layers: int
    config: dict  # config.json del modelo base (``to_diff_dict``)

    @property
    def names(self) -> frozenset:
        """Los nombres cortos de capas lineales: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj."""
        return frozenset(path.rsplit(".", 1)[-1] for path in self.linear)


@functools.cache
def architecture() -> Architecture:
    """La arquitectura del modelo base del curso, sin pesos (dispositivo «meta»)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..model import base_model_path

    config = AutoConfig.from_pretrained(base_model_path())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    output = model.get_output_embeddings()
    linear = {name: (m.out_features, m.in_features) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and m is not output}
    layer_of = {name: int(match[1]) for name in linear if (match := re.search(r"\.layers\.(\d+)\.", name))}
    return Architecture(params={n: tuple(p.shape) for n, p in model.named_parameters()}, linear=linear,
                        layer_of=layer_of, layers=int(config.num_hidden_layers), config=config.to_diff_dict())


# --- configuraciones de LoRA ------------------------------------------------------------------------------

@functools.cache
def _defaults() -> dict:
    """Cada campo de ``LoraConfig`` con su valor por defecto, como JSON (listas, textos, dicts)."""
    import dataclasses

    from peft import LoraConfig


    default = LoraConfig()
    return {f.name: json.loads(json.dumps(plain(_asdict(getattr(default, f.name)))))
            for f in dataclasses.fields(LoraConfig)}


def plain(value):
    """Conjuntos y enumeraciones de una configuración, como listas y textos."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return value.value
    return value


def _asdict(value):
    import dataclasses

    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value) -> str:
    if isinstance(value, str):  # una clave de pesos, sin el prefijo que PEFT añade a todas
        value = value.removeprefix("base_model.model.")
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def lora_config(data, *, strict: bool = True) -> dict:
    """Los argumentos de ``LoraConfig`` de ``data`` (un dict ya leído del JSON), validados; si no, ``Refused``.

    ``strict`` (al cargar un adaptador en un modelo): ``target_modules`` es ``"all-linear"`` o una lista
    de capas lineales de la arquitectura del curso, y no puede faltar. Sin ``strict`` (una ``LoraConfig``
    suelta, que solo se inspecciona): vale cualquier nombre simple (la comprobación dirá que no existe) o
    ninguno, pero tampoco una expresión regular.
    """
    refuse(isinstance(data, dict), "la configuración no es un diccionario JSON")
    defaults = _defaults()
    refuse(data.get("peft_type", "LORA") == "LORA", f"peft_type {_show(data.get('peft_type'))}: solo se admite LORA")
    unknown = sorted(str(k) for k in data if k not in defaults)
    refuse(not unknown, f"campos que LoraConfig no tiene: {', '.join(map(_show, unknown[:5]))}")
    for name, value in data.items():
        if name in (*CHECKED, *METADATA, "inference_mode", "peft_type"):
            continue
        refuse(value == defaults[name], f"el campo {name} = {_show(value)} no se admite (solo su valor por "
                                        f"defecto, {_show(defaults[name])})")
    for name in METADATA:
        value = data.get(name)
        refuse(value is None or (isinstance(value, str) and len(value) <= 500), f"{name} no es un texto corto")
    refuse(isinstance(data.get("inference_mode", False), bool), "inference_mode no es verdadero o falso")

    clean = {name: data[name] for name in CHECKED if name in data}
    r = clean.get("r", defaults["r"])
    refuse(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= MAX_RANK,
           f"r={_show(r)} fuera de lo admitido (un entero de 1 a {MAX_RANK})")
    alpha = clean.get("lora_alpha", defaults["lora_alpha"])
    refuse(_number(alpha) and abs(alpha) <= MAX_ALPHA, f"lora_alpha={_show(alpha)} no es un número razonable")
    dropout = clean.get("lora_dropout", defaults["lora_dropout"])
    refuse(_number(dropout) and 0 <= dropout <= 1, f"lora_dropout={_show(dropout)} no es una probabilidad")
    refuse(clean.get("bias", "none") in BIAS_VALUES, f"bias={_show(clean.get('bias'))} no es uno de {BIAS_VALUES}")
    refuse(clean.get("task_type") is None or (isinstance(clean["task_type"], str) and clean["task_type"] in _task_types()),
           f"task_type={_show(clean.get('task_type'))} no es una tarea de PEFT")
    refuse(isinstance(clean.get("use_rslora", False), bool), "use_rslora no es verdadero o falso")
    init = clean.get("init_lora_weights", True)
    refuse(any(init is v for v in INIT_VALUES[:2]) or (isinstance(init, str) and (
        init in INIT_VALUES[2:] or PISSA_NITER.fullmatch(init))),
        f"init_lora_weights={_show(init)} no se admite")
    clean["target_modules"] = _targets(clean.get("target_modules"), strict)
    if clean.get("layers_to_transform") is not None:
        clean["layers_to_transform"] = _layers(clean["layers_to_transform"], clean["target_modules"])
    return clean


@functools.cache
def _task_types() -> frozenset:
    from peft import TaskType

    return frozenset(t.value for t in TaskType)


def _targets(value, strict: bool):
    if value is None:
        refuse(not strict, "faltan target_modules")
        return None
    if isinstance(value, str):
        if value == ALL_LINEAR:
            return value
        refuse(not strict and PLAIN_NAME.fullmatch(value),
               f"target_modules={_show(value)}: solo se admite \"all-linear\" o una lista de nombres de capas "
               "(nunca una expresión regular)")
        return value
    refuse(isinstance(value, list) and 0 < len(value) <= MAX_TARGETS,
           f"target_modules debe ser \"all-linear\" o una lista de nombres (de 1 a {MAX_TARGETS})")
    for name in value:
        refuse(isinstance(name, str) and PLAIN_NAME.fullmatch(name),
               f"target_modules: {_show(name)} no es un nombre de capa simple (sin puntos ni expresiones regulares)")
    if strict:
        known = architecture().names
        others = sorted(set(value) - known)
        what = "no es una capa lineal" if len(others) == 1 else "no son capas lineales"
        refuse(not others, f"target_modules: {', '.join(map(_show, others[:5]))} {what} de este modelo "
                           f"({', '.join(sorted(known))})")
    return sorted(set(value))


def _layers(value, targets):
    layers = architecture().layers
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    refuse(isinstance(values, list) and 0 < len(values) <= layers, "layers_to_transform no es una lista de capas")
    for n in values:
        refuse(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < layers,
               f"layers_to_transform: {_show(n)} no es un bloque del modelo (de 0 a {layers - 1})")
    refuse(not isinstance(targets, str), "layers_to_transform no se puede usar con target_modules de texto")
    return value


def lora_shapes(clean: dict) -> dict[str, tuple[int, int]]:
    """Clave -> forma de cada matriz que ``save_pretrained`` guarda para la configuración ``clean``."""
    arch = architecture()
    targets, layers = clean["target_modules"], clean.get("layers_to_transform")
    layers = None if layers is None else {layers} if isinstance(layers, int) else set(layers)
    r, shapes = clean.get("r", 8), {}
    for path, (out, inp) in arch.linear.items():
        if targets != ALL_LINEAR and path.rsplit(".", 1)[-1] not in targets:
            continue
        if layers is not None and arch.layer_of.get(path) not in layers:
            continue
        shapes[f"base_model.model.{path}.lora_A.weight"] = (r, inp)
        shapes[f"base_model.model.{path}.lora_B.weight"] = (out, r)
    return shapes


# --- safetensors -------------------------------------------------------------------------------------------

def safetensors_header(path, *, label: str | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{clave: (tipo, forma)} de la cabecera de un safetensors, leída a mano y comprobada; si no, ``Refused``.

    Se leen solo los 8 bytes de longitud y la cabecera (con tope): tipos de coma flotante, formas de
    enteros, y los datos de cada tensor dentro del archivo, seguidos y del tamaño que dice su forma.
    """
    label = label or Path(path).name
    fd, size = open_regular(path, cap=MAX_TENSOR_FILE, label=label)
    with open(fd, "rb") as handle:
        head = handle.read(8)
        refuse(len(head) == 8, f"{label} no es un safetensors (demasiado corto)")
        length = int.from_bytes(head, "little")
        refuse(length <= MAX_HEADER_BYTES and 8 + length <= size,
               f"{label} no es un safetensors válido (cabecera de {length} bytes)")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(f"{label} no es un safetensors válido (cabecera que no es JSON)") from None
    refuse(isinstance(header, dict), f"{label} no es un safetensors válido")
    metadata = header.pop("__metadata__", {})
    refuse(isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values()),
           f"{label}: metadatos que no son texto")
    tensors, spans = {}, []
    for key, entry in header.items():
        refuse(isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"},
               f"{label}: la entrada {_show(key)} no tiene la forma de safetensors")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        refuse(dtype in FLOAT_DTYPES, f"{label}: {_show(key)} es de tipo {_show(dtype)}, no de coma flotante")
        refuse(isinstance(shape, list) and len(shape) <= 4 and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape),
            f"{label}: {_show(key)} tiene una forma no válida")
        refuse(isinstance(offsets, list) and len(offsets) == 2 and all(
            isinstance(o, int) and not isinstance(o, bool) for o in offsets),
            f"{label}: {_show(key)} tiene posiciones no válidas")
        refuse(offsets[1] - offsets[0] == math.prod(shape) * FLOAT_DTYPES[dtype],
               f"{label}: {_show(key)} no ocupa lo que dice su forma")
        tensors[key] = (dtype, tuple(shape))
        spans.append(tuple(offsets))
    position = 0
    for begin, end in sorted(spans):
        refuse(begin == position, f"{label}: datos solapados o con huecos")
        position = end
    refuse(position == size - 8 - length, f"{label}: los datos no ocupan el archivo entero")
    return tensors


def check_lora_file(path, clean: dict, *, label: str | None = None) -> None:
    """Los pesos de un adaptador: solo claves de LoRA de ``clean``, cada una con su forma exacta."""
    label = label or Path(path).name
    tensors, expected = safetensors_header(path, label=label), lora_shapes(clean)
    refuse(tensors, f"{label} no tiene pesos")
    for key, (_, shape) in tensors.items():
        refuse(key in expected, f"{label}: {_show(key)} no es una matriz LoRA de esta configuración")
        refuse(shape == expected[key], f"{label}: {_show(key)} tiene forma {shape}, se espera {expected[key]} "
                                       f"(r={clean.get('r', 8)})")


def check_base_file(path, *, label: str | None = None) -> dict:
    """Pesos del modelo base (cambiados o guardados): claves del modelo del curso con su forma exacta."""
    label = label or Path(path).name
    tensors, params = safetensors_header(path, label=label), dict(architecture().params)
    if architecture().config.get("tie_word_embeddings", True):
        params.setdefault("lm_head.weight", params.get("model.embed_tokens.weight"))
    for key, (_, shape) in tensors.items():
        refuse(key in params, f"{label}: {_show(key)} no es un peso del modelo base del curso")
        refuse(shape == params[key], f"{label}: {_show(key)} tiene forma {shape}, se espera {params[key]}")
    return tensors


# --- JSON y carpetas guardadas ------------------------------------------------------------------------------

def read_json(path, *, cap: int = MAX_JSON_BYTES, label: str | None = None):
    """Un JSON de un archivo normal de hasta ``cap`` bytes; si no, ``Refused``."""
    from .safe_files import read_regular

    label = label or Path(path).name
    data = read_regular(path, cap=cap, label=label)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(f"{label} no es un JSON válido") from None


def check_adapter_folder(folder: Path, *, label: str) -> dict:
    """Una carpeta de adaptador (``adapter_config.json`` + ``adapter_model.safetensors``): su config limpia.

    Sus archivos (las subcarpetas son otros adaptadores) deben tener nombres de la lista blanca: así PEFT no
    encuentra un ``adapter_model.bin`` que elegir.
    """
    _only_known_files([p for p in folder.iterdir() if not p.is_dir() or p.is_symlink()], label)
    try:
        clean = lora_config(read_json(folder / "adapter_config.json", label=f"{label}/adapter_config.json"))
    except Refused as refused:
        raise Refused(f"{label}/adapter_config.json: {refused}") from None
    weights = folder / "adapter_model.safetensors"
    refuse(weights.is_file(), f"{label}: falta adapter_model.safetensors")
    check_lora_file(weights, clean, label=f"{label}/adapter_model.safetensors")
    return clean


def check_model_config(data, *, label: str) -> None:
    """``config.json`` de un modelo guardado: el del modelo base del curso (salvo dtype y versión)."""
    refuse(isinstance(data, dict), f"{label} no es un diccionario JSON")
    base = architecture().config
    for key in sorted(set(data) | set(base)):
        if key in MODEL_CONFIG_FREE:
            continue
        refuse(data.get(key) == base.get(key), f"{label}: {key} = {_show(data.get(key))} no es el del modelo base "
                                               f"del curso ({_show(base.get(key))})")
    refuse(data.get("dtype", "float32") in ("float32", "float16", "bfloat16"), f"{label}: dtype no admitido")


def check_folder(folder: Path, *, label: str = "la carpeta entregada") -> None:
    """Una carpeta guardada con ``save_pretrained`` (modelo o adaptador, con su tokenizador), validada entera.

    La lista blanca es la única puerta: cada archivo tiene un nombre de ``FOLDER_FILES`` (o de fragmento,
    ``model-00001-of-00002.safetensors``), los JSON se comprueban campo a campo, todo safetensors por su
    cabecera, y el índice de fragmentos solo nombra fragmentos de la carpeta ya comprobados. Ningún
    ``from_pretrained`` encuentra otro archivo que abrir: ni pickle, ni ``.dat``, ni GGUF, ni rutas.
    """
    entries = sorted(folder.iterdir())
    refuse(not [p for p in entries if not p.is_file() or p.is_symlink()],
           f"{label} contiene algo que no es un archivo normal")
    _only_known_files(entries, label)
    names = {p.name for p in entries}
    for path in entries:
        if path.suffix == ".json":
            data = read_json(path, label=f"{label}/{path.name}")
            refuse(not (isinstance(data, dict) and "auto_map" in data),
                   f"{label}/{path.name} pide código propio (auto_map): no se admite")
        elif path.suffix in (".jinja", ".md"):
            read_text(path, label=f"{label}/{path.name}")
    refuse(not {"adapter_config.json", "config.json"} <= names,
           f"{label} tiene modelo y adaptador a la vez (config.json y adapter_config.json): guarda cada uno en su "
           "carpeta")
    refuse("config.json" in names or "adapter_config.json" in names or not names & WEIGHT_FILES,
           f"{label} tiene pesos sin config.json ni adapter_config.json")
    if "adapter_config.json" in names:
        check_adapter_folder(folder, label=label)
    if "config.json" in names:
        check_model_config(read_json(folder / "config.json"), label=f"{label}/config.json")
    if "tokenizer_config.json" in names:
        check_tokenizer_config(read_json(folder / "tokenizer_config.json"), label=f"{label}/tokenizer_config.json")
    if "generation_config.json" in names:
        check_generation_config(read_json(folder / "generation_config.json", cap=MAX_SMALL_JSON),
                                label=f"{label}/generation_config.json")
    headers = {path.name: check_base_file(path, label=f"{label}/{path.name}") for path in entries
               if path.suffix == ".safetensors" and path.name != "adapter_model.safetensors"}
    if INDEX in names:
        check_index(read_json(folder / INDEX, label=f"{label}/{INDEX}"), headers, label=f"{label}/{INDEX}")


# Lo que un ``save_pretrained`` honrado deja (modelo, adaptador de PEFT, tokenizador): nada más se admite.
MODEL_FILES = frozenset({"config.json", "generation_config.json", "model.safetensors"})
ADAPTER_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors", "README.md"})
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "added_tokens.json", "chat_template.jinja", "chat_template.json"})
INDEX = "model.safetensors.index.json"
FOLDER_FILES = MODEL_FILES | ADAPTER_FILES | TOKENIZER_FILES | {INDEX}
WEIGHT_FILES = frozenset({"model.safetensors", "adapter_model.safetensors"})
SHARD = re.compile(r"model-[0-9]{5}-of-[0-9]{5}\.safetensors")
MAX_SMALL_JSON = 64 << 10
MAX_TEXT_BYTES = 1 << 20
# un campo que nombra un archivo, una carpeta, una clase o un repositorio: un cargador lo seguiría
STEERING = re.compile(r"(file|path|dir|url|repo|revision|cache|class|map|custom|model|trust|remote)", re.IGNORECASE)
TOKENIZER_FREE = ("tokenizer_class",)  # se compara con el del modelo base


def _only_known_files(entries: list[Path], label: str) -> None:
    for path in entries:
        refuse(path.name in FOLDER_FILES or SHARD.fullmatch(path.name),
               f"{label}/{_show(path.name)[1:-1]} no es un archivo que la corrección admita en una carpeta guardada "
               f"(solo los de save_pretrained en safetensors: {', '.join(sorted(MODEL_FILES | ADAPTER_FILES))}, "
               "el tokenizador y los fragmentos con su índice)")


def read_text(path, *, label: str) -> str:
    """Un texto UTF-8 corto de un archivo normal (la plantilla de chat, el README de PEFT)."""
    from .safe_files import read_regular

    try:
        return read_regular(path, cap=MAX_TEXT_BYTES, label=label).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"{label} no es un texto UTF-8") from None


@functools.cache
def _base_json(name: str) -> dict:
    from ..model import base_model_path

    return json.loads((Path(base_model_path()) / name).read_text(encoding="utf-8"))


def check_tokenizer_config(data, *, label: str) -> None:
    """``tokenizer_config.json``: la clase del tokenizador del curso y ningún campo que nombre un archivo o código."""
    refuse(isinstance(data, dict), f"{label} no es un diccionario JSON")
    base_class = _base_json("tokenizer_config.json").get("tokenizer_class")
    refuse(data.get("tokenizer_class", base_class) == base_class,
           f"{label}: tokenizer_class = {_show(data.get('tokenizer_class'))} no es la del curso ({_show(base_class)})")
    steering = sorted(str(k) for k in data if STEERING.search(str(k)) and k not in TOKENIZER_FREE
                      and k not in _base_json("tokenizer_config.json"))
    refuse(not steering, f"{label}: el campo {_show(steering[0]) if steering else ''} nombra archivos, clases o "
                         "código: no se admite")


def check_generation_config(data, *, label: str) -> None:
    """``generation_config.json``: solo números, textos y listas de ellos, sin campos que nombren nada."""
    refuse(isinstance(data, dict), f"{label} no es un diccionario JSON")
    for key, value in data.items():
        scalar = (type(None), bool, int, float, str)
        refuse(isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value)),
               f"{label}: {_show(key)} no es un número, un texto o una lista de ellos")
        refuse(not STEERING.search(str(key)) or key in _base_json("generation_config.json"),
               f"{label}: el campo {_show(key)} nombra archivos, clases o código: no se admite")


def check_index(data, headers: dict, *, label: str) -> None:
    """El índice de fragmentos: cada peso, en un fragmento de la carpeta (nombre simple, ya comprobado) que lo tiene."""
    refuse(isinstance(data, dict) and set(data) <= {"metadata", "weight_map"}
           and isinstance(data.get("weight_map"), dict) and isinstance(data.get("metadata", {}), dict),
           f"{label} no tiene la forma de un índice (metadata, weight_map)")
    for key, shard in data["weight_map"].items():
        refuse(isinstance(shard, str) and "/" not in shard and "\\" not in shard and shard not in ("", ".", ".."),
               f"{label}: {_show(shard)} no es un nombre simple de archivo de la carpeta")
        refuse(shard.endswith(".safetensors") and (SHARD.fullmatch(shard) or shard == "model.safetensors"),
               f"{label}: {_show(shard)} no es un fragmento en safetensors (model-00001-of-00002.safetensors)")
        refuse(shard in headers, f"{label}: {_show(shard)} no está en la carpeta")
        refuse(key in headers[shard], f"{label}: {_show(key)} no está en {_show(shard)}")
