"""Las comprobaciones del cuaderno lora_deploy: aprueban el GGUF bien exportado y explican cada error.

Los archivos equivocados se hacen editando una copia del GGUF bueno en su sitio (``GGUFReader(..., "r+")``):
q sin permutar, el ΔW quitado. Y por el camino de la corrección: ``handover.write`` + ``Exercise.judge`` con
fechas ocultas, y el juez entero (``helpers.grading.judge.judge``) con sus puntos.
"""

import shutil

import numpy as np
import pytest

from helpers.checks import deploy as checks
from helpers.checks import handover
from helpers.gguf_export import export_model, gguf_name, permute_qk, unpermute_qk
from helpers.model import bundled_gguf, fresh_base
from helpers.shipped import adapter_dir
from tests.checking import assert_fails

pytestmark = pytest.mark.slow  # exportan el modelo (260 MB en F16) y lo ejecutan en llama.cpp
SEED = 5


@pytest.fixture(scope="module")
def merged(dotted_adapter):
    """El ajuste fino del alumno (formato con puntos), fusionado: lo que despliega el cuaderno."""
    from peft import PeftModel

    return PeftModel.from_pretrained(fresh_base(), str(dotted_adapter)).merge_and_unload()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="module")
def f16(merged, folder):
    return export_model(merged, bundled_gguf(), folder / "F16.gguf", "F16")


def _edited(source, target, edit):
    """Copia de ``source`` con ``edit(nombre, datos)`` aplicado a cada tensor, en su sitio."""
    from gguf import GGUFReader

    shutil.copyfile(source, target)
    reader = GGUFReader(target, "r+")
    for tensor in reader.tensors:
        edit(tensor.name, tensor.data)
    reader.data.flush()
    return target


def test_export_gguf_refuses_a_file_that_is_not_gguf(capsys, merged, tmp_path):
    path = tmp_path / "modelo.gguf"
    path.write_bytes(b"PK\x03\x04 esto es un zip")
    assert_fails(checks.export_gguf, capsys, merged, path, says=["no pasa la validación", "no empieza por «GGUF»"])


def test_export_gguf_says_when_q_and_k_are_not_permuted(capsys, merged, f16, folder):
    config = merged.config
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}

    def undo(name, data):
        part = name.split(".")[2] if name.startswith("blk.") else ""
        if part in heads:
            data[:] = unpermute_qk(np.array(data), heads[part])  # como si se hubiera exportado sin permutar

    path = _edited(f16, folder / "sin-permutar.gguf", undo)
    text = assert_fails(checks.export_gguf, capsys, merged, path, says=["revisa la permutación de q y k"])
    assert "blk." in text and ("attn_q" in text or "attn_k" in text), text


def test_export_gguf_says_when_the_file_is_the_base_model(capsys, merged, f16, folder):
    base = fresh_base().state_dict()
    config = merged.config
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    by_gguf = {gguf_name(k): (k, w) for k, w in base.items() if w.ndim == 2 and k != "lm_head.weight"}

    def restore(name, data):
        key, weight = by_gguf.get(name, (None, None))
        if key and key.endswith(("q_proj.weight", "v_proj.weight", "k_proj.weight")):
            array = weight.numpy()
            module = key.split(".")[-2]
            data[:] = (permute_qk(array, heads[module]) if module in heads else array).astype(np.float16)

    path = _edited(f16, folder / "base.gguf", restore)
    assert_fails(checks.export_gguf, capsys, merged, path, says=["exportaste otro modelo"])


def test_export_gguf_wants_the_merged_model_and_an_unquantized_file(capsys, merged, f16, folder, dotted_adapter):
    from peft import PeftModel

    unmerged = PeftModel.from_pretrained(fresh_base(), str(dotted_adapter))
    assert_fails(checks.export_gguf, capsys, unmerged, f16, says=["todavía es un PeftModel"])
    assert_fails(checks.export_gguf, capsys, None, f16, says=["`merged` es None"])
    q8 = export_model(merged, bundled_gguf(), folder / "Q8_0.gguf", "Q8_0")
    assert_fails(checks.export_gguf, capsys, merged, q8, says=["está en Q8_0", "sin cuantizar"])


def test_export_gguf_refuses_a_shipped_fine_tune(capsys, f16):
    """Ningún archivo del curso da el punto: el ISO publicado, fusionado y exportado bien, no es el ajuste del alumno."""
    from peft import PeftModel

    shipped = PeftModel.from_pretrained(fresh_base(), str(adapter_dir("iso"))).merge_and_unload()
    path = export_model(shipped, bundled_gguf(), f16.parent / "iso-F16.gguf", "F16")
    assert_fails(checks.export_gguf, capsys, shipped, path, says=["0/8", "TU ajuste fino", "lora_finetuning"])


def test_a_gguf_of_another_model_than_merged_is_refused(capsys, merged, folder, dotted_adapter):
    """El archivo tiene que ser ``merged`` exportado: un GGUF del base con ``merged`` al lado no vale."""
    base_q8 = export_model(fresh_base(), bundled_gguf(), folder / "base-Q8_0.gguf", "Q8_0")
    assert_fails(checks.smallest_format, capsys, merged, base_q8, says=["no lleva los pesos del modelo fusionado"])


def test_smallest_format_refuses_the_format_that_loses_the_fine_tune_and_a_larger_one(capsys, merged, f16, folder):
    """Q4_1 pierde el ajuste con puntos (su rejilla es la del base: ΔW se borra) y F16 no es el menor que lo
    conserva. Que Q8_0 aprueba lo prueba el cuaderno resuelto con nbval (dos veces) y su entrega juzgada."""
    q4 = export_model(merged, bundled_gguf(), folder / "Q4_1.gguf", "Q4_1")
    assert_fails(checks.smallest_format, capsys, merged, q4, says=["Tu archivo (Q4_1)", "pierde el ajuste fino"])
    assert_fails(checks.smallest_format, capsys, merged, f16, says=["Q8_0 es más pequeño y también conserva"])


def test_the_judge_refuses_a_gguf_with_an_unknown_key_before_loading_it(tmp_path, merged, f16, folder):
    """Una clave fuera de la lista blanca (p. ej. una plantilla de chat cambiada) y el juez ni lo abre."""
    from helpers.grading.judge import judge

    data = bytearray(f16.read_bytes())
    at = data.index(b"tokenizer.chat_template")
    data[at:at + len(b"tokenizer.chat_template")] = b"tokenizer.chat_templatX"
    path = folder / "clave.gguf"
    path.write_bytes(bytes(data))
    for name, exercise in (("export_gguf", checks.export_gguf), ("smallest_format", checks.smallest_format)):
        handover.write(name, {"merged": merged, "gguf_path": path}, exercise.handover, tmp_path)
    verdicts = judge(tmp_path, "lora_deploy", SEED)
    for verdict in verdicts.values():
        assert verdict["puntos"] == 0 and "lista blanca" in verdict["rechazo"], verdict
