"""Las comprobaciones del cuaderno lora_advanced: aprueban lo correcto y explican lo incorrecto.

Cada comprobación se prueba con los objetos de la solución, con respuestas inventadas y con
equivocaciones realistas (cada una con su mensaje en español), y también por el camino de la
corrección: ``handover.write`` en una carpeta y ``Exercise.judge`` en fechas ocultas.
"""

import pytest

from helpers.advanced import generate_mixed, lora_deltas, preference_pairs
from helpers.checks import advanced as checks
from helpers.checks import handover
from helpers.evaluation import generate
from helpers.model import load_base_model, load_tokenizer
from helpers.shipped import adapter_dir
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
    from helpers.advanced import single_thread

    model = peft("iso", "us", "en")
    with single_thread():
        for kind in ("cat", "linear", "svd"):
            model.add_weighted_adapter(["iso", "us"], [1.0, 1.0], f"iso_us_{kind}", combination_type=kind)
        model.add_weighted_adapter(["iso", "us"], [0.5, 0.5], "svd_media", combination_type="svd")
    model.add_weighted_adapter(["iso", "us"], [0.5, 0.5], "media", combination_type="cat")
    model.add_weighted_adapter(["iso", "us"], [0.5, 0.5], "lineal_media", combination_type="linear")
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
    assert "Tus 4 filas son las de cada adaptador por separado" in text and "otras 16 fechas del conjunto" in text


def test_mixed_batch_is_judged_on_hidden_dates(tmp_path, three, prompts, mixed):
    outcome = judged(checks.mixed_batch, tmp_path, model=three, prompts=prompts, names=NAMES, answers=mixed)
    assert outcome.passed, outcome.message
    assert "fechas que el cuaderno no vio" in outcome.message


def test_mixed_batch_point_is_the_outcome_a_set_adapter_loop_gives_the_same_data(tmp_path, three, tokenizer,
                                                                                 prompts, mixed):
    """Lo que certifica el punto (README): el modelo y el lote que genera la corrección, no cómo respondió el alumno.

    Un bucle con ``set_adapter`` fila a fila da exactamente las mismas respuestas que un lote mezclado: en los
    datos entregados no se distinguen, y por eso el punto se define por el resultado.
    """
    loop = []
    for prompt, name in zip(prompts, NAMES):
        if name == "__base__":
            with three.disable_adapter():
                loop += generate(three, tokenizer, [prompt])
        else:
            three.set_adapter(name)
            loop += generate(three, tokenizer, [prompt])
    three.set_adapter("iso")
    assert loop == mixed


