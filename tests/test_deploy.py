"""La exportación a GGUF (nombres, permutación de q y k, tipos) y las medidas del cuaderno de despliegue."""

import numpy as np
import pytest
import torch

from helpers import deploy, gguf_export, llama
from helpers.model import bundled_gguf, fresh_base


@pytest.fixture(scope="module")
def base():
    return fresh_base()


@pytest.fixture(scope="module")
def base_file():
    from gguf import GGUFReader

    return {t.name: t for t in GGUFReader(bundled_gguf()).tensors}


def test_names_follow_llama_cpp():
    assert gguf_export.gguf_name("model.layers.12.self_attn.k_proj.weight") == "blk.12.attn_k.weight"
    assert gguf_export.gguf_name("model.embed_tokens.weight") == "token_embd.weight"
    assert gguf_export.gguf_name("model.layers.0.post_attention_layernorm.weight") == "blk.0.ffn_norm.weight"
    with pytest.raises(KeyError):
        gguf_export.gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq")


def test_the_permutation_interleaves_the_halves_of_each_head_and_unpermute_undoes_it():
    rows = np.arange(16, dtype=np.float32)[:, None]  # 2 cabezas de 8 filas
    assert gguf_export.permute_qk(rows, 2)[:8, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    w = np.random.default_rng(0).standard_normal((576, 64)).astype(np.float32)
    assert np.array_equal(gguf_export.unpermute_qk(gguf_export.permute_qk(w, 9), 9), w)


def _same_bytes(base, base_file, permute) -> int:
    """Tensores del bloque 0 que la exportación deja idénticos byte a byte al GGUF del curso (Q4_1)."""
    config = base.config
    tensors = gguf_export.gguf_tensors(base.state_dict(), config.num_attention_heads, config.num_key_value_heads,
                                       permute)
    return sum(np.array_equal(gguf_export.encode(w, base_file[name].tensor_type.name), np.asarray(base_file[name].data))
               for name, w in tensors.items() if name.startswith("blk.0."))


def test_exporting_the_base_reproduces_the_course_gguf_byte_for_byte(base, base_file):
    assert _same_bytes(base, base_file, gguf_export.permute_qk) == 9


def test_a_wrong_permutation_is_caught(base, base_file):
    """Sin permutar (o permutando con otro número de cabezas), q y k ya no son las del archivo del curso."""
    assert _same_bytes(base, base_file, lambda w, n: w) == 7
    assert _same_bytes(base, base_file, lambda w, n: gguf_export.permute_qk(w, 1)) == 7


def test_delta_survival_is_zero_in_f32_and_grows_as_bits_shrink():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 256)).astype(np.float32) * 0.05
    delta = rng.standard_normal((64, 256)).astype(np.float32) * 1e-3
    errors = [gguf_export.delta_survival(delta, w, fmt) for fmt in ("F32", "F16", "Q8_0", "Q4_1")]
    assert errors[0] < 1e-5  # solo el redondeo de (W + ΔW) − W en float32
    assert errors[1] < 0.05 < errors[2] < errors[3], errors
    assert errors[3] > 1  # ΔW 50 veces menor que W: en 4 bits no queda nada útil


def test_quantized_activations_round_like_q8_and_f16():
    x = torch.linspace(-1, 1, 64).reshape(2, 32)
    q8 = deploy.quantize_blocks(x, "Q8_0")
    assert (q8 - x).abs().max() <= x.abs().max() / 127 / 2 + 1e-6 and not torch.equal(q8, x)
    assert torch.equal(deploy.quantize_blocks(x, "F32"), x)
    assert (deploy.quantize_blocks(x, "F16") - x).abs().max() < 1e-3


def test_the_hooks_go_away_after_the_block(base):
    prompt = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = base(prompt).logits
        with deploy.llama_activations(base, deploy.weight_types(bundled_gguf())):
            during = base(prompt).logits
        after = base(prompt).logits
    assert torch.equal(before, after) and not torch.equal(before, during)


