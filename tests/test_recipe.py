"""La receta compartida (helpers.recipe): los objetos de PEFT y TRL que construye y el lote global."""

import pytest

from helpers import recipe


def test_lora_config_is_the_notebook_solution():
    config = recipe.lora_config()
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.0)
    assert config.target_modules == "all-linear"
    assert (config.bias, str(config.task_type)) == ("none", "CAUSAL_LM")
    assert recipe.lora_config(r=4, alpha=4, target_modules=["q_proj"]).target_modules == {"q_proj"}


def test_sft_config_single_process(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = recipe.sft_config(tmp_path, device="cpu")
    assert (args.max_steps, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (40, 8, 1)
    assert (args.learning_rate, str(args.lr_scheduler_type)) == (1e-3, "SchedulerType.CONSTANT")
    assert (args.logging_steps, args.eval_steps, args.per_device_eval_batch_size) == (1, 10, 16)
    assert str(args.save_strategy) in ("no", "SaveStrategy.NO") and args.seed == 0
    assert args.use_cpu and not args.bf16


@pytest.mark.parametrize(("batch", "processes", "accumulation", "expected"),
                         [(8, 1, 1, 8), (8, 2, 1, 4), (8, 2, 2, 2), (16, 4, 1, 4)])
def test_per_device_batch_keeps_the_global_batch(batch, processes, accumulation, expected):
    assert recipe.per_device_batch(batch, processes, accumulation) == expected


def test_global_batch_must_divide(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="múltiplo"):
        recipe.per_device_batch(9, 2)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"3 × 1 = 3"):
        recipe.sft_config(tmp_path, batch=8, device="cpu")
