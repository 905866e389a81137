"""score_only_labelled_tokens: la cabeza de TRL puntúa solo los tokens con etiqueta, con la misma pérdida."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from trl.kernels import chunked_logprob
from trl.trainer import utils as trl_utils

from helpers.training import score_only_labelled_tokens


def tiny_model_with_fused_head():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # lo que hace SFTTrainer
    return model


def loss_grads_and_scored_positions(monkeypatch):
    """Pérdida, gradientes y posiciones que recibe el kernel, en un lote con prompt y relleno enmascarados."""
    scored = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        scored.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    model = tiny_model_with_fused_head()
    ids = torch.randint(0, 96, (3, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :8] = -100  # el prompt
    labels[2, 10:] = -100  # relleno de la fila más corta
    loss = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return loss.detach(), grads, scored[-1], int((labels[:, 1:] != -100).sum())


def test_same_loss_and_gradients_scoring_only_labelled_tokens(monkeypatch):
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)  # TRL tal cual
    loss_all, grads_all, scored_all, labelled = loss_grads_and_scored_positions(monkeypatch)
    assert scored_all == 3 * 11  # en CPU, TRL puntúa todas las posiciones

    assert score_only_labelled_tokens() is True
    loss_few, grads_few, scored_few, _ = loss_grads_and_scored_positions(monkeypatch)
    assert scored_few == labelled < scored_all
    torch.testing.assert_close(loss_few, loss_all)
    for g_few, g_all in zip(grads_few, grads_all):
        torch.testing.assert_close(g_few, g_all)


def test_calling_twice_wraps_once(monkeypatch):
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)
    assert score_only_labelled_tokens() and score_only_labelled_tokens()
    patched = trl_utils._use_triton
    assert patched(torch.device("cpu")) is True
    meta = torch.device("meta")
    assert patched(meta) is chunked_logprob._use_triton(meta)  # el resto de dispositivos, como TRL
    assert score_only_labelled_tokens() and trl_utils._use_triton is patched


def test_missing_hook_changes_nothing(monkeypatch):
    monkeypatch.delattr(trl_utils, "_use_triton")
    assert score_only_labelled_tokens() is False
    assert not hasattr(trl_utils, "_use_triton")


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_cpu_and_mps_are_switched(monkeypatch, device):
    monkeypatch.setattr(trl_utils, "_use_triton", lambda d: False)
    score_only_labelled_tokens()
    assert trl_utils._use_triton(torch.device(device)) is True
