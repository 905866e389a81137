"""Las comprobaciones del cuaderno load_lora_adapter_example: aprueban lo correcto y explican lo incorrecto.

Cada comprobación se prueba con la respuesta buena y con varias equivocaciones realistas; cada
equivocación debe dar ❌ con su mensaje concreto en español (nunca una traza).
"""

import pytest
import torch

from helpers.build_adapters import adapter_dir, lora_config
from helpers.checks import adapters as checks
from helpers.data import answer, make_splits
from helpers.evaluation import logits
from helpers.model import base_model_path, load_base_model, load_tokenizer

N = 6


def fresh():
    """Un modelo base nuevo: PeftModel inyecta capas en el que recibe, así que no se comparte."""
    return load_base_model("cpu")[0]


def peft(fmt, name="default", model=None):
    from peft import PeftModel

    return PeftModel.from_pretrained(model or fresh(), str(adapter_dir(fmt)), adapter_name=name)


def run(check, capsys, *args):
    """(aprobado, texto que ve el alumno)."""
    capsys.readouterr()
    passed = check(*args)
    return passed, capsys.readouterr().out


def assert_fails(check, capsys, *args, says):
    passed, text = run(check, capsys, *args)
    assert passed is False, text
    assert text.startswith("❌"), text
    assert "Traceback" not in text
    for fragment in [says] if isinstance(says, str) else says:
        assert fragment in text, text
    return text


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


# ---------------------------------------------------------------- 🐢 load_adapter
def test_load_adapter_passes_on_the_iso_adapter(capsys):
    passed, text = run(checks.load_adapter, capsys, peft("iso", "iso"))
    assert passed, text
    assert text.startswith("✅") and "'iso'" in text


def test_load_adapter_passes_with_the_default_name(capsys):
    assert run(checks.load_adapter, capsys, peft("iso"))[0]


def test_load_adapter_fails_on_the_base_model(capsys):
    assert_fails(checks.load_adapter, capsys, fresh(), says="es el modelo base")


def test_load_adapter_fails_on_another_format(capsys):
    assert_fails(checks.load_adapter, capsys, peft("us"), says=["EE. UU.", "ADAPTER_DIRS['iso']"])


def test_load_adapter_fails_when_iso_is_loaded_but_not_active(capsys):
    model = peft("us", "us")
    model.load_adapter(str(adapter_dir("iso")), adapter_name="iso")
    assert_fails(checks.load_adapter, capsys, model, says="model.set_adapter('iso')")


def test_load_adapter_fails_on_a_new_untrained_adapter(capsys):
    from peft import get_peft_model

    assert_fails(checks.load_adapter, capsys, get_peft_model(fresh(), lora_config()), says="get_peft_model")


def test_load_adapter_fails_on_the_transformers_native_api(capsys):
    model = fresh()
    model.load_adapter(str(adapter_dir("iso")))
    assert_fails(checks.load_adapter, capsys, model, says="API de transformers")


@pytest.mark.parametrize("wrong, says", [(None, "es None"), ("adapters/iso", "es un str, no un modelo")])
def test_load_adapter_fails_cleanly_on_non_models(capsys, wrong, says):
    assert_fails(checks.load_adapter, capsys, wrong, says=says)


# ---------------------------------------------------------------- 🦁 switch_adapters
def expected_answers(n=N):
    return {fmt: [answer(r) for r in make_splits(fmt)["test"].select(range(n))] for fmt in ("iso", "us", "en")}


@pytest.fixture
def restored():
    return peft("iso", "iso").unload()


def test_switch_adapters_passes(capsys, restored):
    passed, text = run(checks.switch_adapters, capsys, expected_answers(), restored)
    assert passed, text
    assert f"iso {N}/{N}" in text


def test_switch_adapters_passes_with_a_few_mistakes(capsys, restored):
    answers = expected_answers()
    answers["en"][0] = "March 5, 2021"
    assert run(checks.switch_adapters, capsys, answers, restored)[0]


def test_switch_adapters_fails_when_never_switching(capsys, restored):
    iso = expected_answers()["iso"]
    assert_fails(checks.switch_adapters, capsys, {"iso": iso, "us": iso, "en": iso}, restored,
                 says=["idénticas", "set_adapter"])


