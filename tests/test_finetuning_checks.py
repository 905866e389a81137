"""Comprobaciones del cuaderno lora_finetuning.

Cada comprobación pasa con los objetos reales de la solución (entrenados de verdad, con presupuestos
diminutos), falla con su mensaje concreto ante respuestas fabricadas y errores realistas, y la corrección
(``handover.write`` + ``judge`` en este proceso, con fechas ocultas) da el mismo veredicto. Lo que entrena
el adaptador principal entero (minutos) y lo que ejecuta el cuaderno va marcado `slow`.
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, PeftModel
from transformers import TextGenerationPipeline, pipeline
from trl import SFTConfig, SFTTrainer

from helpers.build_adapters import adapter_dir
from helpers.checks import core, handover, registry
from helpers.checks import finetuning as checks
from helpers.data import answer, make_splits
from helpers.evaluation import EvalResult, evaluate
from helpers.model import load_base_model, load_tokenizer
from helpers.training import score_only_labelled_tokens, sft_device_args

HIDDEN_SEED = 7


@pytest.fixture
def shown(monkeypatch):
    """Lo que las comprobaciones muestran: una lista de paquetes MIME."""
    bundles = []
    monkeypatch.setattr(core, "_show", bundles.append)
    return bundles


def passes(shown, check, *args) -> str:
    assert check(*args) is True, shown[-1]["text/plain"]
    text = shown[-1]["text/plain"]
    assert "✅" in text
    return text


def fails(shown, check, *args, message: str) -> None:
    assert check(*args) is False, shown[-1]["text/plain"]
    text = shown[-1]["text/plain"]
    assert "❌" in text and message in text, text
    assert "saltó un error" not in text, f"un error inesperado en vez del mensaje: {text}"


def not_attempted(shown, check, *args) -> None:
    """Los stubs del cuaderno de ejercicios (todo None): ⏳, no ❌."""
    assert check(*args) is False
    assert "⏳" in shown[-1]["text/plain"]


def judged(check, tmp_path, **arguments):
    """El veredicto de la corrección: entrega los objetos como datos y los juzga con fechas ocultas."""
    handover.write(check.info.name, arguments, check.handover, tmp_path)
    return check.judge(tmp_path, HIDDEN_SEED)


def fresh():
    return load_base_model("cpu")[0]


@pytest.fixture(scope="module")
def tiny_splits():
    return make_splits("iso", sizes={"train": 16, "validation": 4, "test": 4})


def tiny_trainer(folder, splits, peft_config=None, model=None, steps=2, lr=1e-3):
    """Un SFTTrainer de verdad sobre un modelo recién cargado (sin entrenar: llama a ``.train()``)."""
    args = SFTConfig(output_dir=str(folder), max_steps=steps, per_device_train_batch_size=2, learning_rate=lr,
                     lr_scheduler_type="constant", save_strategy="no", disable_tqdm=True, seed=0,
                     **sft_device_args("cpu"))
    return SFTTrainer(model=model or fresh(), args=args, train_dataset=splits["train"],
                      processing_class=load_tokenizer(), peft_config=peft_config)


def good_config(**changes):
    kwargs = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
              "bias": "none", "task_type": "CAUSAL_LM"}
    return LoraConfig(**{**kwargs, **changes})


def result(correct: int, total: int) -> EvalResult:
    return EvalResult(correct, total, ["viernes 5 de marzo de 2021"] * total, ["2021-03-05"] * total,
                      ["2021-03-05"] * total)


# --- 🐢 lora_config ------------------------------------------------------------------------------------


def test_untouched_exercises_are_not_attempted(shown):
    not_attempted(shown, checks.lora_config, None)
    not_attempted(shown, checks.rank_sweep, None)
    not_attempted(shown, checks.full_finetuning, None, None)
    not_attempted(shown, checks.merge_and_save, None, None, None)


def test_lora_config_passes(shown, base):
    model, _ = base
    assert "r=8, lora_alpha=16" in passes(shown, checks.lora_config, good_config(), model)
    passes(shown, checks.lora_config, good_config(target_modules="all-linear"), model)
    passes(shown, checks.lora_config, good_config(target_modules=r".*\.(q|v)_proj"), model)
    passes(shown, checks.lora_config, good_config())  # sin modelo: la arquitectura del curso


@pytest.mark.parametrize(
    "answer, message",
    [
        ({"r": 8, "task_type": "CAUSAL_LM"}, "Esperaba una `LoraConfig` de PEFT y recibí un dict"),
        (good_config(r=0), "El rango `r=0` no vale"),
        (good_config(r=1024), "`r=1024` es enorme"),
        (good_config(task_type="SEQ_CLS"), "`task_type` es 'SEQ_CLS'"),
        (good_config(task_type=None), "`task_type` es None"),
        (good_config(lora_alpha=0), "`lora_alpha=0`"),
        (good_config(lora_dropout=0.9), "`lora_dropout=0.9`"),
        (good_config(target_modules=["query", "value"]), "no existen en el modelo: 'query', 'value'"),
        (good_config(target_modules=["q_proj", "c_attn"]), "no existen en el modelo: 'c_attn'"),
        (good_config(target_modules=["self_attn", "mlp"]), "'mlp', 'self_attn': son bloques"),
    ],
)
def test_lora_config_fails_with_its_message(shown, base, answer, message):
    fails(shown, checks.lora_config, answer, base[0], message=message)


def test_lora_config_is_judged_without_the_model(tmp_path):
    """En la corrección no llega `model`: los módulos se buscan en la arquitectura del curso."""
    assert judged(checks.lora_config, tmp_path, config=good_config(target_modules="all-linear")).passed
    outcome = judged(checks.lora_config, tmp_path, config=good_config(target_modules=["c_attn"]))
    assert not outcome.passed and "'c_attn'" in outcome.message


# --- objetos entrenados de verdad, con presupuestos diminutos -------------------------------------------


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory, tiny_splits):
    """Tres trainers LoRA (r = 2, 4, 8) entrenados 2 pasos con el mismo presupuesto, como el barrido."""
    score_only_labelled_tokens()
    root = tmp_path_factory.mktemp("barrido")
    sweep = {}
    for r in (2, 4, 8):
        sweep[r] = tiny_trainer(root / f"rango_{r}", tiny_splits, good_config(r=r, lora_alpha=2 * r))
        sweep[r].train()
    return sweep


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, tiny_splits):
    """Un SFTTrainer con LoRA sin entrenar: sus adaptadores empiezan siendo la identidad (B = 0)."""
    return tiny_trainer(tmp_path_factory.mktemp("sin_entrenar"), tiny_splits, good_config())


# --- 🐢 sft_trainer ------------------------------------------------------------------------------------


def test_sft_trainer_fails_without_a_trainer(shown):
    not_attempted(shown, checks.sft_trainer, None, None)
    fails(shown, checks.sft_trainer, SimpleNamespace(model=None), result(120, 120), message="no es un trainer")
    fails(shown, checks.sft_trainer, {"accuracy": 0.95}, None, message="no es un trainer (recibí un dict)")


def test_sft_trainer_fails_without_peft_config(shown, tmp_path, tiny_splits):
    trainer = tiny_trainer(tmp_path, tiny_splits, peft_config=None)
    fails(shown, checks.sft_trainer, trainer, result(120, 120), message="no tiene adaptadores LoRA")


def test_sft_trainer_fails_when_not_trained(shown, untrained, monkeypatch):
    assert untrained.state.global_step == 0
    fails(shown, checks.sft_trainer, untrained, result(120, 120), message="todavía no ha entrenado")
    monkeypatch.setattr(untrained.state, "global_step", 5)  # «ha dado pasos», pero B sigue a cero
    fails(shown, checks.sft_trainer, untrained, result(120, 120), message="siguen a cero")


def test_sft_trainer_rejects_a_shipped_adapter_presented_as_trained(shown, tiny_splits, tmp_path):
    shipped = PeftModel.from_pretrained(fresh(), adapter_dir("iso"), is_trainable=True)
    trainer = tiny_trainer(tmp_path, tiny_splits, model=shipped)
    trainer.state.global_step = 40
    fails(shown, checks.sft_trainer, trainer, result(112, 120), message="es el publicado en `adapters/iso`")


def test_sft_trainer_judges_by_what_the_adapter_does(shown, small_sweep, tmp_path):
    """Dos pasos no bastan: la evaluación que «dice» 120/120 no cuenta, cuenta lo que el modelo responde."""
    fails(shown, checks.sft_trainer, small_sweep[8], result(120, 120), message="hace falta al menos 24 de 32")
    outcome = judged(checks.sft_trainer, tmp_path, trainer=small_sweep[8])
    assert not outcome.passed and "hace falta al menos 24 de 32" in outcome.message


# --- 🐕 rank_sweep -------------------------------------------------------------------------------------


def hand_written(r, **changes):
    return {"trainable": 305_280 * r, "eval_loss": 0.1, "accuracy": 0.7, "steps": 8, **changes}


def test_rank_sweep_passes_on_the_trained_trainers(shown, small_sweep, tmp_path):
    text = passes(shown, checks.rank_sweep, small_sweep)
    assert "3 rangos entrenados con el mismo presupuesto (2 pasos)" in text and "r=8: 460\u00a0800 parámetros" in text
    assert judged(checks.rank_sweep, tmp_path, sweep=small_sweep).passed


def test_rank_sweep_rejects_hand_written_results(shown, tmp_path):
    fake = {r: hand_written(r) for r in (2, 8, 32)}
    fails(shown, checks.rank_sweep, fake, message="`sweep[2]` es un dict, no un trainer")
    assert not judged(checks.rank_sweep, tmp_path, sweep=fake).passed


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: list(s.values()), "Esperaba un diccionario {rango: trainer} y recibí un list"),
        (lambda s: {2: s[2], 8: s[8]}, "Solo hay 2 rango(s)"),
        (lambda s: {2: s[8], 4: s[4], 8: s[2]}, "El adaptador de `sweep[2]` tiene rango [8]"),
        (lambda s: {"r2": s[2], "r4": s[4], "r8": s[8]}, "Las claves deben ser los rangos"),
    ],
)
def test_rank_sweep_fails_with_its_message(shown, small_sweep, make, message):
    fails(shown, checks.rank_sweep, make(small_sweep), message=message)


def test_rank_sweep_fails_with_an_untrained_rank_or_another_budget(shown, small_sweep, untrained, monkeypatch):
    fails(shown, checks.rank_sweep, {**small_sweep, 8: untrained}, message="`sweep[8]` no ha entrenado")
    monkeypatch.setattr(small_sweep[4].args, "max_steps", 30)
    fails(shown, checks.rank_sweep, small_sweep, message="No todos los rangos tienen el mismo presupuesto")


# --- 🐕 full_finetuning --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_trainer(tmp_path_factory, tiny_splits):
    """Ajuste completo, 2 pasos: el mismo presupuesto que ``small_sweep`` y una tasa baja."""
    trainer = tiny_trainer(tmp_path_factory.mktemp("completo"), tiny_splits, lr=5e-5)
    trainer.train()
    return trainer


def test_full_finetuning_passes_on_the_two_trainers(shown, full_trainer, small_sweep, tmp_path):
    text = passes(shown, checks.full_finetuning, full_trainer, small_sweep[8])
    assert "134\u00a0515\u00a0008 parámetros" in text and "fechas nuevas" in text
    assert judged(checks.full_finetuning, tmp_path, full=full_trainer, lora=small_sweep[8]).passed


def test_full_finetuning_rejects_hand_written_results(shown, tmp_path):
    full = {"trainable": 134_515_008, "accuracy": 0.66, "peak_bytes": 3.5e9, "seconds_per_step": 1.7,
            "disk_bytes": 538_090_408, "steps": 8}
    lora = {**full, "trainable": 2_442_240, "disk_bytes": 9_786_120}
    fails(shown, checks.full_finetuning, full, lora, message="El primer argumento es un dict, no un trainer")
    assert not judged(checks.full_finetuning, tmp_path, full=full, lora=lora).passed


def test_full_finetuning_fails_with_its_message(shown, full_trainer, small_sweep, untrained, tiny_splits,
                                                tmp_path, monkeypatch):
    lora = small_sweep[8]
    fails(shown, checks.full_finetuning, lora, lora, message="El ajuste completo tiene adaptador LoRA")
    fails(shown, checks.full_finetuning, full_trainer, full_trainer, message="la referencia LoRA no tiene")
    fails(shown, checks.full_finetuning, full_trainer, untrained, message="la referencia LoRA todavía no ha")
    not_trained = tiny_trainer(tmp_path, tiny_splits)
    fails(shown, checks.full_finetuning, not_trained, lora, message="El ajuste completo todavía no ha entrenado")
    monkeypatch.setattr(lora.args, "per_device_train_batch_size", 8)
    fails(shown, checks.full_finetuning, full_trainer, lora, message="Presupuestos distintos")


# --- 🦁 olora ------------------------------------------------------------------------------------------


def _pretend_training(model, seed=0):
    """Mueve los pesos del adaptador como lo haría el entrenamiento (sin entrenar: es una prueba rápida)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(0.02 * torch.randn(param.shape, generator=gen))