def test_mixed_batch_refuses_one_adapter_under_three_names(capsys, tmp_path, tokenizer, prompts):
    """Un modelo con iso cargado tres veces (con los nombres us y en) no sirve tres formatos, diga lo que diga."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(fresh(), str(adapter_dir("iso")), adapter_name="iso")
    for name in ("us", "en"):
        model.load_adapter(str(adapter_dir("iso")), adapter_name=name)
    answers = generate_mixed(model, tokenizer, prompts, NAMES)
    assert_fails(checks.mixed_batch, capsys, model, prompts, NAMES, answers,
                 says=["'us' del modelo no es el de `adapters/us`", "es el de `adapters/iso`"])
    outcome = judged(checks.mixed_batch, tmp_path, model=model, prompts=prompts, names=NAMES, answers=answers)
    assert not outcome.passed and "adapters/us" in outcome.message


def test_mixed_batch_fails_without_adapter_names(capsys, three, tokenizer, prompts):
    only_active = generate(three, tokenizer, prompts)  # olvidó adapter_names: todas las filas con "iso"
    assert_fails(checks.mixed_batch, capsys, three, prompts, NAMES, only_active,
                 says=["mismo formato", "`adapter_names`"])


def test_mixed_batch_fails_without_the_base_row(capsys, three, prompts, mixed):
    assert_fails(checks.mixed_batch, capsys, three, prompts, ["iso", "us", "en", "iso"], mixed,
                 says=["faltan '__base__'"])


def test_mixed_batch_fails_on_a_made_up_base_name(capsys, three, prompts, mixed):
    assert_fails(checks.mixed_batch, capsys, three, prompts, ["iso", "us", "en", "base"], mixed,
                 says=["no son adaptadores del modelo", "'base'", '"__base__"'])


def test_mixed_batch_fails_when_an_adapter_is_missing(capsys, prompts, mixed):
    assert_fails(checks.mixed_batch, capsys, peft("iso", "us"), prompts, NAMES, mixed,
                 says="Faltan los adaptadores 'en'")


def test_mixed_batch_fails_on_fabricated_answers(capsys, tmp_path, three, prompts, mixed):
    fake = [*mixed[:3], "1999-01-01"]
    assert_fails(checks.mixed_batch, capsys, three, prompts, NAMES, fake, says=["fila 4", "'__base__'"])
    outcome = judged(checks.mixed_batch, tmp_path, model=three, prompts=prompts, names=NAMES, answers=fake)
    assert not outcome.passed and "fila 4" in outcome.message


LOOP_CELL = """model = PeftModel.from_pretrained(fresh_base(), ADAPTER_DIRS["iso"], adapter_name="iso")
mixed_answers = []
for prompt, name in zip(mixed_prompts, mixed_names):
    if name == "__base__":
        with model.disable_adapter():
            mixed_answers += generate(model, tokenizer, [prompt])
    else:
        model.set_adapter(name)
        mixed_answers += generate(model, tokenizer, [prompt])
