"""Las comprobaciones del cuaderno lora_advanced: aprueban lo correcto y explican lo incorrecto.

Cada comprobación se prueba con los objetos de la solución, con respuestas inventadas y con
equivocaciones realistas (cada una con su mensaje en español), y también por el camino de la
corrección: ``handover.write`` en una carpeta y ``Exercise.judge`` en fechas ocultas.
"""

import pytest

from helpers.advanced import generate_mixed, lora_deltas, preference_pairs
from helpers.build_adapters import adapter_dir
from helpers.checks import advanced as checks
from helpers.checks import handover
from helpers.evaluation import generate
from helpers.model import load_base_model, load_tokenizer
from tests.checking import assert_fails, run

SEED = 7
NAMES = ["iso", "us", "en", "__base__"]


def fresh():
    return load_base_model("cpu")[0]


def peft(*formats, name=None):
    from peft import PeftModel

    model = PeftModel.from_pretrained(fresh(), str(adapter_dir(formats[0])), adapter_name=name or formats[0])
    for fmt in formats[1:]:
        model.load_adapter(str(adapter_dir(fmt)), adapter_name=fmt)
    return model


def judged(exercise, tmp_path, **arguments):
    handover.write(exercise.info.name, arguments, exercise.handover, tmp_path)
    return exercise.judge(tmp_path, SEED)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def prompts(splits):
    return [row["prompt"] for row in splits["test"].select(range(len(NAMES)))]


@pytest.fixture(scope="module")
def three():
    """iso, us y en cargados, y las combinaciones de la sección 3 (no se cambia en las pruebas)."""
    model = peft("iso", "us", "en")
    model.add_weighted_adapter(["iso", "us"], [1.0, 1.0], "iso_mas_us", combination_type="cat")
    model.add_weighted_adapter(["iso", "us"], [1.0, 1.0], "lineal", combination_type="linear")
    model.add_weighted_adapter(["iso", "us"], [0.5, 0.5], "media", combination_type="cat")
    model.add_weighted_adapter(["iso", "en"], [1.0, 1.0], "iso_mas_en", combination_type="cat")
    model.set_adapter("iso")
    model.eval()
    return model


@pytest.fixture(scope="module")
def mixed(three, tokenizer, prompts):
    return generate_mixed(three, tokenizer, prompts, NAMES)


# ---------------------------------------------------------------- 🐢 mixed_batch
def test_mixed_batch_passes_on_the_solution(capsys, three, prompts, mixed):
    passed, text = run(checks.mixed_batch, capsys, three, prompts, NAMES, mixed)
    assert passed, text
    assert "Un solo `generate`" in text


def test_mixed_batch_is_judged_on_hidden_dates(tmp_path, three, prompts, mixed):
    outcome = judged(checks.mixed_batch, tmp_path, model=three, prompts=prompts, names=NAMES, answers=mixed)
    assert outcome.passed, outcome.message


def test_mixed_batch_fails_without_adapter_names(capsys, three, tokenizer, prompts):
    only_active = generate(three, tokenizer, prompts)  # olvidó adapter_names: todas las filas con "iso"
    assert_fails(checks.mixed_batch, capsys, three, prompts, NAMES, only_active,
                 says=["mismo formato", "adapter_names=mixed_names"])


def test_mixed_batch_fails_without_the_base_row(capsys, three, prompts, mixed):
    assert_fails(checks.mixed_batch, capsys, three, prompts, ["iso", "us", "en", "iso"], mixed,
                 says=["faltan '__base__'"])


def test_mixed_batch_fails_on_a_made_up_base_name(capsys, three, prompts, mixed):
    assert_fails(checks.mixed_batch, capsys, three, prompts, ["iso", "us", "en", "base"], mixed,
                 says=["no son adaptadores del modelo", "'base'", '"__base__"'])


def test_mixed_batch_fails_when_an_adapter_is_missing(capsys, prompts, mixed):
    assert_fails(checks.mixed_batch, capsys, peft("iso", "us"), prompts, NAMES, mixed, says="Faltan los adaptadores 'en'")


