"""La validación de GGUF entregados: un archivo pequeño de referencia y, contra él, cada forma de hacer trampa."""

import struct

import numpy as np
import pytest

from helpers.checks import gguf_files
from helpers.checks.safe_files import Refused

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def _write(path, *, extra=None, template=TEMPLATE, shapes=None, types=None, skip=()):
    from gguf import GGMLQuantizationType, GGUFWriter, quants

    writer = GGUFWriter(path, arch="llama")
    writer.add_uint32("llama.block_count", 1)
    if "tokenizer.chat_template" not in skip:
        writer.add_chat_template(template)
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    shapes = {"token_embd.weight": (4, 64), "blk.0.attn_norm.weight": (64,), **(shapes or {})}
    types = {"token_embd.weight": "F16", **(types or {})}
    for name, shape in shapes.items():
        array = np.ones(shape, dtype=np.float32)
        kind = types.get(name, "F32")
        if kind == "F16":
            writer.add_tensor(name, array.astype(np.float16))
        elif kind == "F32":
            writer.add_tensor(name, array)
        else:
            writer.add_tensor(name, quants.quantize(array, GGMLQuantizationType[kind]),
                              raw_dtype=GGMLQuantizationType[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def reference(tmp_path, monkeypatch):
    path = _write(tmp_path / "referencia.gguf")
    monkeypatch.setattr(gguf_files, "reference", lambda: gguf_files._reference(str(path)))
    return path


def test_a_file_like_the_reference_passes_in_any_allowed_type(reference, tmp_path):
    assert gguf_files.validate_model(reference)["token_embd.weight"] == "F16"
    for kind in ("Q8_0", "Q4_1", "F32"):
        path = _write(tmp_path / f"{kind}.gguf", types={"token_embd.weight": kind})
        assert gguf_files.validate_model(path)["token_embd.weight"] == kind
    named = tmp_path / "nombre.gguf"
    _write(named, extra={"general.name": "mi modelo"})
    gguf_files.validate_model(named)


@pytest.mark.parametrize(("change", "reason"), [
    ({"extra": {"general.url": "https://ejemplo"}}, "lista blanca"),
    ({"template": "{{ cycler.__init__.__globals__ }}"}, "tokenizer.chat_template no es la del modelo base"),
    ({"skip": ("tokenizer.chat_template",)}, "faltan claves"),
    ({"shapes": {"token_embd.weight": (4, 32)}}, "forma"),
    ({"shapes": {"output.weight": (4, 64)}}, "no son los del modelo base"),
    ({"types": {"blk.0.attn_norm.weight": "F16"}}, "se admite F32"),
])
def test_a_changed_file_is_refused_before_anything_loads_it(reference, tmp_path, change, reason):
    with pytest.raises(Refused) as refused:
        gguf_files.validate_model(_write(tmp_path / "cambiado.gguf", **change))
    assert reason in str(refused.value), refused.value


@pytest.mark.parametrize(("code", "reason"), [(12, "se admite"), (999, "tipo desconocido")])
def test_a_tensor_type_written_by_hand_is_refused(reference, tmp_path, code, reason):
    path = _retyped(_write(tmp_path / "cambiado.gguf"), "token_embd.weight", code)  # 12 = Q4_K, bloques de 256
    with pytest.raises(Refused, match=reason):
        gguf_files.validate_model(path)


def _retyped(path, name, code):
    data = bytearray(path.read_bytes())
    at = data.index(name.encode()) + len(name) + 4 + 8 * 2  # nombre, n_dims, dos dimensiones
    data[at:at + 4] = struct.pack("<I", code)
    path.write_bytes(bytes(data))
    return path


def test_bad_magic_version_truncation_and_overlaps_are_refused(reference, tmp_path):
    data = reference.read_bytes()
    cases = {
        "no empieza por": b"GGUX" + data[4:],
        "versión": data[:4] + struct.pack("<I", 2) + data[8:],
        "se sale del archivo": data[:-64],
        "tensores": data[:8] + struct.pack("<Q", 10**6) + data[16:],
        "claves": data[:16] + struct.pack("<Q", 10**6) + data[24:],
    }
    for reason, content in cases.items():
        path = tmp_path / "mal.gguf"
        path.write_bytes(content)
        with pytest.raises(Refused) as refused:
            gguf_files.validate_model(path)
        assert reason in str(refused.value), (reason, refused.value)
    overlapped = bytearray(data)
    name = b"blk.0.attn_norm.weight"
    at = data.index(name) + len(name) + 4 + 8 + 4  # nombre, n_dims, una dimensión, tipo
    overlapped[at:at + 8] = struct.pack("<Q", 0)  # su desplazamiento, encima del primer tensor
    path = tmp_path / "solapado.gguf"
    path.write_bytes(bytes(overlapped))
    with pytest.raises(Refused, match="solapan"):
        gguf_files.validate_model(path)


def test_links_and_huge_strings_are_refused(reference, tmp_path):
    link = tmp_path / "enlace.gguf"
    link.symlink_to(reference)
    with pytest.raises(Refused):
        gguf_files.validate_model(link)
    data = reference.read_bytes()
    key = b"llama.block_count"
    at = data.index(key) - 8  # la longitud de la primera clave
    path = tmp_path / "largo.gguf"
    path.write_bytes(data[:at] + struct.pack("<Q", 1 << 40) + data[at + 8:])
    with pytest.raises(Refused, match="texto"):
        gguf_files.validate_model(path)


def test_the_course_base_gguf_is_its_own_reference():
    from helpers.model import bundled_gguf

    assert gguf_files.matrix_format(gguf_files.validate_model(bundled_gguf())) == "Q4_1"
