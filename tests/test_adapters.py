"""Los adaptadores publicados en adapters/: formato estándar de PEFT, receta reproducible y exactitud.

Cada adaptador debe acertar ≥ 90 % de su formato en test y ≤ 10 % de los otros (así se distinguen).
Las entradas de test son las mismas en los tres formatos: una sola generación por adaptador se puntúa
contra las respuestas de los tres.
"""

import json

import pytest
import torch

from helpers import build_adapters
from helpers.build_adapters import ADAPTER_FILES, ADAPTER_FORMATS, adapter_config_dict, adapter_dir
from helpers.data import answer, make_splits
from helpers.evaluation import exact_match, generate
from helpers.model import load_base_model

OWN_MIN, OTHER_MAX = 0.90, 0.10
MAX_BYTES = 10 * 1024 * 1024
# peft_version depende de la versión instalada; el resto debe coincidir con la receta
VERSION_KEYS = {"peft_version"}


def _without_version(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in VERSION_KEYS}


@pytest.mark.parametrize("fmt", ADAPTER_FORMATS)
def test_folder_holds_only_the_standard_files(fmt):
    folder = adapter_dir(fmt)
    assert folder.is_dir(), f"Falta {folder}: ejecuta `make adapters`."
    assert sorted(p.name for p in folder.iterdir()) == sorted(ADAPTER_FILES)
    size = (folder / "adapter_model.safetensors").stat().st_size
    assert 0 < size < MAX_BYTES, f"{fmt}: {size} bytes"


@pytest.mark.parametrize("fmt", ADAPTER_FORMATS)
def test_shipped_config_is_the_build_recipe(fmt):
    shipped = json.loads((adapter_dir(fmt) / "adapter_config.json").read_text())
    assert _without_version(shipped) == _without_version(adapter_config_dict()), (
        "adapter_config.json no coincide con la receta de helpers/build_adapters.py: ejecuta `make adapters`.")
    assert shipped["base_model_name_or_path"] == build_adapters.BASE_MODEL_NAME  # no una ruta de esta máquina
    assert sorted(shipped["target_modules"]) == ["q_proj", "v_proj"]


@pytest.mark.parametrize("fmt", ADAPTER_FORMATS)
def test_weights_are_q_v_lora_in_float32(fmt):
    from safetensors.torch import load_file

    weights = load_file(adapter_dir(fmt) / "adapter_model.safetensors")
    layers = {k.rsplit(".lora_", 1)[0] for k in weights}
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in weights)
    assert {layer.rsplit(".", 1)[1] for layer in layers} == {"q_proj", "v_proj"}
    assert len(weights) == 2 * len(layers)
    assert all(t.dtype == torch.float32 for t in weights.values())
    assert {t.shape[0] for k, t in weights.items() if "lora_A" in k} == {build_adapters.LORA_R}
    assert any(t.abs().max() > 0 for k, t in weights.items() if "lora_B" in k), "lora_B a cero: sin entrenar"


def test_adapters_differ_from_each_other():
    from safetensors.torch import load_file

    weights = {fmt: load_file(adapter_dir(fmt) / "adapter_model.safetensors") for fmt in ADAPTER_FORMATS}
    key = next(k for k in weights["iso"] if "lora_B" in k)
    assert not torch.equal(weights["iso"][key], weights["us"][key])
    assert not torch.equal(weights["iso"][key], weights["en"][key])


@pytest.fixture(scope="module")
def scored():
    """{adaptador: {formato: aciertos}} con una generación por adaptador sobre los 120 prompts de test."""
    from peft import PeftModel

    tests = {fmt: make_splits(fmt)["test"] for fmt in ADAPTER_FORMATS}
    prompts = [row["prompt"] for row in tests["iso"]]
    assert all([row["prompt"] for row in tests[fmt]] == prompts for fmt in ADAPTER_FORMATS)
    references = {fmt: [answer(row) for row in tests[fmt]] for fmt in ADAPTER_FORMATS}
    base, tokenizer = load_base_model("cpu")  # uno propio: PeftModel inyecta capas en el base
    model = PeftModel.from_pretrained(base, str(adapter_dir("iso")), adapter_name="iso")
    for fmt in ADAPTER_FORMATS[1:]:
        model.load_adapter(str(adapter_dir(fmt)), adapter_name=fmt)
    scores = {}
    for fmt in ADAPTER_FORMATS:
        model.set_adapter(fmt)
        predictions = generate(model, tokenizer, prompts)
        scores[fmt] = {other: exact_match(predictions, references[other]) / len(prompts)
                       for other in ADAPTER_FORMATS}
    print(scores)
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ADAPTER_FORMATS)
def test_adapter_learned_its_own_format(scored, fmt):
    assert scored[fmt][fmt] >= OWN_MIN, f"{fmt}: {scored[fmt]}"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ADAPTER_FORMATS)
def test_adapter_does_not_answer_other_formats(scored, fmt):
    others = {other: s for other, s in scored[fmt].items() if other != fmt}
    assert all(s <= OTHER_MAX for s in others.values()), f"{fmt}: {scored[fmt]}"


@pytest.mark.slow
def test_build_command_writes_the_shipped_config(tmp_path, monkeypatch):
    """El constructor real (acortado a 1 paso) escribe solo los dos archivos, con la configuración publicada."""
    monkeypatch.setattr(build_adapters, "MAX_STEPS", 1)
    folder = build_adapters.build("iso", root=tmp_path, evaluate=False)
    assert folder == tmp_path / "iso"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ADAPTER_FILES)
    written = (folder / "adapter_config.json").read_text()
    shipped = (adapter_dir("iso") / "adapter_config.json").read_text()
    assert _without_version(json.loads(written)) == _without_version(json.loads(shipped))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iso"]  # sin restos temporales


@pytest.mark.slow
def test_shipped_adapter_loads_like_a_learner_would(monkeypatch):
    """Lo que hace el alumno: modelo base del curso + PeftModel.from_pretrained("adapters/iso"), sin red."""
    from peft import PeftModel

    monkeypatch.chdir(build_adapters.COURSE_ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base, tokenizer = load_base_model("cpu")
    model = PeftModel.from_pretrained(base, "adapters/iso")
    assert model.active_adapter == "default"
    row = make_splits("iso")["test"][0]
    assert generate(model, tokenizer, [row["prompt"]]) == [answer(row)]
