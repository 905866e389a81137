"""`helpers.notebook`: sin barras de carga ni diccionarios de registro; una barra por entrenamiento;
el aviso de OLoRA explicado en español y sin rutas de la máquina."""

import logging
import warnings

import datasets
import pytest
import transformers
import transformers.trainer
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

from helpers.data import make_splits
from helpers.model import base_model_path, load_tokenizer
from helpers.notebook import explained_warnings, quiet_library_output, short_path
from helpers.training import sft_device_args


@pytest.fixture
def library_state():
    """Deja transformers, datasets y los filtros de avisos como estaban: otras pruebas no heredan nada."""
    training_args_logger = logging.getLogger("transformers.training_args")
    saved = (transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled(),
             datasets.is_progress_bar_enabled(), transformers.trainer.DEFAULT_PROGRESS_CALLBACK,
             training_args_logger.level)
    transformers.logging.set_verbosity_warning()
    transformers.logging.enable_progress_bar()
    datasets.enable_progress_bars()
    try:
        with warnings.catch_warnings():
            yield
    finally:
        verbosity, bar, datasets_bars, transformers.trainer.DEFAULT_PROGRESS_CALLBACK, level = saved
        transformers.logging.set_verbosity(verbosity)
        (transformers.logging.enable_progress_bar if bar else transformers.logging.disable_progress_bar)()
        (datasets.enable_progress_bars if datasets_bars else datasets.disable_progress_bars)()
        training_args_logger.setLevel(level)


def load_lora_model():
    model = AutoModelForCausalLM.from_pretrained(base_model_path())
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM"))


def test_loading_bars_and_checkpointing_warning_go_away(capfd, library_state):
    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        load_lora_model()
    assert "Loading weights" in capfd.readouterr().err  # sin la función, la barra sale
    assert any("is_gradient_checkpointing" in str(w.message) for w in before)

    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        quiet_library_output()
        load_lora_model()
    assert capfd.readouterr().err == ""
    assert not any("is_gradient_checkpointing" in str(w.message) for w in after)


def tiny_training(output_dir):
    """Un `SFTTrainer` de verdad sobre un Llama diminuto y aleatorio: 2 pasos y una validación."""
    tokenizer = load_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    splits = make_splits("iso", sizes={"train": 4, "validation": 2, "test": 1})
    args = SFTConfig(output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
                     eval_strategy="steps", eval_steps=2, save_strategy="no", **sft_device_args("cpu"))
    SFTTrainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"],
               processing_class=tokenizer).train()


def frames(text):
    """Lo que queda a la vista de una salida con retornos de carro: cada línea, en su último estado."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]


def test_training_shows_one_bar_and_no_log_lines(capfd, library_state, tmp_path):
    tiny_training(tmp_path / "antes")
    before = capfd.readouterr()
    assert "{'loss': " in before.out and "Tokenizing train dataset" in before.err  # el ruido que quitamos

    quiet_library_output()
    tiny_training(tmp_path / "despues")
    after = capfd.readouterr()
    assert after.err == ""
    [bar] = frames(after.out)
    assert bar.startswith("Entrenando: 100%") and "2/2 pasos" in bar
    assert "pérdida " in bar and "validación " in bar and "'" not in bar


def test_olora_warning_is_explained_in_spanish_without_machine_paths(capsys):
    with explained_warnings():
        warnings.warn_explicit("OLoRA changes the base weights of the model and should thus not be used with "
                               "other adapters. Consider converting...", UserWarning,
                               "/home/ana/curso/.venv/lib/python3.11/site-packages/peft/peft_model.py", 1415)
    out = capsys.readouterr().out
    assert "path_initial_model_for_weight_conversion" in out and "peft/peft_model.py" in out
    assert "/home/ana" not in out and ".venv" not in out


def test_other_warnings_pass_through_with_short_paths():
    with pytest.warns(UserWarning, match="otra cosa") as caught, explained_warnings():
        warnings.warn_explicit("otra cosa", UserWarning, "/x/.venv/lib/python3.11/site-packages/trl/a.py", 7)
    assert [(w.filename, w.lineno) for w in caught] == [("trl/a.py", 7)]
    assert short_path("/somewhere/else/file.py") == "file.py"
