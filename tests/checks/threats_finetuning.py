"""Casos de la matriz de amenazas para ``lora_finetuning`` (forma: ``tests/checks/test_threat_matrix.py``).

Cada caso parte de un objeto honesto (un entrenamiento de verdad con un presupuesto diminuto, o el
adaptador publicado donde el caso es «no es tuyo») y cambia una sola cosa: la propiedad que viola. Las
comprobaciones miden en orden y cada propiedad tiene su mensaje, así que ver ese mensaje en el veredicto
dice que todo lo anterior pasó y que el juez rechazó por esa propiedad. Los objetos caros se entrenan una
vez por sesión (``functools.cache``); casi todos los casos son lentos (cargan y juzgan modelos).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from types import SimpleNamespace

import torch

from tests.checks.test_threat_matrix import Case

NOTEBOOK = "lora_finetuning"
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


# --- objetos honestos, compartidos ----------------------------------------------------------------------


def _fresh():
    from helpers.model import load_base_model

    return load_base_model("cpu")[0]


def _config(**changes):
    from peft import LoraConfig

    kwargs = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ATTENTION, "bias": "none",
              "task_type": "CAUSAL_LM"}
    return LoraConfig(**{**kwargs, **changes})


@functools.cache
def _root() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="amenazas_finetuning_"))


def _train(name: str, peft_config=None, model=None, steps: int = 2, lr: float = 1e-3, train: bool = True):
    """Un SFTTrainer de verdad con 2 pasos de lote 2 (``output_dir`` = ``name``)."""
    from trl import SFTConfig, SFTTrainer

    from helpers.data import TRAINED_FORMAT, make_splits
    from helpers.model import load_tokenizer
    from helpers.training import score_only_labelled_tokens, sft_device_args

    score_only_labelled_tokens()
    splits = make_splits(TRAINED_FORMAT, sizes={"train": 16, "validation": 4, "test": 4})
    args = SFTConfig(output_dir=str(_root() / name), max_steps=steps, per_device_train_batch_size=2, learning_rate=lr,
                     lr_scheduler_type="constant", logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0,
                     **sft_device_args("cpu"))
    trainer = SFTTrainer(model=model if model is not None else _fresh(), args=args, train_dataset=splits["train"],
                         processing_class=load_tokenizer(), peft_config=copy.deepcopy(peft_config))
    if train:
        trainer.train()
    return trainer


@functools.cache
def _lora(name: str = "referencia", r: int = 8, alpha: float = 16, targets: tuple = tuple(ATTENTION), lr=1e-3):
    modules = "all-linear" if targets == ("all-linear",) else list(targets)  # PEFT solo entiende la cadena
    return _train(name, _config(r=r, lora_alpha=alpha, target_modules=modules), lr=lr)


@functools.cache
def _full():
    return _train("completo", lr=2e-4)


def _claims(trainer, steps=None, model=None, **changes) -> SimpleNamespace:
    """Lo que el proceso del alumno puede escribir de un trainer: su modelo, sus argumentos y su historial."""
    state = copy.deepcopy(trainer.state)
    for key, value in changes.items():
        setattr(state, key, value)
    from helpers.checks.handover import optimizer_steps

    return SimpleNamespace(model=model if model is not None else trainer.model, args=trainer.args, state=state,
                           optimizer_steps=steps if steps is not None else optimizer_steps(trainer))


def _merged_classmate():
    """La fusión de un compañero: un modelo base con el ΔW de un adaptador entrenado sumado."""
    from peft import PeftModel

    folder = _root() / "compañero"
    if not folder.exists():
        _lora().model.save_pretrained(folder)
    return PeftModel.from_pretrained(_fresh(), folder).merge_and_unload()


def _on_top_of(base, seed: int = 0):
    """Un adaptador nuevo sin entrenar (B pequeña y aleatoria, que no es 0) sobre ``base``."""
    from peft import get_peft_model

    model = get_peft_model(base, _config())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(1e-4 * torch.randn(param.shape, generator=generator))
    return model


def _scaled(trainer, a: float = 1.0, b: float = 1.0):
    """El mismo trainer con A × ``a`` y B × ``b`` (ΔW × a·b) en una copia de su modelo."""
    model = copy.deepcopy(trainer.model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_A." in name:
                param.mul_(a)
            elif ".lora_B." in name:
                param.mul_(b)
    return _claims(trainer, model=model)


def _shipped_one_step():
    from peft import PeftModel

    from helpers.shipped import adapter_dir

    return _train("publicado", model=PeftModel.from_pretrained(_fresh(), adapter_dir("iso"), is_trainable=True),
                  steps=1)


def _forged_history(steps: int = 40, lr: float = 1e-3) -> list[dict]:
    return [{"step": s, "loss": 0.1, "learning_rate": lr, "num_tokens": 2000.0 * s} for s in range(1, steps + 1)]


def _olora_on_some_layers():
    """Un LoRA normal con la etiqueta OLoRA y el residuo de OLoRA restado a mano en 1 de cada 15 capas."""
    trainer = _lora()
    return _claims(trainer, model=olora_label_by_hand(trainer.model))


def olora_label_by_hand(model, every: int = 15):
    """Una copia de ``model`` con la etiqueta OLoRA y su trozo inicial (QR, r columnas) restado en 1 de cada ``every``
    capas: la falsificación que pasaba cuando el residuo se miraba siempre en esas capas."""
    from peft.tuners.lora import LoraLayer

    model = copy.deepcopy(model)
    r = model.peft_config["default"].r
    layers = [m for _, m in model.named_modules() if isinstance(m, LoraLayer) and "default" in m.lora_A]
    with torch.no_grad():
        for module in layers[::every]:
            weight = module.get_base_layer().weight
            q, upper = torch.linalg.qr(weight.float())
            weight.sub_(float(module.scaling["default"]) * (q[:, :r] @ upper[:r]))
    model.peft_config["default"].init_lora_weights = "olora"
    return model


def _merged_lora_as_full():
    """Un LoRA fusionado que se hace pasar por ajuste completo: sus tensores, además, rozados en 10⁻⁶."""
    merged = copy.deepcopy(_lora("todas", targets=("all-linear",)).model).merge_and_unload()
    with torch.no_grad():
        for number, (_, param) in enumerate(merged.named_parameters()):
            if number % 2 == 0:
                param.view(-1)[0] += 1e-6
    return _claims(_full(), model=merged)


def _untrained_with_history(work: Path):
    """merge_and_save con un adaptador sin entrenar y un historial inventado de 40 pasos."""
    from peft import PeftModel

    from helpers.model import load_tokenizer

    adapter = _on_top_of(_fresh())
    trainer = _claims(_lora(), model=adapter, steps=40, global_step=40, log_history=_forged_history())
    adapter.save_pretrained(work / "adaptador")
    merged = PeftModel.from_pretrained(_fresh(), work / "adaptador").merge_and_unload()
    merged.save_pretrained(work / "fusionado")
    load_tokenizer().save_pretrained(work / "fusionado")
    return {"merged": merged, "adapter_trainer": trainer, "merged_dir": work / "fusionado"}


def _pipe(model):
    from transformers import pipeline

    from helpers.model import load_tokenizer

    return pipeline("text-generation", model=model, tokenizer=load_tokenizer())


def _drop_rates(folder: Path) -> None:
    """Edita el historial entregado (``entrenador.json``) y quita la tasa de cada paso (no la de los argumentos)."""
    import json

    path = folder / "trainer" / "entrenador.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    for entry in record["state"]["log_history"]:
        entry.pop("learning_rate", None)
    path.write_text(json.dumps(record), encoding="utf-8")


def _restricted():
    """La candidata «todas, r=2» recortada a la atención: otra configuración (r=2 en q, k, v, o), el mismo ΔW allí."""
    from peft import get_peft_model

    trainer = _lora("candidata_0", 2, 4, ("all-linear",))
    model = get_peft_model(_fresh(), _config(r=2, lora_alpha=4))
    source = dict(trainer.model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(source[name])
    return _claims(trainer, model=model)


def _sweep(**changes):
    base = {"referencia": _lora(), "todas, r=2": _lora("candidata_0", 2, 4, ("all-linear",)),
            "atención, r=4": _lora("candidata_1", 4, 8)}
    return {**base, **changes}


# --- la matriz ------------------------------------------------------------------------------------------


def _case(exercise, prop, build, refusal, tamper=None, slow=True):
    return Case(NOTEBOOK, exercise, prop, build, refusal, tamper, slow)


CASES = [
    # sft_trainer
    _case("sft_trainer", "entrenado", lambda w: {"trainer": _train("sin_entrenar", _config(), train=False)},
          "todavía no ha entrenado"),
    _case("sft_trainer", "tasas en el historial", lambda w: {"trainer": _lora()}, "no registra la tasa",
          tamper=_drop_rates),
    _case("sft_trainer", "no publicado", lambda w: {"trainer": _shipped_one_step()}, "el publicado en `adapters/iso`"),
    _case("sft_trainer", "B según sus tasas", lambda w: {"trainer": _scaled(_lora(), b=100.0)},
          "Las matrices B"),
    _case("sft_trainer", "A según sus tasas", lambda w: {"trainer": _scaled(_lora(), a=100.0, b=0.01)},
          "Las matrices A"),
    _case("sft_trainer", "base intacta",
          lambda w: {"trainer": _claims(_lora(), model=_on_top_of(_merged_classmate()))},
          "no tiene los pesos del modelo base del curso"),
    _case("sft_trainer", "acierta", lambda w: {"trainer": _lora()}, "hace falta al menos"),
    # rank_sweep
    _case("rank_sweep", "entrenamientos distintos",
          lambda w: {"sweep": _sweep(**{"otra vez": _lora(), "y otra": _lora()}), "choice": "todas, r=2"},
          "tienen la misma configuración"),
    _case("rank_sweep", "ΔW distintos", lambda w: {"sweep": _sweep(recorte=_restricted()), "choice": "todas, r=2"},
          "el mismo cambio ΔW"),
    _case("rank_sweep", "A según sus tasas",
          lambda w: {"sweep": _sweep(**{"atención, r=4": _scaled(_lora("candidata_1", 4, 8), a=100.0, b=0.01)}),
                     "choice": "todas, r=2"}, "Las matrices A"),
    _case("rank_sweep", "misma escala",
          lambda w: {"sweep": _sweep(**{"atención, r=4": _lora("candidata_2", 4, 16)}), "choice": "todas, r=2"},
          "sin ajustar `lora_alpha`"),
    _case("rank_sweep", "misma tasa",
          lambda w: {"sweep": _sweep(**{"atención, r=4": _lora("candidata_3", 4, 8, lr=2e-3)}), "choice": "todas, r=2"},
          "tasas distintas"),
    _case("rank_sweep", "elección acierta", lambda w: {"sweep": _sweep(), "choice": "todas, r=2"},
          "la meta es al menos"),
    # full_finetuning
    _case("full_finetuning", "sin LoRA", lambda w: {"full": _lora(), "lora": _lora()}, "tiene adaptador LoRA"),
    _case("full_finetuning", "referencia del enunciado",
          lambda w: {"full": _full(), "lora": _lora("candidata_0", 2, 4, ("all-linear",))}, "una de tus candidatas"),
    _case("full_finetuning", "mismos pasos",
          lambda w: {"full": _claims(_full(), steps=3), "lora": _lora()}, "Presupuestos distintos"),
    _case("full_finetuning", "movió todos los pesos", lambda w: {"full": _merged_lora_as_full(), "lora": _lora()},
          "rango"),
    _case("full_finetuning", "aprendió", lambda w: {"full": _full(), "lora": _lora()}, "apenas aprendió"),
    # olora
    _case("olora", "residuo en capas sorteadas", lambda w: {"trainer": _olora_on_some_layers(), "converted_dir": w},
          "los pesos base no llevan restado"),
    # merge_and_save
    _case("merge_and_save", "adaptador que responde", _untrained_with_history, "El adaptador del trainer acierta"),
    # pipeline_inference
    _case("pipeline_inference", "lleva LoRA", lambda w: {"pipe": _pipe(_fresh())}, "no lleva adaptador LoRA"),
    _case("pipeline_inference", "no publicado", lambda w: {"pipe": _pipe(_shipped_one_step().model)},
          "el publicado en `adapters/iso`"),
    _case("pipeline_inference", "base intacta", lambda w: {"pipe": _pipe(_on_top_of(_merged_classmate()))},
          "no tiene los pesos del modelo base del curso"),
]

# Lo que afirman las filas de estos ejercicios en «Qué certifica cada punto» (README), propiedad a propiedad.
PROPERTIES = {
    "sft_trainer": ("entrenado", "tasas en el historial", "no publicado", "B según sus tasas", "A según sus tasas",
                    "base intacta", "acierta"),
    "rank_sweep": ("entrenamientos distintos", "ΔW distintos", "A según sus tasas", "misma escala", "misma tasa",
                   "elección acierta"),
    "full_finetuning": ("sin LoRA", "referencia del enunciado", "mismos pasos", "movió todos los pesos", "aprendió"),
    "olora": ("residuo en capas sorteadas",),
    "merge_and_save": ("adaptador que responde",),
    "pipeline_inference": ("lleva LoRA", "no publicado", "base intacta"),
}