@pytest.fixture(scope="module")
def olora_setup(tmp_path_factory, tiny_splits):
    """Un trainer OLoRA «entrenado» y las carpetas buena y equivocadas."""
    root = tmp_path_factory.mktemp("olora")
    trainer = tiny_trainer(root / "run", tiny_splits, good_config(init_lora_weights="olora"))
    model = trainer.model
    model.save_pretrained(root / "inicial")  # antes de entrenar
    _pretend_training(model)
    trainer.state.global_step = 3
    model.save_pretrained(root / "convertido", path_initial_model_for_weight_conversion=str(root / "inicial"))
    model.save_pretrained(root / "sin_convertir")
    model.save_pretrained(root / "inicial_tarde")  # el inicial, guardado DESPUÉS de entrenar: mal
    model.save_pretrained(root / "mal_convertido",
                          path_initial_model_for_weight_conversion=str(root / "inicial_tarde"))
    return trainer, root


def test_olora_passes(shown, olora_setup, tmp_path):
    trainer, root = olora_setup
    assert "2·8" in passes(shown, checks.olora, trainer, root / "convertido")
    assert judged(checks.olora, tmp_path, trainer=trainer, converted_dir=root / "convertido").passed


def test_olora_fails_with_its_message(shown, olora_setup, small_sweep, tmp_path):
    trainer, root = olora_setup
    fails(shown, checks.olora, None, root / "convertido", message="Todavía no hay trainer de OLoRA")
    not_attempted(shown, checks.olora, None, None)
    fails(shown, checks.olora, small_sweep[8], root / "convertido", message="empezó con `init_lora_weights=True`")
    fails(shown, checks.olora, trainer, None, message="Falta la carpeta del adaptador convertido")
    fails(shown, checks.olora, trainer, tmp_path / "no_existe", message="no existe")
    fails(shown, checks.olora, trainer, tmp_path, message="no hay un adaptador")
    fails(shown, checks.olora, trainer, root / "sin_convertir", message="Guardaste el adaptador sin convertir")
    fails(shown, checks.olora, trainer, root / "inicial", message="tiene r=8; la conversión de PEFT lo deja en")
    fails(shown, checks.olora, trainer, root / "mal_convertido", message="no calcula lo mismo que el modelo")
    outcome = judged(checks.olora, tmp_path / "corrección", trainer=trainer, converted_dir=root / "mal_convertido")
    assert not outcome.passed


