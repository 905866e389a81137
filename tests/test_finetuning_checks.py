"""Comprobaciones del cuaderno lora_finetuning.

Cada comprobación pasa con la respuesta buena y falla, con su mensaje concreto, ante respuestas
equivocadas realistas. Casi todo usa objetos baratos (configuraciones, resultados pequeños, un
SFTTrainer sin entrenar o adaptadores con pesos aleatorios); lo que entrena de verdad va marcado `slow`.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import pipeline
from trl import SFTConfig, SFTTrainer

from helpers.checks import core
from helpers.checks import finetuning as checks
from helpers.data import make_splits
from helpers.evaluation import EvalResult, evaluate
from helpers.model import load_base_model, load_tokenizer
from helpers.training import score_only_labelled_tokens, sft_device_args

LORA_R8_PER_RANK = 81_408 * 30 // 8  # parámetros entrenables de SmolLM2 con all-linear, por unidad de rango


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


def fresh():
    return load_base_model("cpu")[0]


@pytest.fixture(scope="module")
def tiny_splits():
    return make_splits("iso", sizes={"train": 8, "validation": 4, "test": 4})


def tiny_trainer(folder, splits, peft_config=None, model=None):
    """Un SFTTrainer de verdad sobre un modelo recién cargado, sin entrenar (barato)."""
    args = SFTConfig(
        output_dir=str(folder),
        max_steps=1,
        per_device_train_batch_size=2,
        save_strategy="no",
        disable_tqdm=True,
        **sft_device_args("cpu"),
    )
    return SFTTrainer(
        model=model or fresh(),
        args=args,
        train_dataset=splits["train"],
        processing_class=load_tokenizer(),
        peft_config=peft_config,
    )


def result(correct: int, total: int, predictions=None) -> EvalResult:
    predictions = predictions or ["2021-03-05"] * total
    return EvalResult(
        correct, total, ["viernes 5 de marzo de 2021"] * total, ["2021-03-05"] * total, predictions
    )


# --- 🐢 lora_config ------------------------------------------------------------------------------------


def good_config(**changes):
    kwargs = {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }
    return LoraConfig(**{**kwargs, **changes})


def test_lora_config_passes(shown, base):
    model, _ = base
    assert "r=8, lora_alpha=16" in passes(shown, checks.lora_config, good_config(), model)
    passes(shown, checks.lora_config, good_config(target_modules="all-linear"), model)
    passes(shown, checks.lora_config, good_config(target_modules=r".*\.(q|v)_proj"), model)
    passes(shown, checks.lora_config, good_config())  # sin modelo no mira los nombres


@pytest.mark.parametrize(
    "answer, message",
    [
        (None, "Todavía no hay configuración"),
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


# --- 🐢 sft_trainer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_trainer(tmp_path_factory, tiny_splits):
    """Un SFTTrainer con LoRA, sin entrenar: sus adaptadores empiezan siendo la identidad (B = 0)."""
    return tiny_trainer(
        tmp_path_factory.mktemp("lora"), tiny_splits, good_config(target_modules="all-linear")
    )


@pytest.fixture
def stepped(lora_trainer, monkeypatch):
    """El mismo trainer, como si ya hubiera dado 5 pasos."""
    monkeypatch.setattr(lora_trainer.state, "global_step", 5)
    return lora_trainer


def test_sft_trainer_fails_without_a_trainer(shown):
    fails(shown, checks.sft_trainer, None, None, message="Todavía no hay trainer")
    fails(
        shown,
        checks.sft_trainer,
        SimpleNamespace(model=None),
        result(120, 120),
        message="Esperaba un `SFTTrainer` de TRL y recibí un SimpleNamespace",
    )


def test_sft_trainer_fails_without_peft_config(shown, tmp_path, tiny_splits):
    trainer = tiny_trainer(tmp_path, tiny_splits, peft_config=None)
    fails(shown, checks.sft_trainer, trainer, result(120, 120), message="no tiene adaptadores LoRA")


def test_sft_trainer_fails_when_not_trained(shown, lora_trainer):
    assert lora_trainer.state.global_step == 0
    fails(shown, checks.sft_trainer, lora_trainer, result(120, 120), message="todavía no ha entrenado")


def test_sft_trainer_fails_on_missing_small_or_low_evaluation(shown, stepped):
    fails(shown, checks.sft_trainer, stepped, None, message="Pasa también la evaluación")
    fails(shown, checks.sft_trainer, stepped, result(40, 40), message="Evaluaste 40 ejemplos")
    fails(shown, checks.sft_trainer, stepped, result(60, 120), message="Exactitud 50.0% (60/120)")


def test_sft_trainer_fails_when_the_evaluation_is_not_of_this_model(shown, stepped):
    # 95 % «medido» con otro modelo: el del trainer (sin entrenar) no responde eso.
    fails(shown, checks.sft_trainer, stepped, result(114, 120), message="no son las de `trainer.model`")


# --- 🐕 rank_sweep -------------------------------------------------------------------------------------


def run_result(r, eval_loss=0.1, accuracy=0.5, steps=8, **changes):
    return {
        "trainable": LORA_R8_PER_RANK * r,
        "eval_loss": eval_loss,
        "accuracy": accuracy,
        "steps": steps,
        **changes,
    }


def good_sweep():
    return {2: run_result(2, 0.30, 0.2), 8: run_result(8, 0.12, 0.6), 32: run_result(32, 0.10, 0.7)}


def test_rank_sweep_passes(shown):
    assert "r=32" in passes(shown, checks.rank_sweep, good_sweep())


@pytest.mark.parametrize(
    "answer, message",
    [
        (None, "Todavía no hay resultados"),
        (
            [run_result(2), run_result(8), run_result(32)],
            "Esperaba un diccionario {rango: resultado} y recibí un list",
        ),
        ({8: run_result(8), 16: run_result(16)}, "Solo hay 2 rango(s) ([8, 16])"),
        ({**good_sweep(), 8: run_result(8, eval_loss=None)}, "Al rango 8 le falta 'eval_loss'"),
        (
            {**good_sweep(), 32: run_result(32, accuracy=70)},
            "La exactitud del rango 32 debe estar entre 0 y 1",
        ),
        ({r: run_result(r, trainable=134_515_008) for r in (2, 8, 32)}, "no crecen en proporción al rango"),
        (
            {**good_sweep(), 32: run_result(32, steps=30)},
            "No todos los rangos tienen el mismo presupuesto de pasos",
        ),
    ],
)
def test_rank_sweep_fails_with_its_message(shown, answer, message):
    fails(shown, checks.rank_sweep, answer, message=message)


# --- 🦁 full_finetuning --------------------------------------------------------------------------------


def full_result(**changes):
    return {
        "trainable": 134_515_008,
        "accuracy": 0.4,
        "peak_bytes": 3.1e9,
        "seconds_per_step": 6.0,
        "disk_bytes": 538_090_408,
        "steps": 8,
        **changes,
    }


def lora_result(**changes):
    return {
        "trainable": 2_442_240,
        "accuracy": 0.6,
        "peak_bytes": 2.2e9,
        "seconds_per_step": 3.5,
        "disk_bytes": 9_786_120,
        "steps": 8,
        **changes,
    }


def test_full_finetuning_passes(shown):
    text = passes(shown, checks.full_finetuning, full_result(), lora_result())
    assert "55× más parámetros" in text and "55× más bytes" in text


@pytest.mark.parametrize(
    "full, lora, message",
    [
        (None, lora_result(), "Falta el resultado `full`"),
        (full_result(), None, "Falta el resultado `lora`"),
        (full_result(peak_bytes=None), lora_result(), "A `full` le falta 'peak_bytes'"),
        (full_result(steps=30), lora_result(), "Presupuestos distintos: 30 pasos"),
        (full_result(trainable=2_442_240), lora_result(), "¿Le pasaste `peft_config` también"),
        (full_result(), lora_result(trainable=134_515_008), "casi tantos como el ajuste completo"),
        (full_result(disk_bytes=9_786_120), lora_result(), "¿guardaste el modelo completo"),
        (full_result(seconds_per_step=0), lora_result(), "deben ser mayores que 0"),
    ],
)
def test_full_finetuning_fails_with_its_message(shown, full, lora, message):
    fails(shown, checks.full_finetuning, full, lora, message=message)


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
    model.save_pretrained(
        root / "mal_convertido", path_initial_model_for_weight_conversion=str(root / "inicial_tarde")
    )
    return trainer, root


def test_olora_passes(shown, olora_setup):
    trainer, root = olora_setup
    assert "2·8" in passes(shown, checks.olora, trainer, root / "convertido")


def test_olora_fails_with_its_message(shown, olora_setup, stepped, tmp_path):
    trainer, root = olora_setup
    fails(shown, checks.olora, None, root / "convertido", message="Todavía no hay trainer de OLoRA")
    fails(shown, checks.olora, stepped, root / "convertido", message="empezó con `init_lora_weights=True`")
    fails(shown, checks.olora, trainer, None, message="Falta la carpeta del adaptador convertido")
    fails(shown, checks.olora, trainer, tmp_path / "no_existe", message="no existe")
    fails(shown, checks.olora, trainer, tmp_path, message="no hay un adaptador")
    fails(
        shown, checks.olora, trainer, root / "sin_convertir", message="Guardaste el adaptador sin convertir"
    )
    fails(
        shown, checks.olora, trainer, root / "inicial", message="tiene r=8; la conversión de PEFT lo deja en"
    )
    fails(
        shown,
        checks.olora,
        trainer,
        root / "mal_convertido",
        message="no calcula lo mismo que el modelo entrenado",
    )


def test_olora_fails_when_not_trained(shown, tmp_path, tiny_splits):
    trainer = tiny_trainer(tmp_path, tiny_splits, good_config(init_lora_weights="olora"))
    fails(shown, checks.olora, trainer, tmp_path, message="todavía no ha entrenado")


# --- 🐕 merge_and_save ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def merge_setup(tmp_path_factory):
    """Un adaptador con pesos aleatorios (no es la identidad), su fusión y varias carpetas guardadas."""
    root = tmp_path_factory.mktemp("fusion")
    tok = load_tokenizer()
    adapter_model = get_peft_model(fresh(), good_config(target_modules="all-linear", init_lora_weights=False))
    adapter_model.save_pretrained(root / "adaptador")
    merged = PeftModel.from_pretrained(fresh(), root / "adaptador").merge_and_unload()
    merged.save_pretrained(root / "fusionado")
    tok.save_pretrained(root / "fusionado")
    (root / "sin_tokenizador").mkdir()
    for name in ("config.json", "model.safetensors"):
        os.link(root / "fusionado" / name, root / "sin_tokenizador" / name)
    base = fresh()
    base.save_pretrained(root / "base")  # guardó el modelo base, no el fusionado
    tok.save_pretrained(root / "base")
    return SimpleNamespace(root=root, adapter_model=adapter_model, merged=merged)


def test_merge_and_save_passes(shown, merge_setup):
    s = merge_setup
    assert "tras recargar" in passes(
        shown, checks.merge_and_save, s.merged, s.adapter_model, s.root / "fusionado"
    )


def test_merge_and_save_takes_the_trainer_too(shown, merge_setup, tmp_path):
    """En el cuaderno se pasa `trainer`: sin entrenar (None) es un ❌, no un AttributeError en la celda."""
    from transformers import Trainer, TrainingArguments

    s = merge_setup
    trainer = Trainer(model=s.adapter_model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                    report_to="none"))
    assert "tras recargar" in passes(shown, checks.merge_and_save, s.merged, trainer, s.root / "fusionado")
    fails(shown, checks.merge_and_save, s.merged, None, s.root / "fusionado", message="El segundo argumento")


def test_merge_and_save_fails_with_its_message(shown, merge_setup, tmp_path):
    s = merge_setup
    fails(
        shown,
        checks.merge_and_save,
        None,
        s.adapter_model,
        s.root / "fusionado",
        message="Todavía no hay modelo fusionado",
    )
    fails(
        shown,
        checks.merge_and_save,
        s.adapter_model,
        s.adapter_model,
        s.root / "fusionado",
        message="aún tiene capas LoRA",
    )
    fails(
        shown,
        checks.merge_and_save,
        s.merged,
        s.merged,
        s.root / "fusionado",
        message="fusionaste ese mismo objeto",
    )
    fails(
        shown, checks.merge_and_save, s.merged, s.adapter_model, tmp_path / "no_existe", message="no existe"
    )
    fails(
        shown, checks.merge_and_save, s.merged, s.adapter_model, tmp_path, message="no hay un modelo guardado"
    )
    fails(
        shown,
        checks.merge_and_save,
        s.merged,
        s.adapter_model,
        s.root / "sin_tokenizador",
        message="falta el tokenizador",
    )
    fails(
        shown,
        checks.merge_and_save,
        s.merged,
        s.adapter_model,
        s.root / "base",
        message="El modelo recargado",
    )


def test_merge_and_save_fails_when_unload_dropped_the_adapter(shown, merge_setup):
    s = merge_setup
    unloaded = PeftModel.from_pretrained(fresh(), s.root / "adaptador").unload()
    fails(
        shown,
        checks.merge_and_save,
        unloaded,
        s.adapter_model,
        s.root / "fusionado",
        message="¿usaste `unload()`",
    )


# --- 🐕 pipeline_inference -----------------------------------------------------------------------------


def test_pipeline_inference_fails_with_its_message(shown, base):
    model, tok = base
    fails(shown, checks.pipeline_inference, None, message="Todavía no hay pipeline")
    fails(shown, checks.pipeline_inference, model, message="Esperaba un pipeline de transformers")
    base_pipe = pipeline("text-generation", model=model, tokenizer=tok)
    fails(shown, checks.pipeline_inference, base_pipe, message="El pipeline falla 8 de 8 fechas")


# --- con un adaptador entrenado de verdad (lento) ------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """El entrenamiento principal del cuaderno (minutos en CPU): trainer, evaluación y adaptador guardado."""
    splits = make_splits("iso")
    root = tmp_path_factory.mktemp("entrenado")
    args = SFTConfig(
        output_dir=str(root),
        max_steps=40,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
        **sft_device_args("cpu"),
    )
    tok = load_tokenizer()
    score_only_labelled_tokens()  # como el cuaderno
    trainer = SFTTrainer(
        model=fresh(),
        args=args,
        train_dataset=splits["train"],
        processing_class=tok,
        peft_config=good_config(target_modules="all-linear"),
    )
    trainer.train()
    trainer.model.save_pretrained(root / "adaptador")
    after = evaluate(trainer.model, tok, splits["test"], progress=False)
    return SimpleNamespace(trainer=trainer, after=after, adapter_dir=root / "adaptador", tok=tok)


@pytest.mark.slow
def test_sft_trainer_passes_on_a_trained_adapter(shown, trained):
    assert "fechas que no había visto" in passes(shown, checks.sft_trainer, trained.trainer, trained.after)


@pytest.mark.slow
def test_pipeline_inference_passes_with_the_saved_adapter(shown, trained):
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(trained.adapter_dir))
    pipe = pipeline("text-generation", model=model, tokenizer=trained.tok)
    assert "de 8 fechas de prueba" in passes(shown, checks.pipeline_inference, pipe)
