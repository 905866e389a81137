"""Casos de la matriz de amenazas para ``lora_advanced`` (forma: ``tests/checks/test_threat_matrix.py``).

Un caso por cada propiedad que la tabla «Qué certifica cada punto» del README afirma de ``mixed_batch``,
``cat_combination``, ``hotswap`` y ``dpo_trainer``. Cada uno parte de lo que entregaría la solución (los
adaptadores publicados bien cargados, un DPO de verdad) y cambia una sola cosa. Las comprobaciones miden en
orden y cada propiedad tiene su mensaje: verlo en el veredicto dice que todo lo anterior pasó y que el juez
rechazó por esa propiedad. Los objetos caros se construyen una vez por sesión (``functools.cache``) y no se
modifican: cada caso que cambia algo trabaja sobre una copia.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tests.checks.test_threat_matrix import Case

NOTEBOOK = "lora_advanced"
NAMES = ["iso", "us", "en", "__base__"]


# --- objetos honestos, compartidos ----------------------------------------------------------------------


@functools.cache
def _tokenizer():
    from helpers.model import load_tokenizer

    return load_tokenizer()


def _fresh():
    from helpers.model import load_base_model

    return load_base_model("cpu")[0]


def _peft(*formats, name=None, base=None):
    from peft import PeftModel

    from helpers.shipped import adapter_dir

    model = PeftModel.from_pretrained(base if base is not None else _fresh(), str(adapter_dir(formats[0])),
                                      adapter_name=name or formats[0])
    for fmt in formats[1:]:
        model.load_adapter(str(adapter_dir(fmt)), adapter_name=fmt)
    return model


def _broken_base():
    """El modelo base con la norma final cambiada de signo: los adaptadores siguen intactos, las respuestas no."""
    import torch

    model = _fresh()
    with torch.no_grad():
        model.model.norm.weight.neg_()
    return model


@functools.cache
def _prompts() -> list:
    from helpers.data import make_splits

    return [row["prompt"] for row in make_splits("iso")["test"].select(range(len(NAMES)))]


def _mixed(model=None, names=NAMES, answers=None) -> dict:
    """Lo que entrega la celda de ``mixed_batch``; las respuestas, las de cada adaptador por separado."""
    from helpers.checks.advanced import _single_answers

    model = model if model is not None else _peft("iso", "us", "en")
    if answers is None:
        answers = _single_answers(model, _tokenizer(), _prompts(), list(names))
    return {"model": model, "prompts": _prompts(), "names": list(names), "answers": answers}


@functools.cache
def _combined():
    """iso, us y en, con las combinaciones de la sección 3 (cat, linear y svd con pesos 1 y 1, y la media)."""
    from helpers.advanced import single_thread

    model = _peft("iso", "us", "en")
    with single_thread():
        for kind in ("cat", "linear", "svd"):
            model.add_weighted_adapter(["iso", "us"], [1.0, 1.0], f"iso_us_{kind}", combination_type=kind)
    model.add_weighted_adapter(["iso", "us"], [0.5, 0.5], "media", combination_type="cat")
    model.set_adapter("iso")
    return model


def _swap(target_rank=16, swap="us", base=None, extra=None):
    """iso en "default", preparado con ``target_rank`` (None: sin preparar) y ``swap`` puesto en caliente."""
    from peft.utils.hotswap import hotswap_adapter, prepare_model_for_compiled_hotswap

    from helpers.shipped import adapter_dir

    model = _peft("iso", name="default", base=base)
    if target_rank is not None:
        prepare_model_for_compiled_hotswap(model, target_rank=target_rank)
    if swap:
        hotswap_adapter(model, str(adapter_dir(swap)), adapter_name="default")
    if extra:
        model.load_adapter(str(adapter_dir(extra)), adapter_name=extra)
    return {"model": model}


def _rank16_in_slot(work: Path) -> dict:
    from peft.utils.hotswap import hotswap_adapter

    model = _swap(swap=None)["model"]
    _combined().save_pretrained(work, selected_adapters=["iso_us_cat"], save_embedding_layers=False)
    hotswap_adapter(model, str(work / "iso_us_cat"), adapter_name="default")
    return {"model": model}


@functools.cache
def _dpo_pairs():
    """16 pares como los del cuaderno: elegida la fecha con puntos, rechazada lo que dice el base."""
    from helpers.advanced import preference_pairs
    from helpers.data import TRAINED_FORMAT, make_splits
    from helpers.evaluation import generate

    rows = make_splits(TRAINED_FORMAT)["train"].select(range(16))
    return preference_pairs(rows, rejected=generate(_fresh(), _tokenizer(), [r["prompt"] for r in rows]))


@functools.cache
def _dpo(lr: float, steps: int):
    """Un DPOTrainer de verdad (LoRA, sin ref_model, lotes de 4 pares, tasa constante)."""
    import tempfile

    from tests.checks.test_advanced import dpo

    return dpo(_dpo_pairs(), _tokenizer(), Path(tempfile.mkdtemp(prefix="amenazas_dpo_")), lr=lr, steps=steps)


def _claims(trainer=None, model=None, history=None, steps=None, ref_model=None) -> dict:
    """Un trainer con la forma que entrega el cuaderno: modelo, historial y contador del optimizador."""
    from helpers.checks import handover
    from tests.checks.test_advanced import fake_trainer

    trainer = trainer if trainer is not None else _dpo(1e-3, 2)
    return {"trainer": fake_trainer(model if model is not None else trainer.model,
                                    history if history is not None else trainer.state.log_history,
                                    steps if steps is not None else handover.optimizer_steps(trainer), ref_model)}


def _untrained_lora():
    """Un LoRA recién creado (B = 0): exactamente el modelo base, así que no prefiere nada."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(_fresh(), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                               task_type="CAUSAL_LM"))