def test_olora_fails_when_not_trained(shown, tmp_path, tiny_splits):
    trainer = tiny_trainer(tmp_path, tiny_splits, good_config(init_lora_weights="olora"))
    fails(shown, checks.olora, trainer, tmp_path, message="todavía no ha entrenado")


# --- 🐕 merge_and_save ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def merge_setup(small_sweep, tmp_path_factory):
    """El adaptador entrenado de ``small_sweep[8]``, su fusión y varias carpetas guardadas."""
    root = tmp_path_factory.mktemp("fusion")
    tok = load_tokenizer()
    trainer = small_sweep[8]
    trainer.model.save_pretrained(root / "adaptador")
    merged = PeftModel.from_pretrained(fresh(), root / "adaptador").merge_and_unload()
    merged.save_pretrained(root / "fusionado")
    tok.save_pretrained(root / "fusionado")
    (root / "sin_tokenizador").mkdir()
    for name in ("config.json", "model.safetensors"):
        os.link(root / "fusionado" / name, root / "sin_tokenizador" / name)
    base = fresh()
    base.save_pretrained(root / "base")  # guardó el modelo base, no el fusionado
    tok.save_pretrained(root / "base")
    return SimpleNamespace(root=root, trainer=trainer, merged=merged)


def test_merge_and_save_passes(shown, merge_setup, tmp_path):
    s = merge_setup
    assert "tras recargar" in passes(shown, checks.merge_and_save, s.merged, s.trainer, s.root / "fusionado")
    assert judged(checks.merge_and_save, tmp_path, merged=s.merged, adapter_trainer=s.trainer,
                  merged_dir=s.root / "fusionado").passed


