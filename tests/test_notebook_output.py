"""`quiet_library_output`: las celdas que nbval compara no deben llevar barras ni avisos que cambian."""

import warnings

import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from helpers.model import base_model_path
from helpers.notebook import quiet_library_output


def test_loading_bars_and_checkpointing_warning_go_away(capfd):
    transformers.logging.enable_progress_bar()
    verbosity = transformers.logging.get_verbosity()
    try:
        with warnings.catch_warnings(record=True) as before:
            warnings.simplefilter("always")
            get_peft_model(AutoModelForCausalLM.from_pretrained(base_model_path()), LoraConfig(task_type="CAUSAL_LM"))
        assert "Loading weights" in capfd.readouterr().err  # sin la función, la barra sale
        assert any("is_gradient_checkpointing" in str(w.message) for w in before)

        with warnings.catch_warnings(record=True) as after:
            warnings.simplefilter("always")
            quiet_library_output()
            get_peft_model(AutoModelForCausalLM.from_pretrained(base_model_path()), LoraConfig(task_type="CAUSAL_LM"))
        assert capfd.readouterr().err == ""
        assert not any("is_gradient_checkpointing" in str(w.message) for w in after)
    finally:
        transformers.logging.enable_progress_bar()
        transformers.logging.set_verbosity(verbosity)