def test_delta_w_survives_on_average_unless_w_already_sits_on_the_grid():
    """Lo que explica el cuaderno: con W entre escalones (Q8_0 de pesos cualesquiera), un ΔW menor que el paso
    llega en promedio; con W ya en la rejilla (el base salió de un Q4_1), Q4_1 lo borra casi entero."""
    rng = np.random.default_rng(1)
    name = "model.layers.0.mlp.up_proj.weight"
    w = gguf_export.roundtrip(rng.standard_normal((64, 256)).astype(np.float32) * 0.05, "Q4_1")  # en la rejilla
    delta = rng.standard_normal(w.shape).astype(np.float32) * 2e-4
    rows = {row["formato"]: row for row in deploy.delta_survival_table(
        {name: torch.from_numpy(w)}, {name: torch.from_numpy(w + delta)}, ("F16", "Q8_0", "Q4_1"))}
    assert rows["F16"]["ΔW que llega"] > 0.99 and rows["F16"]["error ΔW"] < 0.1, rows
    assert rows["Q8_0"]["ΔW que llega"] > 0.8 and rows["Q8_0"]["|ΔW| / paso"] < 1, rows
    assert rows["Q4_1"]["ΔW que llega"] < 0.2 and rows["Q4_1"]["|ΔW| / paso"] < 0.1, rows


def test_grid_steps_are_those_of_each_format():
    block = np.linspace(-127, 127, 32, dtype=np.float32)[None, :]
    assert deploy.grid_step(block, "Q8_0") == pytest.approx(1.0)
    assert deploy.grid_step(block, "Q4_1") == pytest.approx(254 / 15)
    assert deploy.grid_step(block, "F16") == pytest.approx(np.mean(np.abs(block)) / 1024)
    with pytest.raises(ValueError):
        deploy.grid_step(block, "Q2_K")


def test_the_gguf_reader_of_transformers_draws_no_bar_in_the_notebooks(monkeypatch):
    """Sin tocar el resto del estado de las librerías (otras pruebas miran el ruido de antes)."""
    import transformers.modeling_gguf_pytorch_utils as reader

    from helpers import notebook

    monkeypatch.setattr(reader, "tqdm", reader.tqdm)  # se restaura al terminar
    assert not reader.tqdm([1, 2]).disable
    notebook._quiet_gguf_reader()
    assert reader.tqdm([1, 2]).disable
    assert "_quiet_gguf_reader" in notebook.quiet_library_output.__code__.co_names  # y los cuadernos la llaman


def test_llama_warnings_are_kept_without_paths_and_only_when_they_happen():
    from helpers.data import make_splits

    messages = make_splits("iso")["test"][0]["prompt"]
    runner = llama.LlamaRunner(bundled_gguf())
    try:
        runner.answer(messages, max_new_tokens=2)
        assert runner.warnings == set()
        runner.answer(messages, extra_bos=True, max_new_tokens=2)
        assert [w for w in runner.warnings if "duplicate leading" in w], runner.warnings
        assert not [w for w in runner.warnings if "/" in w.split("<|")[0]], runner.warnings  # sin rutas
    finally:
        runner.close()


def test_llama_sees_the_same_prompt_tokens_as_transformers():
    from helpers.data import make_splits
    from helpers.model import load_tokenizer

    messages = make_splits("iso")["test"][0]["prompt"]
    runner = llama.LlamaRunner(bundled_gguf())
    try:
        text = load_tokenizer().apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert llama.render(runner.template, messages) == text
        expected = load_tokenizer()(text, add_special_tokens=False)["input_ids"]
        assert runner.tokens(messages) == expected
        assert runner.tokens(messages, extra_bos=True) == [runner.llm.token_bos(), *expected]
    finally:
        runner.close()


def test_the_installed_llama_cpp_is_the_pinned_one():
    from importlib.metadata import version

    import curso

    assert curso.LLAMA_PACKAGE == f"llama-cpp-python=={version('llama-cpp-python')}"