def test_merge_and_save_fails_with_its_message(shown, merge_setup, untrained, tmp_path):
    s = merge_setup
    fusionado = s.root / "fusionado"
    fails(shown, checks.merge_and_save, None, s.trainer, fusionado, message="Todavía no hay modelo fusionado")
    fails(shown, checks.merge_and_save, s.trainer.model, s.trainer, fusionado, message="aún tiene capas LoRA")
    fails(shown, checks.merge_and_save, s.merged, s.merged, fusionado, message="El segundo argumento debe ser")
    fails(shown, checks.merge_and_save, s.merged, untrained, fusionado, message="sigue a cero")
    fails(shown, checks.merge_and_save, s.merged, s.trainer, tmp_path / "no_existe", message="no existe")
    fails(shown, checks.merge_and_save, s.merged, s.trainer, tmp_path, message="no hay un modelo guardado")
    fails(shown, checks.merge_and_save, s.merged, s.trainer, s.root / "sin_tokenizador",
          message="falta el tokenizador")
    fails(shown, checks.merge_and_save, s.merged, s.trainer, s.root / "base", message="El modelo recargado")


def test_merge_and_save_measures_instead_of_trusting(shown, merge_setup, tmp_path):
    """`unload()` quita el adaptador sin sumarlo; el modelo base tal cual tampoco es la fusión."""
    s = merge_setup
    unloaded = PeftModel.from_pretrained(fresh(), s.root / "adaptador").unload()
    fails(shown, checks.merge_and_save, unloaded, s.trainer, s.root / "fusionado", message="¿usaste `unload()`")
    outcome = judged(checks.merge_and_save, tmp_path, merged=fresh(), adapter_trainer=s.trainer,
                     merged_dir=s.root / "base")
    assert not outcome.passed and "no calcula lo mismo" in outcome.message


