"""Evaluación: generación por lotes (relleno a la izquierda), exactitud y medidas."""

from types import SimpleNamespace

import pytest
import torch

from helpers.evaluation import EvalResult, exact_match, generate, max_logit_diff
from helpers.model import load_base_model
from helpers.training import loss_history, peak_memory


@pytest.fixture(scope="module")
def base():
    """Un modelo base propio: las pruebas de generación no dependen de lo que otras hicieron al compartido."""
    return load_base_model("cpu")


def test_exact_match_counts_only_exact_answers():
    assert exact_match(["2021-03-05", " 2021-03-05 ", "2021-3-5", "La fecha"], ["2021-03-05"] * 4) == 2


def test_eval_result_accuracy_and_table():
    result = EvalResult(1, 2, ["a", "b"], ["x", "y"], ["x", "z"])
    assert result.accuracy == 0.5 and "50.0%" in str(result)
    table = result.table(only_errors=True)
    assert list(table["obtenido"]) == ["z"]


def test_the_table_shows_generated_line_breaks_on_one_line():
    result = EvalResult(0, 1, ["a"], ["22.03.2005"], ["La fecha de 22 de mar.\n\nLa fecha de"])
    assert list(result.table()["obtenido"]) == ["La fecha de 22 de mar.↵↵La fecha de"]
    assert result.predictions == ["La fecha de 22 de mar.\n\nLa fecha de"]  # lo que se mide no cambia


def test_batched_generation_equals_one_by_one(base, splits):
    model, tok = base
    prompts = [r["prompt"] for r in splits["test"].select(range(4))]
    batched = generate(model, tok, prompts, max_new_tokens=8, batch_size=4)
    single = [generate(model, tok, [p], max_new_tokens=8)[0] for p in prompts]
    assert batched == single
    assert tok.padding_side == "right"  # se restaura


def test_same_model_has_zero_logit_difference(base, splits):
    model, tok = base
    prompts = [r["prompt"] for r in splits["test"].select(range(2))]
    assert max_logit_diff(model, model, tok, prompts) == 0.0


def test_peak_memory_sees_a_big_allocation():
    with peak_memory() as mem:
        block = torch.ones(64, 1024, 1024)  # 256 MiB
        block += 1
    assert mem["peak_bytes"] >= 256 * 2**20


def test_loss_history_reads_the_trainer_log():
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=[
        {"loss": 2.0, "step": 1}, {"eval_loss": 1.5, "step": 1}, {"loss": 1.0, "step": 2}, {"train_runtime": 3.0, "step": 2},
    ]))
    assert loss_history(trainer) == {"train_step": [1, 2], "train_loss": [2.0, 1.0],
                                     "eval_step": [1], "eval_loss": [1.5]}