def test_mixed_batch_fails_on_fabricated_answers(capsys, tmp_path, three, prompts, mixed):
    fake = [*mixed[:3], "1999-01-01"]
    assert_fails(checks.mixed_batch, capsys, three, prompts, NAMES, fake, says=["fila 4", "'__base__'"])
    outcome = judged(checks.mixed_batch, tmp_path, model=three, prompts=prompts, names=NAMES, answers=fake)
    assert not outcome.passed and "fila 4" in outcome.message


def test_mixed_batch_is_not_attempted_with_the_todo_stub(tmp_path):
    outcome = judged(checks.mixed_batch, tmp_path, model=None, prompts=None, names=None, answers=None)
    assert outcome.status == "sin intentar"


# ---------------------------------------------------------------- 🐕 cat_combination
def test_cat_combination_passes_on_the_solution(capsys, tmp_path, three):
    from helpers.advanced import add_deltas, relative_difference

    error = relative_difference(lora_deltas(three, "iso_mas_us"), add_deltas(lora_deltas(three, "iso"),
                                                                              lora_deltas(three, "us")))
    passed, text = run(checks.cat_combination, capsys, three, "iso_mas_us", error)
    assert passed, text
    assert "rango 16" in text
    outcome = judged(checks.cat_combination, tmp_path, model=three, name="iso_mas_us", error=error)
    assert outcome.passed, outcome.message


def test_cat_combination_fails_on_linear(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "lineal", 0.0, says=["rango 8", "términos cruzados", "cat"])


def test_cat_combination_fails_on_half_weights(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "media", 0.0, says=["la media", "[1.0, 1.0]"])


def test_cat_combination_fails_on_the_wrong_adapters(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "iso_mas_en", 0.0, says="iso + en")


def test_cat_combination_fails_on_a_wrong_measurement(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "iso_mas_us", 0.31, says=["Mediste", "0.31"])


def test_cat_combination_fails_on_a_name_that_does_not_exist(capsys, tmp_path, three):
    assert_fails(checks.cat_combination, capsys, three, "mezcla", 0.0, says="ningún adaptador 'mezcla'")
    outcome = judged(checks.cat_combination, tmp_path, model=three, name="mezcla", error=0.0)
    assert not outcome.passed


# ---------------------------------------------------------------- 🐕 hotswap
@pytest.fixture(scope="module")
def swapped():
    from peft.utils.hotswap import hotswap_adapter

    model = peft("iso", name="default")
    hotswap_adapter(model, str(adapter_dir("us")), adapter_name="default")
    return model


def test_hotswap_passes_on_the_solution(capsys, tmp_path, swapped):
    passed, text = run(checks.hotswap, capsys, swapped)
    assert passed, text
    outcome = judged(checks.hotswap, tmp_path, model=swapped)
    assert outcome.passed, outcome.message


def test_hotswap_fails_when_nothing_was_swapped(capsys, tmp_path):
    untouched = peft("iso", name="default")
    assert_fails(checks.hotswap, capsys, untouched, says=["sigue teniendo los pesos de `adapters/iso`"])
    assert not judged(checks.hotswap, tmp_path, model=untouched).passed


def test_hotswap_fails_with_load_adapter(capsys):
    model = peft("iso", name="default")
    model.load_adapter(str(adapter_dir("us")), adapter_name="us")
    model.set_adapter("us")
    assert_fails(checks.hotswap, capsys, model, says=["2 adaptadores", "`load_adapter` añade uno nuevo"])


def test_hotswap_fails_on_another_adapter(capsys):
    from peft.utils.hotswap import hotswap_adapter

    model = peft("iso", name="default")
    hotswap_adapter(model, str(adapter_dir("en")), adapter_name="default")
    assert_fails(checks.hotswap, capsys, model, says=["inglés", "`adapters/us`"])