# --- 🐕 pipeline_inference -----------------------------------------------------------------------------


class LookUpPipeline(TextGenerationPipeline):
    """Un pipeline que no pregunta al modelo: busca la respuesta en las fechas de prueba."""

    def __call__(self, messages, **kwargs):
        table = {row["prompt"][-1]["content"]: answer(row) for row in make_splits("iso")["test"]}
        reply = table.get(messages[-1]["content"], "")
        return [{"generated_text": [*messages, {"role": "assistant", "content": reply}]}]


def test_pipeline_inference_fails_with_its_message(shown, base, tmp_path):
    model, tok = base
    not_attempted(shown, checks.pipeline_inference, None)
    fails(shown, checks.pipeline_inference, model, message="Esperaba un pipeline de transformers")
    base_pipe = pipeline("text-generation", model=model, tokenizer=tok)
    fails(shown, checks.pipeline_inference, base_pipe, message="El pipeline falla 8 de 8 fechas")
    assert not judged(checks.pipeline_inference, tmp_path, pipe=base_pipe).passed


def test_pipeline_inference_rejects_a_look_up_pipeline(shown, base):
    model, tok = base
    fake = LookUpPipeline(model=model, tokenizer=tok, task="text-generation")  # se hace pasar por uno de verdad
    fails(shown, checks.pipeline_inference, fake, message="responde distinto que su propio modelo")


