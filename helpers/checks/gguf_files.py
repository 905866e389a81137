"""Archivos GGUF entregados: se validan como datos, byte a byte, antes de que nada los cargue.

Un GGUF lleva metadatos que el programa que lo carga **sigue o ejecuta**: la plantilla de chat es código Jinja,
el tokenizador decide qué texto ve el modelo, y los tamaños y desplazamientos dicen dónde leer memoria. Por eso
quien corrige lee la cabecera con su propio lector (sin ``gguf`` ni llama.cpp), con topes, y exige:

- la firma ``GGUF`` y la versión 3; como mucho ``MAX_TENSORS`` tensores y ``MAX_KEYS`` claves;
- **solo claves de la lista blanca** (las del GGUF base del curso, más ``general.name``); cada una con el mismo
  tipo que en el base y, salvo el nombre y el tipo de archivo, **el mismo valor** (tokenizador, plantilla de
  chat, tokens especiales, arquitectura): nada que el entorno de ejecución pueda seguir u ejecutar distinto;
- textos y listas dentro de sus topes;
- exactamente los tensores del modelo base, con sus formas, en tipos permitidos (F32 los vectores);
- cada tensor alineado, dentro del archivo, del tamaño que dicen su tipo y su forma, y sin solaparse.

``GGUFFile`` es el formato de entrega (``helpers.checks.handover``) de un archivo GGUF.
"""

from __future__ import annotations

import functools
import itertools
import shutil
import struct
from pathlib import Path

from .handover import Format
from .safe_files import Refused, open_regular

MAGIC = b"GGUF"
VERSION = 3
MAX_FILE_BYTES = 1 << 30  # el modelo del curso en F32 pesa ~540 MB
MAX_HEADER_BYTES = 16 << 20  # claves y lista de tensores (el tokenizador ocupa ~1,6 MB)
MAX_TENSORS = 1024
MAX_KEYS = 64
MAX_STRING_BYTES = 1 << 20
MAX_ARRAY_ITEMS = 1 << 17
MAX_DIMS = 4
ALIGNMENT = 32  # general.alignment no está en la lista blanca: siempre el valor por defecto
FREE_KEYS = ("general.name", "general.file_type")  # pueden cambiar; del resto, el valor del base
MATRIX_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")
# tipos de valor GGUF: código → formato de struct (8 texto, 9 lista)
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


def _refuse(condition, message: str) -> None:
    if not condition:
        raise Refused(message)


class _Cursor:
    """Lee valores de la cabecera sin pasarse nunca del final de lo leído."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        _refuse(0 <= n and self.at + n <= len(self.data), "la cabecera del GGUF se corta o es demasiado grande")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        _refuse(n <= MAX_STRING_BYTES, f"un texto de la cabecera mide {n} bytes (máximo {MAX_STRING_BYTES})")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("un texto de la cabecera no es UTF-8") from None

    def value(self, kind: int, depth: int = 0):
        if kind in SCALARS:
            return self.unpack(SCALARS[kind])
        if kind == STRING:
            return self.string()
        _refuse(kind == ARRAY and depth == 0, f"tipo de valor desconocido ({kind})")
        item, n = self.unpack("<I"), self.unpack("<Q")
        _refuse(n <= MAX_ARRAY_ITEMS, f"una lista de la cabecera tiene {n} elementos (máximo {MAX_ARRAY_ITEMS})")
        return (item, [self.value(item, depth + 1) for _ in range(n)])


def read_header(path) -> tuple[dict, dict, int]:
    """({clave: (tipo, valor)}, {tensor: (forma, tipo, desplazamiento)}, inicio de los datos, tamaño) de un GGUF."""
    from gguf import GGMLQuantizationType

    fd, size = open_regular(path, cap=MAX_FILE_BYTES, label="el archivo GGUF")
    with open(fd, "rb") as handle:
        cursor = _Cursor(handle.read(MAX_HEADER_BYTES))
    _refuse(cursor.take(4) == MAGIC, "no es un archivo GGUF (no empieza por «GGUF»)")
    version = cursor.unpack("<I")
    _refuse(version == VERSION, f"versión de GGUF {version}; se espera la {VERSION}")
    n_tensors, n_keys = cursor.unpack("<Q"), cursor.unpack("<Q")
    _refuse(n_tensors <= MAX_TENSORS, f"dice tener {n_tensors} tensores (máximo {MAX_TENSORS})")
    _refuse(n_keys <= MAX_KEYS, f"dice tener {n_keys} claves de metadatos (máximo {MAX_KEYS})")
    keys = {}
    for _ in range(n_keys):
        key = cursor.string()
        _refuse(key not in keys, f"la clave {key[:60]!r} está repetida")
        kind = cursor.unpack("<I")
        keys[key] = (kind, cursor.value(kind))
    tensors = {}
    for _ in range(n_tensors):
        name = cursor.string()
        _refuse(name not in tensors, f"el tensor {name[:60]!r} está repetido")
        n_dims = cursor.unpack("<I")
        _refuse(1 <= n_dims <= MAX_DIMS, f"el tensor {name[:60]!r} tiene {n_dims} dimensiones")
        shape = tuple(cursor.unpack("<Q") for _ in range(n_dims))
        code = cursor.unpack("<I")
        try:
            kind = GGMLQuantizationType(code).name
        except ValueError:
            raise Refused(f"el tensor {name[:60]!r} tiene un tipo desconocido ({code})") from None
        tensors[name] = (shape, kind, cursor.unpack("<Q"))
    start = -(-cursor.at // ALIGNMENT) * ALIGNMENT
    return keys, tensors, start, size


def tensor_bytes(shape: tuple, kind: str) -> int:
    """Bytes que ocupa un tensor de forma ``shape`` (la GGUF: la primera dimensión es la contigua) en ``kind``."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    _refuse(shape[0] % block == 0, f"una fila de {shape[0]} no cabe en bloques de {block} ({kind})")
    count = 1
    for n in shape:
        count *= n
    return count // block * block_bytes