def test_switch_adapters_fails_on_a_column_from_another_adapter(capsys, restored):
    answers = expected_answers()
    answers["us"] = answers["en"]
    assert_fails(checks.switch_adapters, capsys, answers, restored,
                 says=["columna 'us'", "inglés", "set_adapter('us')"])


def test_switch_adapters_fails_on_a_missing_adapter(capsys, restored):
    answers = expected_answers()
    del answers["en"]
    assert_fails(checks.switch_adapters, capsys, answers, restored, says=["Faltan", "'en'", "load_adapter"])


def test_switch_adapters_fails_on_other_rows(capsys, restored):
    shifted = {fmt: column[1:] + column[:1] for fmt, column in expected_answers().items()}
    assert_fails(checks.switch_adapters, capsys, shifted, restored, says="primeras 6 filas de test")


def test_switch_adapters_fails_when_restored_is_still_a_peft_model(capsys):
    assert_fails(checks.switch_adapters, capsys, expected_answers(), peft("iso"), says="todavía es un PeftModel")


def test_switch_adapters_fails_on_get_base_model(capsys):
    still_injected = peft("iso").get_base_model()
    assert_fails(checks.switch_adapters, capsys, expected_answers(), still_injected,
                 says=["capas LoRA", "get_base_model()"])


def test_switch_adapters_fails_on_merge_and_unload(capsys):
    assert_fails(checks.switch_adapters, capsys, expected_answers(), peft("iso").merge_and_unload(),
                 says="merge_and_unload()")


@pytest.mark.parametrize("answers, restored_value, says", [
    (None, None, "`answers_by_adapter` es None"),
    (["2021-03-05"], None, "debe ser un dict"),
    ({"iso": "2021-03-05", "us": "x", "en": "y"}, None, "lista no vacía"),
])
def test_switch_adapters_fails_cleanly_on_wrong_types(capsys, answers, restored_value, says):
    assert_fails(checks.switch_adapters, capsys, answers, restored_value, says=says)


def test_switch_adapters_fails_on_none_restored(capsys):
    assert_fails(checks.switch_adapters, capsys, expected_answers(), None, says="`restored` es None")


# ---------------------------------------------------------------- 🐕 merge_adapter
@pytest.fixture(scope="module")
def merge_prompts():
    return [row["prompt"] for row in make_splits("iso")["validation"].select(range(4))]


@pytest.fixture(scope="module")
def merged_case(tmp_path_factory, tokenizer, merge_prompts):
    """Lo que hace el alumno bien: fusionar una copia, medir frente al adaptador, guardar con el tokenizador."""
    adapter_logits = logits(peft("iso"), tokenizer, merge_prompts)
    merged = peft("iso").merge_and_unload()
    max_diff = (logits(merged, tokenizer, merge_prompts) - adapter_logits).abs().max().item()
    folder = tmp_path_factory.mktemp("fusionado")
    merged.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return merged, max_diff, folder


@pytest.mark.slow
def test_merge_adapter_passes(capsys, merged_case):
    passed, text = run(checks.merge_adapter, capsys, *merged_case)
    assert passed, text
    assert 0 < merged_case[1] < checks.MAX_DIFF_FP32


@pytest.mark.slow
def test_merge_adapter_accepts_a_tensor_and_a_string_path(capsys, merged_case):
    merged, max_diff, folder = merged_case
    assert run(checks.merge_adapter, capsys, merged, torch.tensor(max_diff), str(folder))[0]


@pytest.mark.slow
def test_merge_adapter_fails_on_unload(capsys, merged_case):
    _, max_diff, folder = merged_case
    assert_fails(checks.merge_adapter, capsys, peft("iso").unload(), max_diff, folder,
                 says=["no está fusionado", "merge_and_unload()"])


@pytest.mark.slow
def test_merge_adapter_fails_on_another_adapter(capsys, merged_case):
    _, max_diff, folder = merged_case
    assert_fails(checks.merge_adapter, capsys, peft("us").merge_and_unload(), max_diff, folder,
                 says=["EE. UU.", "ADAPTER_DIRS['iso']"])