# --- las pistas hablan del cuaderno --------------------------------------------------------------------


def _called_names(hint: str) -> set[str]:
    """Las funciones y clases que una pista manda llamar: ``nombre(`` dentro de `código` (no métodos)."""
    code = " ".join(re.findall(r"`([^`]+)`", hint))
    return set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)\(", code))


def test_every_name_a_hint_calls_exists_in_the_notebook():
    import builtins

    import nbformat
    from peft import PeftModel
    from peft.tuners.lora import LoraModel
    from trl import SFTTrainer

    from helpers.exercise_notebooks import NOTEBOOKS_DIR

    notebook = "\n".join(c.source for c in nbformat.read(NOTEBOOKS_DIR / "lora_finetuning.ipynb", as_version=4).cells
                         if c.cell_type == "code")
    for info in registry.exercises_for("lora_finetuning"):
        hint = getattr(checks, info.name)._hint
        for name in _called_names(hint):
            method = any(hasattr(cls, name) for cls in (PeftModel, LoraModel, SFTTrainer))  # `merge_and_unload()`
            known = method or hasattr(builtins, name) or re.search(rf"(?:def |import [\w, ]*|, ){name}\b", notebook) \
                or re.search(rf"^\s*{name} = None", notebook, re.MULTILINE)  # lo que el TODO pide crear
            assert known, f"La pista de {info.name} manda llamar {name}(...), que el cuaderno no define ni importa"


def test_the_hint_checker_notices_a_name_that_does_not_exist():
    assert "run" in _called_names("entrena con `run(...)` y guarda `sweep[r] = run(...)`")
    assert "save_pretrained" not in _called_names("`trainer.model.save_pretrained(init_dir)`")
# --- con el adaptador principal entrenado de verdad (lento) --------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """El entrenamiento principal del cuaderno (minutos en CPU): trainer, evaluación y adaptador guardado."""
    from helpers import recipe

    splits = make_splits("iso")
    root = tmp_path_factory.mktemp("entrenado")
    score_only_labelled_tokens()  # como el cuaderno
    tok = load_tokenizer()
    trainer = SFTTrainer(model=fresh(), args=recipe.sft_config(root, eval_every=None, disable_tqdm=True,
                                                               device="cpu"),
                         train_dataset=splits["train"], processing_class=tok,
                         peft_config=recipe.lora_config())
    trainer.train()
    trainer.model.save_pretrained(root / "adaptador")
    after = evaluate(trainer.model, tok, splits["test"], progress=False)
    return SimpleNamespace(trainer=trainer, after=after, adapter_dir=root / "adaptador", tok=tok)


@pytest.mark.slow
def test_sft_trainer_passes_on_a_trained_adapter(shown, trained, tmp_path):
    text = passes(shown, checks.sft_trainer, trained.trainer, trained.after)
    assert "fechas que no había visto" in text and "Tu evaluación (`after`)" in text
    assert judged(checks.sft_trainer, tmp_path, trainer=trained.trainer).passed


@pytest.mark.slow
def test_pipeline_inference_passes_with_the_saved_adapter(shown, trained, tmp_path):
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(trained.adapter_dir))
    pipe = pipeline("text-generation", model=model, tokenizer=trained.tok)
    assert "de 8 fechas nuevas" in passes(shown, checks.pipeline_inference, pipe)
    assert judged(checks.pipeline_inference, tmp_path, pipe=pipe).passed