"""


def test_mixed_batch_names_a_set_adapter_loop_in_the_notebook(capsys, monkeypatch, tmp_path, three, tokenizer,
                                                               prompts, mixed):
    """Issue 29: un bucle de `set_adapter` + `generate` da las mismas respuestas. El punto no cambia (el juez solo
    ve datos), pero en el cuaderno la comprobación lee la celda que asignó `mixed_answers` y lo dice."""
    monkeypatch.setattr(checks, "_cell_that_assigned", lambda name: LOOP_CELL if name == "mixed_answers" else None)
    passed, text = run(checks.mixed_batch, capsys, three, prompts, NAMES, mixed)
    three.set_adapter("iso")
    assert passed, text
    for fragment in ("según tu celda", "un bucle que llama a `generate`", "`set_adapter`", "UNA sola llamada",
                     "el punto cuenta"):
        assert fragment in text, text
    outcome = judged(checks.mixed_batch, tmp_path, model=three, prompts=prompts, names=NAMES, answers=mixed)
    assert outcome.passed and "según tu celda" not in outcome.message  # la corrección no ve celdas


def test_mixed_batch_says_nothing_about_the_one_call_solution():
    import nbformat

    from helpers.paths import SOLUTIONS_DIR

    cells = nbformat.read(SOLUTIONS_DIR / "lora_advanced.ipynb", as_version=4).cells
    solution = next(c.source for c in cells if "mixed_answers = decode_new" in c.source)
    assert checks._how_generated(solution) == ""
    assert "2 llamadas a `generate`" in checks._how_generated("a = model.generate(x)\nb = model.generate(y)\n"
                                                               "mixed_answers = a + b")


def test_mixed_batch_reads_the_cell_that_assigned_the_answers_from_the_kernel_history(monkeypatch):
    from types import SimpleNamespace

    history = ["", "x = 1", LOOP_CELL, "print(mixed_answers)", "checks.mixed_batch(model, ...)"]
    monkeypatch.setattr("IPython.get_ipython", lambda: SimpleNamespace(user_ns={"In": history}))
    assert checks._cell_that_assigned("mixed_answers") == LOOP_CELL
    assert checks._cell_that_assigned("otra_cosa") is None


def test_mixed_batch_is_not_attempted_with_the_todo_stub(tmp_path):
    outcome = judged(checks.mixed_batch, tmp_path, model=None, prompts=None, names=None, answers=None)
    assert outcome.status == "sin intentar"


# ---------------------------------------------------------------- 🐕 cat_combination
@pytest.fixture(scope="module")
def measured(three):
    from helpers.advanced import add_deltas, relative_difference

    total = add_deltas(lora_deltas(three, "iso"), lora_deltas(three, "us"))
    return {f"iso_us_{kind}": relative_difference(lora_deltas(three, f"iso_us_{kind}"), total)
            for kind in ("cat", "linear", "svd")}


def test_cat_combination_passes_on_the_solution(capsys, tmp_path, three, measured):
    passed, text = run(checks.cat_combination, capsys, three, "iso_us_cat", measured)
    assert passed, text
    assert "rango 16" in text and "Mis medidas de tus combinaciones" in text and "(tú:" not in text
    outcome = judged(checks.cat_combination, tmp_path, model=three, name="iso_us_cat", errors=measured)
    assert outcome.passed, outcome.message


def test_cat_combination_measured_errors_are_what_the_notebook_shows(measured):
    """Los números del comentario del umbral: cat ~10⁻⁷, svd ~6·10⁻², linear ~0,95."""
    assert measured["iso_us_cat"] < checks.CAT_TOLERANCE / 100
    assert 0.03 < measured["iso_us_svd"] < 0.1 and 0.9 < measured["iso_us_linear"] < 1.0


def test_cat_combination_a_typed_zero_earns_nothing(capsys, tmp_path, three):
    """Issue 20: `cat_error` escrito como 0,0 aprobaba. Ahora el número no cuenta: se mide el adaptador elegido."""
    typed = {"iso_us_linear": 0.0}
    assert_fails(checks.cat_combination, capsys, three, "iso_us_linear", typed, says="`linear`")
    outcome = judged(checks.cat_combination, tmp_path, model=three, name="iso_us_linear", errors=typed)
    assert not outcome.passed and "linear" in outcome.message


def test_cat_combination_a_wrong_number_beside_the_right_adapter_is_only_feedback(capsys, three):
    passed, text = run(checks.cat_combination, capsys, three, "iso_us_cat", {"iso_us_cat": 0.31})
    assert passed, text
    assert "(tú: 3,1·10⁻¹)" in text


def test_cat_combination_fails_on_linear(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "iso_us_linear", None,
                 says=["`linear`", "términos cruzados", "rango 8", "10⁻⁷"])


def test_cat_combination_fails_on_svd(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "iso_us_svd", None,
                 says=["es `svd`", "direcciones principales", "rango 16"])


def test_cat_combination_fails_on_half_weights(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "media", None, says=["la media", "[1.0, 1.0]"])


def test_cat_combination_names_linear_and_its_weights_at_half_weights(capsys, three):
    """Issue 29: con pesos 0,5/0,5 un `linear` se diagnosticaba como «`svd`» y no se hablaba de los pesos."""
    assert_fails(checks.cat_combination, capsys, three, "lineal_media", None,
                 says=["se hizo con `linear`", "pesos 0,50 y 0,50", "no son 1 y 1", "términos cruzados"])


def test_cat_combination_names_svd_and_its_weights(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "svd_media", None,
                 says=["es `svd`", "pesos 0,50 y 0,50", "no son 1 y 1", "rango 8"])


def test_cat_combination_half_weights_explain_a_stale_rerun(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "media", None,
                 says=["la media", "pesos 0,50 y 0,50", "no reemplaza un adaptador que ya existe", "delete_adapter"])


def test_add_weighted_adapter_keeps_an_existing_name_and_the_notebook_cell_frees_it():
    """PEFT no reemplaza un nombre que ya existe (issue 29): las primeras líneas de la celda del ejercicio, que se
    ejecutan aquí tal cual están en el cuaderno, borran las combinaciones para que re-ejecutar con otros pesos mida
    lo nuevo."""
    import nbformat
    import torch

    from helpers.advanced import add_deltas, relative_difference
    from helpers.checks.cells import BEGIN
    from helpers.paths import SOLUTIONS_DIR

    cells = nbformat.read(SOLUTIONS_DIR / "lora_advanced.ipynb", as_version=4).cells
    cell = next(c.source for c in cells if "combination_errors = {}" in c.source)
    prefix = cell.split(BEGIN)[0]
    model = peft("iso", "us")
    model.add_weighted_adapter(["iso", "us"], [0.5, 0.5], "iso_us_cat", combination_type="cat")
    half = lora_deltas(model, "iso_us_cat")
    model.add_weighted_adapter(["iso", "us"], [1.0, 1.0], "iso_us_cat", combination_type="cat")  # no hace nada
    assert all(torch.equal(half[k], d) for k, d in lora_deltas(model, "iso_us_cat").items())
    exec(prefix, {"model": model})  # noqa: S102 - el código del cuaderno del curso
    assert list(model.peft_config) == ["iso", "us"]
    model.add_weighted_adapter(["iso", "us"], [1.0, 1.0], "iso_us_cat", combination_type="cat")
    total = add_deltas(lora_deltas(model, "iso"), lora_deltas(model, "us"))
    assert relative_difference(lora_deltas(model, "iso_us_cat"), total) < checks.CAT_TOLERANCE


def test_cat_combination_fails_on_the_wrong_adapters(capsys, three):
    assert_fails(checks.cat_combination, capsys, three, "iso_mas_en", None, says="iso + en")


def test_cat_combination_fails_on_a_shipped_adapter(capsys, tmp_path, three):
    assert_fails(checks.cat_combination, capsys, three, "us", None, says="es el adaptador us tal cual")
    assert not judged(checks.cat_combination, tmp_path, model=three, name="us", errors=None).passed


def test_cat_combination_fails_on_a_name_that_does_not_exist(capsys, tmp_path, three):
    assert_fails(checks.cat_combination, capsys, three, "mezcla", None, says="ningún adaptador 'mezcla'")
    outcome = judged(checks.cat_combination, tmp_path, model=three, name="mezcla", errors=None)
    assert not outcome.passed


# ---------------------------------------------------------------- 🐕 hotswap
def swap_case(target_rank=None, swap="us", name="default"):
    """iso cargado en "default", preparado (o no) con ``target_rank`` y con ``swap`` puesto en caliente."""
    from peft.utils.hotswap import hotswap_adapter, prepare_model_for_compiled_hotswap

    model = peft("iso", name=name)
    if target_rank is not None:
        prepare_model_for_compiled_hotswap(model, target_rank=target_rank)
    if swap:
        hotswap_adapter(model, str(adapter_dir(swap)), adapter_name=name)
    return model


@pytest.fixture(scope="module")
def swapped():
    return swap_case(16)


def test_hotswap_passes_on_the_solution(capsys, tmp_path, swapped):
    passed, text = run(checks.hotswap, capsys, swapped)
    assert passed, text
    assert "16 filas" in text and "ningún tensor cambió de forma" in text
    outcome = judged(checks.hotswap, tmp_path, model=swapped)
    assert outcome.passed, outcome.message


def test_hotswap_handover_keeps_the_padded_rows_and_tensor_scalings(tmp_path, swapped):
    """Lo que viaja a la corrección es el estado real: 16 filas (8 de relleno), escalas tensor y la config de iso."""
    import torch

    handover.write("hotswap", {"model": swapped}, checks.hotswap.handover, tmp_path)
    assert handover.refusals("hotswap", checks.hotswap.handover, tmp_path) == []  # la validación del juez lo admite
    judged_model = handover.read("hotswap", checks.hotswap.handover, tmp_path)["model"]
    layer = judged_model.base_model.model.model.layers[0].self_attn.q_proj
    assert tuple(layer.lora_A["default"].weight.shape) == (16, 576)
    assert float(layer.lora_A["default"].weight[8:].abs().max()) == 0.0
    assert isinstance(layer.scaling["default"], torch.Tensor) and float(layer.scaling["default"]) == 2.0
    assert judged_model.peft_config["default"].r == 8 and judged_model.peft_config["default"].lora_alpha == 16


def test_hotswap_does_not_change_the_learners_model(capsys, swapped):
    before = {k: v.clone() for k, v in swapped.state_dict().items() if "lora_" in k}
    run(checks.hotswap, capsys, swapped)
    after = {k: v for k, v in swapped.state_dict().items() if "lora_" in k}
    assert before.keys() == after.keys() and all(before[k].shape == after[k].shape for k in before)
    assert all(bool((before[k] == after[k]).all()) for k in before)


def test_hotswap_refuses_a_fresh_load_of_us(capsys, tmp_path):
    """Issue 20: un `PeftModel.from_pretrained(adapters/us)` recién cargado aprobaba. Ahora no está preparado."""
    fresh_us = peft("us", name="default")
    assert_fails(checks.hotswap, capsys, fresh_us, says=["no está preparado", "prepare_model_for_compiled_hotswap"])
    outcome = judged(checks.hotswap, tmp_path, model=fresh_us)
    assert not outcome.passed and "no está preparado" in outcome.message


def test_hotswap_fails_when_the_target_rank_is_too_small(capsys, tmp_path):
    small = swap_case(8)
    assert_fails(checks.hotswap, capsys, small, says=["con 8 filas", "rango 16", "pasó de 8 a 16 filas",
                                                      "recompilaría"])
    outcome = judged(checks.hotswap, tmp_path, model=small)
    assert not outcome.passed and "pasó de 8 a 16 filas" in outcome.message


def test_hotswap_a_larger_target_rank_passes_with_a_note(capsys):
    passed, text = run(checks.hotswap, capsys, swap_case(32))
    assert passed, text
    assert "Reservaste 32 filas" in text


def test_hotswap_fails_when_nothing_was_swapped(capsys, tmp_path):
    untouched = swap_case(16, swap=None)
    assert_fails(checks.hotswap, capsys, untouched, says=["sigue teniendo los pesos de `adapters/iso`"])
    assert not judged(checks.hotswap, tmp_path, model=untouched).passed


def test_hotswap_fails_with_load_adapter(capsys):
    model = peft("iso", name="default")
    model.load_adapter(str(adapter_dir("us")), adapter_name="us")
    model.set_adapter("us")
    assert_fails(checks.hotswap, capsys, model, says=["2 adaptadores", "`load_adapter` añade uno nuevo"])


def test_hotswap_fails_on_another_adapter(capsys):
    assert_fails(checks.hotswap, capsys, swap_case(16, swap="en"), says=["`adapters/en`", "inglés", "`adapters/us`"])


def test_hotswap_fails_when_the_rank_16_adapter_is_already_in_the_slot(capsys, tmp_path):
    from peft.utils.hotswap import hotswap_adapter

    model = swap_case(16, swap=None)
    cat_source = peft("iso", "us")
    cat_source.add_weighted_adapter(["iso", "us"], [1.0, 1.0], "iso_us_cat", combination_type="cat")
    cat_source.save_pretrained(tmp_path, selected_adapters=["iso_us_cat"], save_embedding_layers=False)
    hotswap_adapter(model, str(tmp_path / "iso_us_cat"), adapter_name="default")
    assert_fails(checks.hotswap, capsys, model, says=["ya el adaptador de rango 16", "servir ahora `us`"])


def test_hotswap_fails_on_the_base_model(capsys):
    assert_fails(checks.hotswap, capsys, fresh(), says="no es un PeftModel")


# ---------------------------------------------------------------- 🦁 dpo_trainer
DPO_BATCH, DPO_LR, DPO_STEPS = 4, 1e-3, 4  # lo más barato que pasa con holgura (margen ~3 tras 4 pasos)


@pytest.fixture(scope="module")
def dpo_pairs(tokenizer):
    """Pares con la fecha con puntos como elegida y lo que dice el modelo base como rechazada."""
    from helpers.data import TRAINED_FORMAT, make_splits

    rows = make_splits(TRAINED_FORMAT)["train"].select(range(DPO_STEPS * DPO_BATCH))
    return preference_pairs(rows, rejected=generate(fresh(), tokenizer, [r["prompt"] for r in rows]))


def dpo(pairs, tokenizer, tmp_dir, lr=DPO_LR, steps=DPO_STEPS, ref_model=None, train=True, model=None,
        target_modules="all-linear"):
    from peft import LoraConfig
    from transformers import PrinterCallback, set_seed
    from trl import DPOConfig, DPOTrainer

    from helpers.advanced import quiet_trl_deprecations
    from helpers.training import sft_device_args

    quiet_trl_deprecations()
    set_seed(0)
    trainer = DPOTrainer(
        model=model if model is not None else fresh(), ref_model=ref_model, train_dataset=pairs,
        processing_class=tokenizer,
        args=DPOConfig(output_dir=str(tmp_dir), max_steps=steps, per_device_train_batch_size=DPO_BATCH,
                       learning_rate=lr, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                       seed=0, disable_tqdm=True, **sft_device_args("cpu")),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=target_modules, task_type="CAUSAL_LM"))
    trainer.remove_callback(PrinterCallback)
    if train:
        trainer.train()
    return trainer


def dpo_history(steps=12, lr=3e-4, margins=None):
    """Un historial como el de un DPOTrainer con ``logging_steps=1`` (para falsificaciones)."""
    margins = margins or [0.3 * i for i in range(steps)]
    return [{"step": i + 1, "learning_rate": lr, "rewards/margins": m, "loss": 0.5} for i, m in enumerate(margins)]


def fake_trainer(model, history, steps, ref_model=None):
    """Lo que podría pasar quien no entrena: un objeto con la forma de un trainer (el handover lo acepta)."""
    from types import SimpleNamespace

    return SimpleNamespace(model=model, args=SimpleNamespace(), ref_model=ref_model, optimizer_steps=steps,
                           state=SimpleNamespace(global_step=steps, log_history=history))


@pytest.fixture(scope="module")
def dpo_trained(dpo_pairs, tokenizer, tmp_path_factory):
    return dpo(dpo_pairs, tokenizer, tmp_path_factory.mktemp("dpo"))


@pytest.mark.slow
def test_dpo_trainer_passes_on_the_solution(capsys, tmp_path, dpo_trained):
    passed, text = run(checks.dpo_trainer, capsys, dpo_trained)
    assert passed, text
    assert "prefiere la fecha con puntos" in text and "subir el margen no es lo mismo que responder bien" in text
    # lo que se pidió en DPOConfig no cuenta: con otros args escritos, la corrección ve los mismos pasos y tasas
    dpo_trained.args.max_steps, dpo_trained.args.learning_rate = 1, 1e-9
    try:
        outcome = judged(checks.dpo_trainer, tmp_path, trainer=dpo_trained)
    finally:
        dpo_trained.args.max_steps, dpo_trained.args.learning_rate = DPO_STEPS, DPO_LR
    assert outcome.passed, outcome.message
    assert "fechas que el cuaderno no vio" in outcome.message and f"{DPO_STEPS} pasos" in outcome.message


@pytest.mark.slow
def test_dpo_trainer_fails_with_the_default_learning_rate(capsys, tmp_path, dpo_pairs, tokenizer):
    slow = dpo(dpo_pairs, tokenizer, tmp_path / "lento", lr=1e-6, steps=2)
    outcome = judged(checks.dpo_trainer, tmp_path / "entrega", trainer=slow)  # el mensaje, por el camino del juez
    assert not outcome.passed
    for fragment in ("Casi no cambió nada", "Tu tasa fue 1,0·10⁻⁶", "por defecto"):
        assert fragment in outcome.message, outcome.message


@pytest.mark.slow
def test_dpo_trainer_fails_with_chosen_and_rejected_swapped(capsys, tmp_path, dpo_pairs, tokenizer):
    swapped = dpo_pairs.map(lambda p: {"chosen": p["rejected"], "rejected": p["chosen"]})
    backwards = dpo(swapped, tokenizer, tmp_path, steps=3)
    assert_fails(checks.dpo_trainer, capsys, backwards, says=["prefiere ahora lo que decía el base",
                                                              "cambiaste `chosen` y `rejected`"])


@pytest.mark.slow
def test_dpo_trainer_with_an_explicit_reference_is_refused_in_grading(capsys, tmp_path, dpo_pairs, tokenizer):
    """Issue 20: la prueba de `ref_model` no llegaba a la corrección. Ahora el trainer reconstruido lo trae."""
    with_copy = dpo(dpo_pairs, tokenizer, tmp_path / "salida", ref_model=fresh(), train=False)
    assert_fails(checks.dpo_trainer, capsys, with_copy, says=["ref_model", "segunda copia"])
    outcome = judged(checks.dpo_trainer, tmp_path / "entrega", trainer=with_copy)
    assert not outcome.passed and "segunda copia" in outcome.message


@pytest.mark.slow
def test_dpo_trainer_fails_before_training(capsys, tmp_path, dpo_pairs, tokenizer):
    untrained = dpo(dpo_pairs, tokenizer, tmp_path, train=False)
    assert_fails(checks.dpo_trainer, capsys, untrained, says=["rewards/margins", "train()"])


@pytest.mark.slow
def test_dpo_trainer_refuses_more_steps_than_the_budget(capsys, tmp_path, dpo_trained):
    over = fake_trainer(dpo_trained.model, dpo_trained.state.log_history, checks.DPO_MAX_STEPS + 8)
    outcome = judged(checks.dpo_trainer, tmp_path, trainer=over)
    assert not outcome.passed and f"el presupuesto es {checks.DPO_MAX_STEPS}" in outcome.message


@pytest.mark.slow
def test_dpo_trainer_refuses_an_adapter_that_moved_more_than_its_history_allows(capsys, tmp_path, dpo_trained):
    """Un historial inventado (tasas 100 veces menores) junto a pesos entrenados de verdad: no cuadra."""
    history = [{**e, "learning_rate": e["learning_rate"] / 100} if "learning_rate" in e else e
               for e in dpo_trained.state.log_history]
    outcome = judged(checks.dpo_trainer, tmp_path, trainer=fake_trainer(dpo_trained.model, history, DPO_STEPS))
    assert not outcome.passed and "se movieron" in outcome.message


def test_dpo_trainer_refuses_a_shipped_adapter_with_a_made_up_history(capsys, tmp_path):
    """Issue 20: un adaptador publicado (iso con B ×1,01) con un historial de DPO inventado aprobaba.

    Sin esta comprobación pasaría: los adaptadores publicados dan márgenes de 5 a 13 con la fecha con puntos
    frente a lo que dice el base (medido), porque hunden la respuesta del base.
    """
    import torch

    model = peft("iso", name="default")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(1.01)
    fake = fake_trainer(model, dpo_history(), 12)
    assert_fails(checks.dpo_trainer, capsys, fake, says=["se parece al de `adapters/iso`", "similitud 1,00"])
    outcome = judged(checks.dpo_trainer, tmp_path, trainer=fake)
    assert not outcome.passed and "adapters/iso" in outcome.message


@pytest.mark.slow
def test_dpo_trainer_refuses_a_model_that_no_longer_answers(capsys, tmp_path, dpo_pairs, tokenizer):
    """Issue 29: con tasa 10⁻¹ el margen se dispara (75 en el cuaderno) y todas las respuestas voraces son
    «................»; daba 3/3. Ahora el punto pide que el modelo siga respondiendo en las fechas ocultas."""
    from tests.checks.threats_advanced import BROKEN_LR, BROKEN_STEPS

    broken = dpo(dpo_pairs, tokenizer, tmp_path / "salida", lr=BROKEN_LR, steps=BROKEN_STEPS)
    assert_fails(checks.dpo_trainer, capsys, broken, says=["se rompió", "no dicen nada", "baja la tasa"])
    outcome = judged(checks.dpo_trainer, tmp_path / "entrega", trainer=broken)
    assert not outcome.passed and "se rompió" in outcome.message, outcome.message


def test_broken_answers_are_told_apart_from_wrong_ones():
    """Lo que cuenta como «ya no responde»: lo medido con tasas que rompen, frente a lo que dice un modelo que
    responde mal (el base) o a medias (DPO con una tasa razonable)."""
    from helpers.advanced import is_broken_answer

    for broken in ("................", "", "   ", "ĊĊĊĊĊĊ", "2222222222222222", "la fecha es la fecha"):
        assert is_broken_answer(broken), broken
    for answering in ("La fecha de 5 de abril de 2", "2020-05-05 12:00", "1983.09.09", "18.08.1964", "09/02/2008",
                      "La fecha de 24 de 1978 es la fe", "11.11.2011", "2011-11-11"):
        assert not is_broken_answer(answering), answering


def test_dpo_trainer_names_adapters_left_by_an_earlier_run_on_the_same_base(capsys, tokenizer, tmp_path):
    """Issue 29: `DPOTrainer` cambia `dpo_base` por dentro; re-ejecutar la celda sobre el mismo base con otra
    `LoraConfig` deja las capas LoRA de la primera vez, y nada avisaba. La celda del cuaderno empieza ahora con un
    base nuevo, y la comprobación nombra el apilado si aun así ocurre."""
    from helpers.data import TRAINED_FORMAT, make_splits

    base = fresh()
    pairs = preference_pairs(make_splits(TRAINED_FORMAT)["train"].select(range(8)), rejected=["no sé"] * 8)
    dpo(pairs, tokenizer, tmp_path / "primera", model=base, train=False)
    second = dpo(pairs, tokenizer, tmp_path / "segunda", model=base, train=False, target_modules=["q_proj", "v_proj"])
    assert_fails(checks.dpo_trainer, capsys, second, says=["capas LoRA que tu `LoraConfig` no pide",
                                                          "dpo_base = fresh_base()"])


def test_the_dpo_cell_starts_from_a_fresh_base_so_trying_rates_is_safe():
    import nbformat

    from helpers.checks.cells import BEGIN
    from helpers.paths import SOLUTIONS_DIR

    cells = nbformat.read(SOLUTIONS_DIR / "lora_advanced.ipynb", as_version=4).cells
    cell = next(c.source for c in cells if "DPOTrainer(" in c.source and BEGIN in c.source)
    assert cell.split(BEGIN)[0].startswith("dpo_base = fresh_base()")
    assert "model=dpo_base" in cell


def test_dpo_trainer_fails_on_a_base_model(capsys):
    assert_fails(checks.dpo_trainer, capsys, fake_trainer(fresh(), dpo_history(), 12), says="no es un PeftModel")


def test_dpo_trainer_rejects_an_sft_style_history(capsys):
    from types import SimpleNamespace

    sft_like = SimpleNamespace(model=peft("iso"), state=SimpleNamespace(global_step=4, log_history=[{"loss": 1.0}]))
    assert_fails(checks.dpo_trainer, capsys, sft_like, says=["rewards/margins", "SFTTrainer"])


def test_dpo_trainer_is_not_attempted_with_the_todo_stub(tmp_path):
    assert judged(checks.dpo_trainer, tmp_path, trainer=None).status == "sin intentar"


def test_every_advanced_exercise_is_registered():
    from helpers.checks.registry import exercises_for

    assert [e.name for e in exercises_for(checks.NOTEBOOK)] == ["mixed_batch", "cat_combination", "hotswap",
                                                                "dpo_trainer"]


def test_the_notebook_clock_counts_from_the_first_cell():
    """Issue 29: el total de lora_advanced cuenta desde la primera celda (antes de importar), no desde el reloj."""
    import time

    from helpers.advanced import SectionClock

    clock = SectionClock(time.perf_counter() - 30.0, time.process_time())
    clock.start("1. algo")
    total, table = clock.table()
    before = table.loc["preparación (importar, cargar)", "tiempo real"]  # «30,0 s»: lo de antes del reloj
    assert total >= 30.0 and float(before.split()[0].replace(",", ".")) >= 30.0
