"""Evaluar el modelo en la tarea: generación voraz por lotes, exactitud y comparaciones."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .data import answer, phrase

MAX_NEW_TOKENS = 16  # "September 30, 2049" son 10 tokens; el modelo base se enrolla más


@contextlib.contextmanager
def _eval_mode(model, tokenizer):
    """Modo evaluación y relleno a la izquierda mientras dura el bloque."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # generar tras el relleno, no antes
    try:
        with torch.inference_mode():
            yield
    finally:
        tokenizer.padding_side = side
        model.train(was_training)


def _encode(tokenizer, prompts: list[list[dict]], device):
    texts = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False)
    return tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(device)


def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = MAX_NEW_TOKENS,
             batch_size: int = 128, progress: bool = False) -> list[str]:
    """Respuesta voraz (sin muestreo) a cada prompt de chat, por lotes con relleno a la izquierda."""
    answers = []
    batches = range(0, len(prompts), batch_size)
    with _eval_mode(model, tokenizer):
        for start in tqdm(batches, desc="Generando", disable=not progress):
            batch = _encode(tokenizer, prompts[start:start + batch_size], model.device)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            answers += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


@dataclass
class EvalResult:
    """Resultado de evaluar en un conjunto: aciertos exactos y las respuestas."""

    correct: int
    total: int
    inputs: list[str]
    expected: list[str]
    predictions: list[str]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"exactitud {self.accuracy:.1%} ({self.correct}/{self.total})"

    def table(self, n: int = 5, only_errors: bool = False):
        """Tabla (pandas) con entrada, esperado, obtenido y si acierta."""
        import pandas as pd

        rows = [{"entrada": i, "esperado": e, "obtenido": _one_line(p), "✓": "✅" if p == e else "❌"}
                for i, e, p in zip(self.inputs, self.expected, self.predictions)
                if not (only_errors and p == e)]
        return pd.DataFrame(rows[:n])


def _one_line(text: str) -> str:
    """La respuesta en una línea de tabla: cada salto de línea que generó el modelo, como «↵»."""
    return text.replace("\r\n", "↵").replace("\n", "↵")


def exact_match(predictions: list[str], references: list[str]) -> int:
    """Cuántas respuestas coinciden exactamente (tras quitar espacios de los extremos)."""
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))


def evaluate(model, tokenizer, dataset, batch_size: int = 128, progress: bool = True) -> EvalResult:
    """Exactitud (coincidencia exacta) del modelo en un conjunto de la tarea."""
    rows = list(dataset)
    predictions = generate(model, tokenizer, [r["prompt"] for r in rows], batch_size=batch_size,
                           progress=progress)
    expected = [answer(r) for r in rows]
    return EvalResult(exact_match(predictions, expected), len(rows), [phrase(r) for r in rows],
                      expected, predictions)


def logits(model, tokenizer, prompts: list[list[dict]]) -> torch.Tensor:
    """Logits del modelo para un lote de prompts (float32, en CPU), posiciones con relleno incluidas."""
    with _eval_mode(model, tokenizer):
        batch = _encode(tokenizer, prompts, model.device)
        return model(**batch).logits.float().cpu()


def max_logit_diff(model_a, model_b, tokenizer, prompts: list[list[dict]]) -> float:
    """max |Δlogits| entre dos modelos sobre el mismo lote: 0 (o ruido numérico) si son iguales."""
    return (logits(model_a, tokenizer, prompts) - logits(model_b, tokenizer, prompts)).abs().max().item()


def median_latency(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Mediana en segundos de ``repeats`` llamadas a ``fn()`` (tras ``warmup`` de calentamiento)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