def test_hotswap_fails_on_the_base_model(capsys):
    assert_fails(checks.hotswap, capsys, fresh(), says="no es un PeftModel")


# ---------------------------------------------------------------- 🦁 dpo_trainer
DPO_STEPS, DPO_BATCH, DPO_LR = 8, 4, 1e-3


def dpo(splits, tokenizer, tmp_dir, lr=DPO_LR, steps=DPO_STEPS, ref_model=None, train=True):
    from peft import LoraConfig
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    from helpers.training import sft_device_args

    set_seed(0)
    rows = splits["train"].select(range(DPO_STEPS * DPO_BATCH))
    base = fresh()
    pairs = preference_pairs(rows, rejected=generate(base, tokenizer, [r["prompt"] for r in rows]))
    trainer = DPOTrainer(
        model=base, ref_model=ref_model, train_dataset=pairs, processing_class=tokenizer,
        args=DPOConfig(output_dir=str(tmp_dir), max_steps=steps, per_device_train_batch_size=DPO_BATCH,
                       learning_rate=lr, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                       seed=0, disable_tqdm=True, **sft_device_args("cpu")),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    if train:
        trainer.train()
    return trainer


@pytest.fixture(scope="module")
def dpo_trained(splits, tokenizer, tmp_path_factory):
    return dpo(splits, tokenizer, tmp_path_factory.mktemp("dpo"))


@pytest.mark.slow
def test_dpo_trainer_passes_on_the_solution(capsys, tmp_path, dpo_trained):
    passed, text = run(checks.dpo_trainer, capsys, dpo_trained)
    assert passed, text
    outcome = judged(checks.dpo_trainer, tmp_path, trainer=dpo_trained)
    assert outcome.passed, outcome.message


@pytest.mark.slow
def test_dpo_trainer_fails_with_the_default_learning_rate(capsys, tmp_path, splits, tokenizer):
    slow = dpo(splits, tokenizer, tmp_path / "lento", lr=1e-6, steps=2)
    assert_fails(checks.dpo_trainer, capsys, slow, says=["Casi no cambió nada", "DPO_LR"])
    assert not judged(checks.dpo_trainer, tmp_path / "entrega", trainer=slow).passed


@pytest.mark.slow
def test_dpo_trainer_fails_with_an_explicit_reference(capsys, tmp_path, splits, tokenizer):
    with_copy = dpo(splits, tokenizer, tmp_path, ref_model=fresh(), train=False)
    assert_fails(checks.dpo_trainer, capsys, with_copy, says=["ref_model", "segunda copia"])


@pytest.mark.slow
def test_dpo_trainer_fails_before_training(capsys, tmp_path, splits, tokenizer):
    untrained = dpo(splits, tokenizer, tmp_path, train=False)
    assert_fails(checks.dpo_trainer, capsys, untrained, says=["rewards/margins", "train()"])


def test_dpo_trainer_fails_on_a_fabricated_history(capsys, tmp_path):
    from types import SimpleNamespace

    fake = SimpleNamespace(model=fresh(), args=None,
                           state=SimpleNamespace(global_step=8, log_history=[{"rewards/margins": 0.0, "step": 1},
                                                                            {"rewards/margins": 5.0, "step": 8}]))
    assert_fails(checks.dpo_trainer, capsys, fake, says="no es un PeftModel")


def test_dpo_trainer_rejects_an_sft_style_history(capsys):
    from types import SimpleNamespace

    sft_like = SimpleNamespace(model=peft("iso"), state=SimpleNamespace(global_step=4, log_history=[{"loss": 1.0}]))
    assert_fails(checks.dpo_trainer, capsys, sft_like, says=["rewards/margins", "SFTTrainer"])


def test_every_advanced_exercise_is_registered():
    from helpers.checks.registry import exercises_for

    assert [e.name for e in exercises_for(checks.NOTEBOOK)] == ["mixed_batch", "cat_combination", "hotswap",
                                                                "dpo_trainer"]