@pytest.mark.slow
def test_merge_adapter_fails_on_a_peft_model(capsys, merged_case):
    _, max_diff, folder = merged_case
    assert_fails(checks.merge_adapter, capsys, peft("iso"), max_diff, folder, says="todavía es un PeftModel")


@pytest.mark.slow
def test_merge_adapter_fails_on_merge_adapter_without_unload(capsys, merged_case):
    _, max_diff, folder = merged_case
    model = peft("iso")
    model.merge_adapter()
    assert_fails(checks.merge_adapter, capsys, model.get_base_model(), max_diff, folder,
                 says=["capas LoRA", "merge_and_unload()"])


@pytest.mark.slow
def test_merge_adapter_fails_on_a_merged_model_merged_twice(capsys, merged_case):
    _, max_diff, folder = merged_case
    twice = peft("iso", model=peft("iso").merge_and_unload()).merge_and_unload()
    assert_fails(checks.merge_adapter, capsys, twice, max_diff, folder, says="dos veces")


@pytest.mark.slow
@pytest.mark.parametrize("bad_diff, says", [
    (None, "`max_diff` es None"),
    (0.0, "exactamente 0"),
    (12.5, "demasiado grande"),
    ("0.00001", "debe ser un número"),
])
def test_merge_adapter_fails_on_a_wrong_max_diff(capsys, merged_case, bad_diff, says):
    merged, _, folder = merged_case
    assert_fails(checks.merge_adapter, capsys, merged, bad_diff, folder, says=says)


@pytest.mark.slow
def test_merge_adapter_fails_on_a_folder_that_was_not_saved(capsys, merged_case, tmp_path):
    merged, max_diff, _ = merged_case
    assert_fails(checks.merge_adapter, capsys, merged, max_diff, tmp_path / "fusionado_iso",
                 says=["no existe", "save_pretrained"])
    assert_fails(checks.merge_adapter, capsys, merged, max_diff, None, says="`merged_dir` es None")


@pytest.mark.slow
def test_merge_adapter_fails_on_the_adapter_folder(capsys, merged_case):
    merged, max_diff, _ = merged_case
    assert_fails(checks.merge_adapter, capsys, merged, max_diff, adapter_dir("iso"), says="contiene un adaptador")


@pytest.mark.slow
def test_merge_adapter_fails_on_the_base_model_folder(capsys, merged_case):
    merged, max_diff, _ = merged_case
    assert_fails(checks.merge_adapter, capsys, merged, max_diff, base_model_path(),
                 says="no son los de `merged`")


@pytest.mark.slow
def test_merge_adapter_fails_without_the_tokenizer(capsys, merged_case, tmp_path):
    merged, max_diff, folder = merged_case
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).symlink_to(folder / name)
    assert_fails(checks.merge_adapter, capsys, merged, max_diff, tmp_path, says="falta el tokenizador")


@pytest.mark.slow
def test_merge_adapter_fails_on_pickle_files(capsys, merged_case, tmp_path):
    merged, max_diff, folder = merged_case
    for name in folder.iterdir():
        (tmp_path / name.name).symlink_to(name)
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    assert_fails(checks.merge_adapter, capsys, merged, max_diff, tmp_path, says=["pickle", "pytorch_model.bin"])


def test_merge_adapter_fails_cleanly_on_none(capsys):
    assert_fails(checks.merge_adapter, capsys, None, None, None, says="`merged` es None")


def test_checks_have_hints_and_registry_points():
    assert checks.load_adapter.info.points == 1
    assert checks.merge_adapter.info.points == 2
    assert checks.switch_adapters.info.points == 3
    for exercise in (checks.load_adapter, checks.merge_adapter, checks.switch_adapters):
        assert exercise._hint


def test_solutions_are_read_from_the_solution_notebook(capsys):
    expected = {checks.load_adapter: "PeftModel.from_pretrained", checks.merge_adapter: "merge_and_unload()",
                checks.switch_adapters: "model.unload()"}
    for exercise, call in expected.items():
        capsys.readouterr()
        exercise.solution()
        assert call in capsys.readouterr().out
    capsys.readouterr()
    checks.switch_adapters.solution()
    assert "set_adapter" in capsys.readouterr().out  # las dos partes del ejercicio 🦁
