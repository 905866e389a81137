"""El modelo base: sin red, caché reutilizada, conversión atómica y errores claros en español."""

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import model as model_mod
from helpers.errors import ModelNotAvailableError


def test_base_model_answers_offline_with_network_blocked(tmp_path):
    """Carga y genera con todos los sockets bloqueados: no hay ni un intento de red."""
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise RuntimeError("intento de red")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from helpers.model import load_base_model
        from helpers.evaluation import generate
        model, tok = load_base_model("cpu")
        print(generate(model, tok, [[{"role": "user", "content": "What is the capital of France?"}]])[0])
    """)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("HF_", "CURSO_LORA_MODEL"))}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Paris" in out.stdout


def test_second_load_reuses_the_cache(monkeypatch):
    first = model_mod.converted_model_dir()
    weights = first / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    def must_not_convert(*args):
        raise AssertionError("convirtió otra vez en lugar de usar la caché")

    monkeypatch.setattr(model_mod, "_convert_gguf", must_not_convert)
    assert model_mod.converted_model_dir() == first
    assert weights.stat().st_mtime_ns == stamp


def test_cached_folder_is_a_plain_hf_model():
    folder = model_mod.converted_model_dir()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", model_mod.MARKER_FILE} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)


def _fake_package(monkeypatch, folder: Path | None):
    spec = None if folder is None else SimpleNamespace(submodule_search_locations=[str(folder)])
    monkeypatch.setattr(model_mod.importlib.util, "find_spec", lambda name: spec)


def test_missing_package_says_how_to_install(monkeypatch):
    _fake_package(monkeypatch, None)
    with pytest.raises(ModelNotAvailableError, match="--no-deps"):
        model_mod.bundled_gguf()


def test_missing_gguf_file(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path)
    with pytest.raises(ModelNotAvailableError, match="falta el archivo del modelo"):
        model_mod.bundled_gguf()


def test_truncated_gguf_file(monkeypatch, tmp_path):
    (tmp_path / model_mod.GGUF_FILE).write_bytes(b"GGUF" + b"\0" * 100)
    _fake_package(monkeypatch, tmp_path)
    assert model_mod._expected_gguf_size() > 104
    with pytest.raises(ModelNotAvailableError, match="incompleto"):
        model_mod.bundled_gguf()


def _fake_conversion(gguf, out):
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / model_mod.MARKER_FILE).write_text("{}")


def test_half_written_cache_is_rebuilt_not_used(monkeypatch, tmp_path):
    monkeypatch.setenv(model_mod.CACHE_ENV, str(tmp_path))
    half = tmp_path / model_mod.CONVERTED_NAME
    half.mkdir()
    (half / "config.json").write_text("{}")  # sin marcador: conversión interrumpida
    (half / "model.safetensors").write_bytes(b"a medias")
    monkeypatch.setattr(model_mod, "_convert_gguf", _fake_conversion)
    folder = model_mod.converted_model_dir()
    assert folder == half and (folder / model_mod.MARKER_FILE).is_file()
    assert not (folder / "model.safetensors").exists()


def test_interrupted_conversion_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv(model_mod.CACHE_ENV, str(tmp_path))

    def interrupted(gguf, out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(model_mod, "_convert_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model_mod.converted_model_dir()
    assert list(tmp_path.iterdir()) == []


def test_override_with_missing_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(model_mod.MODEL_ENV, str(tmp_path / "no-existe"))
    with pytest.raises(ModelNotAvailableError, match="no existe"):
        model_mod.base_model_path()


def test_override_with_folder_that_is_not_a_model(monkeypatch, tmp_path):
    monkeypatch.setenv(model_mod.MODEL_ENV, str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="no es un modelo"):
        model_mod.base_model_path()


def test_override_with_local_model_and_hub_id(monkeypatch):
    local = model_mod.converted_model_dir()
    monkeypatch.setenv(model_mod.MODEL_ENV, str(local))
    assert model_mod.base_model_path() == str(local)
    assert not model_mod.is_offline()
    monkeypatch.setenv(model_mod.MODEL_ENV, "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert model_mod.base_model_path() == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_hub_offline_is_restored(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv(model_mod.MODEL_ENV, raising=False)
    before = hub_constants.HF_HUB_OFFLINE
    with model_mod.hub_offline():
        assert hub_constants.HF_HUB_OFFLINE is True
    assert hub_constants.HF_HUB_OFFLINE == before


def test_base_model_fails_the_task(base, splits):
    from helpers.evaluation import evaluate

    model, tok = base
    result = evaluate(model, tok, splits["test"].select(range(16)), progress=False)
    assert result.accuracy <= 0.05, result.table(5)