def _shipped_as_dpo():
    import torch

    model = _peft("iso", name="default")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(1.01)
    return model


def _slower_history():
    return [{**e, "learning_rate": e["learning_rate"] / 100} if "learning_rate" in e else e
            for e in _dpo(1e-3, 2).state.log_history]


def _made_up_history(steps=12, lr=3e-4):
    from tests.checks.test_advanced import dpo_history

    return dpo_history(steps, lr)


def _iso_three_times():
    """iso cargado tres veces, con los nombres iso, us y en: los nombres están, los formatos no."""
    from helpers.shipped import adapter_dir

    model = _peft("iso")
    for name in ("us", "en"):
        model.load_adapter(str(adapter_dir("iso")), adapter_name=name)
    return model


# Una tasa que rompe el modelo dentro del presupuesto: con 10⁻¹ y 12 pasos, las respuestas voraces del cuaderno
# eran todas «................» (issue 29).
BROKEN_LR, BROKEN_STEPS = 1e-1, 12


# --- los casos ------------------------------------------------------------------------------------------


def _case(exercise, prop, build, refusal):
    return Case(notebook=NOTEBOOK, exercise=exercise, property=prop, build=build, refusal=refusal, slow=True)


CASES = [
    # 🐢 mixed_batch
    _case("mixed_batch", "adaptadores publicados",
          lambda work: _mixed(_iso_three_times()),
          "no es el de `adapters/us`"),
    _case("mixed_batch", "tres nombres", lambda work: _mixed(_peft("iso", "us"), answers=_mixed()["answers"]), "Faltan los adaptadores 'en'"),
    _case("mixed_batch", "fila base", lambda work: _mixed(names=["iso", "us", "en", "iso"]), "faltan '__base__'"),
    _case("mixed_batch", "respuestas por separado",
          lambda work: {**_mixed(), "answers": [*_mixed()["answers"][:3], "1999-01-01"]}, "fila 4"),
    _case("mixed_batch", "lote del juez", lambda work: _mixed(_peft("iso", "us", "en", base=_broken_base())),
          "acierta solo"),
    # 🐕 cat_combination
    _case("cat_combination", "existe",
          lambda work: {"model": _combined(), "name": "mezcla", "errors": None}, "ningún adaptador 'mezcla'"),
    _case("cat_combination", "no publicado",
          lambda work: {"model": _combined(), "name": "us", "errors": None}, "es el adaptador us tal cual"),
    _case("cat_combination", "suma exacta: linear",
          lambda work: {"model": _combined(), "name": "iso_us_linear", "errors": {"iso_us_linear": 0.0}},
          "se hizo con `linear`"),
    _case("cat_combination", "suma exacta: svd",
          lambda work: {"model": _combined(), "name": "iso_us_svd", "errors": None}, "es `svd`"),
    _case("cat_combination", "suma exacta: pesos",
          lambda work: {"model": _combined(), "name": "media", "errors": None}, "pesos 0,50 y 0,50"),
    # 🐕 hotswap
    _case("hotswap", "un adaptador", lambda work: _swap(extra="en"), "`load_adapter` añade uno nuevo"),
    _case("hotswap", "cambiado", lambda work: _swap(swap=None), "sigue teniendo los pesos de `adapters/iso`"),
    _case("hotswap", "pesos de us", lambda work: _swap(swap="en"), "`adapters/en`"),
    _case("hotswap", "no el de rango 16", _rank16_in_slot, "ya el adaptador de rango 16"),
    _case("hotswap", "preparado", lambda work: {"model": _peft("us", name="default")}, "no está preparado"),
    _case("hotswap", "cabe el rango 16", lambda work: _swap(target_rank=8), "pasó de 8 a 16 filas"),
    _case("hotswap", "responde us", lambda work: _swap(base=_broken_base()), "acierta solo"),
    # 🦁 dpo_trainer
    _case("dpo_trainer", "sin ref_model", lambda work: _claims(ref_model=_fresh()), "segunda copia"),
    _case("dpo_trainer", "historial de DPO",
          lambda work: _claims(history=[{"step": 1, "learning_rate": 1e-3, "loss": 0.7}]), "rewards/margins"),
    _case("dpo_trainer", "LoRA", lambda work: _claims(model=_fresh()), "no es un PeftModel"),
    _case("dpo_trainer", "entrenado", lambda work: _claims(steps=0), "no ha dado ningún paso"),
    _case("dpo_trainer", "presupuesto", lambda work: _claims(steps=20), "el presupuesto es 12"),
    _case("dpo_trainer", "no publicado",
          lambda work: _claims(model=_shipped_as_dpo(), history=_made_up_history(), steps=12), "adapters/iso"),
    _case("dpo_trainer", "historial compatible", lambda work: _claims(history=_slower_history()), "se movieron"),
    _case("dpo_trainer", "prefiere",
          lambda work: _claims(model=_untrained_lora(), history=_made_up_history(), steps=12), "hace falta al menos"),
    _case("dpo_trainer", "sigue respondiendo", lambda work: _claims(_dpo(BROKEN_LR, BROKEN_STEPS)), "se rompió"),
]


# Lo que afirma la fila de cada ejercicio en «Qué certifica cada punto» (README), propiedad a propiedad.
PROPERTIES = {
    "mixed_batch": ("adaptadores publicados", "tres nombres", "fila base", "respuestas por separado",
                    "lote del juez"),
    "cat_combination": ("existe", "no publicado", "suma exacta: linear", "suma exacta: svd", "suma exacta: pesos"),
    "hotswap": ("un adaptador", "cambiado", "pesos de us", "no el de rango 16", "preparado", "cabe el rango 16",
                "responde us"),
    "dpo_trainer": ("sin ref_model", "historial de DPO", "LoRA", "entrenado", "presupuesto", "no publicado",
                    "historial compatible", "prefiere", "sigue respondiendo"),
}