@functools.cache
def _reference(path: str) -> tuple[dict, dict]:
    keys, tensors, _, _ = read_header(path)
    return keys, {name: shape for name, (shape, _, _) in tensors.items()}


def reference():
    """(claves, {tensor: forma}) del GGUF base del curso: la lista blanca."""
    from ..model import bundled_gguf

    return _reference(str(bundled_gguf()))


def validate_model(path) -> dict[str, str]:
    """Valida un GGUF de modelo entregado frente al base del curso; {tensor: tipo} si pasa, ``Refused`` si no."""
    allowed_keys, shapes = reference()
    keys, tensors, start, size = read_header(path)
    unknown = sorted(set(keys) - set(allowed_keys) - set(FREE_KEYS))
    _refuse(not unknown, f"claves de metadatos fuera de la lista blanca: {', '.join(k[:60] for k in unknown[:5])}")
    missing = sorted(set(allowed_keys) - set(keys) - set(FREE_KEYS))
    _refuse(not missing, f"faltan claves del modelo base: {', '.join(missing[:5])}")
    for key, (kind, value) in keys.items():
        if key == "general.name":
            _refuse(kind == STRING, "general.name debe ser un texto")
        elif key == "general.file_type":
            _refuse(kind in (4, 5), "general.file_type debe ser un entero")
        else:
            _refuse(allowed_keys[key] == (kind, value), f"la clave {key} no es la del modelo base del curso "
                                                        "(tokenizador, plantilla y arquitectura no se cambian)")
    _refuse(set(tensors) == set(shapes), "los tensores no son los del modelo base "
                                         f"({len(tensors)} en el archivo, {len(shapes)} en el base)")
    spans = []
    for name, (shape, kind, offset) in tensors.items():
        _refuse(shape == shapes[name], f"el tensor {name} tiene forma {list(shape)}; se espera {list(shapes[name])}")
        allowed = ("F32",) if len(shape) == 1 else MATRIX_TYPES
        _refuse(kind in allowed, f"el tensor {name} está en {kind}; se admite {', '.join(allowed)}")
        _refuse(offset % ALIGNMENT == 0, f"el tensor {name} no está alineado a {ALIGNMENT} bytes")
        n = tensor_bytes(shape, kind)
        _refuse(start + offset + n <= size, f"el tensor {name} se sale del archivo")
        spans.append((offset, offset + n, name))
    spans.sort()
    for (_, end, name), (begin, _, other) in itertools.pairwise(spans):
        _refuse(end <= begin, f"los tensores {name} y {other} se solapan")
    return {name: kind for name, (_, kind, _) in tensors.items()}


def matrix_format(types: dict[str, str]) -> str:
    """El formato de un modelo GGUF: el tipo de la mayoría de sus matrices (las de los bloques)."""
    kinds = [kind for name, kind in types.items() if name.startswith("blk.") and not name.endswith("norm.weight")]
    return max(set(kinds), key=kinds.count)


class GGUFFile(Format):
    """Un archivo GGUF de modelo (una ruta): viaja el archivo; se valida con ``validate_model`` antes de usarlo."""

    name = "gguf"
    FILE = "modelo.gguf"

    def dump(self, value, folder):
        source = Path(value)
        if not source.is_file() or source.is_symlink():
            raise TypeError(f"{source.name!r} no es un archivo")
        shutil.copyfile(source, folder / self.FILE)

    def validate(self, folder):
        validate_model(folder / self.FILE)

    def load(self, folder):
        self.validate(folder)
        return folder / self.FILE
