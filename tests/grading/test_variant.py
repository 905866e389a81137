"""La variante de cada entrega (issue 25, clase 4), de punta a punta con el corrector de verdad.

Quien corrige deriva de la semilla oculta una ficha por entrega (``variant_for``), su kernel la ve en
``CURSO_LORA_VARIANTE`` y el juez la recibe en su pedido. Con ella cambian los adaptadores sin etiqueta y los
fusionados de los compañeros: lo honrado saca todos los puntos; lo copiado de la variante de una compañera,
tres «bien» hechos a mano y una variante reescrita en el propio kernel, ninguno.
"""

import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.colleagues import colleague_draw
from helpers.grading.chain import grade_paths, variant_for
from helpers.grading.release import course_copy
from helpers.grading.sandbox import sandbox_available
from helpers.shipped import VARIANT_ENV, mystery_sources
from tests.suite import complete, only_complete

NOTEBOOK = "load_lora_adapter_example"
SEED = 7
CLASSMATES = [c * 64 for c in "bcdef"]  # fichas de otras entregas: se usa una con otro sorteo que la copiada


def other_variant(variant: str) -> str:
    """Una ficha de compañera cuyos adaptadores sin etiqueta y compañeros son otros que los de ``variant``."""
    stories = {name: one["story"] for name, one in colleague_draw(variant).items()}
    return next(t for t in CLASSMATES if mystery_sources(t) != mystery_sources(variant)
                and {name: one["story"] for name, one in colleague_draw(t).items()} != stories)


def test_the_variant_is_one_way_per_submission_and_reproducible():
    one = variant_for(SEED, Path("entregas/ana.ipynb"))
    assert one == variant_for(SEED, Path("entregas/ana.ipynb")) and len(one) == 64 and int(one, 16) >= 0
    assert one != variant_for(SEED, Path("entregas/bruno.ipynb"))  # otra entrega, otra variante
    assert one != variant_for(SEED + 1, Path("entregas/ana.ipynb"))  # otra semilla, otra variante


def test_the_judge_request_carries_the_variant_and_refuses_a_malformed_one(tmp_path):
    import json

    from helpers.grading.judge import read_request

    request = tmp_path / "pedido.json"
    good = {"entregado": str(tmp_path), "cuaderno": NOTEBOOK, "semilla": SEED, "variante": "c" * 64}
    request.write_text(json.dumps(good))
    assert read_request(request)[3] == "c" * 64
    request.write_text(json.dumps({**good, "variante": None}))
    assert read_request(request)[3] is None
    for bad in ("x" * 64, 7, "c" * 65):
        request.write_text(json.dumps({**good, "variante": bad}))
        with pytest.raises(ValueError, match="forma desconocida"):
            read_request(request)


SETUP = """import os, random
from peft import PeftModel
from transformers import AutoModelForCausalLM
from helpers.checks import adapters as checks
from helpers.colleagues import colleague_merge, colleague_merges
from helpers.data import SHIPPED_FORMATS, answer, make_splits
from helpers.evaluation import exact_match, generate
from helpers.model import base_model_path, load_tokenizer
from helpers.paths import COURSE_ROOT, output_dir
from helpers.shipped import COLLEAGUES, mystery_dirs, using_variant
ADAPTER_DIRS = {f: str(COURSE_ROOT / "adapters" / f) for f in SHIPPED_FORMATS}
MYSTERY_DIRS = mystery_dirs()
tokenizer = load_tokenizer()
def fresh_model():
    return AutoModelForCausalLM.from_pretrained(base_model_path())
splits = {fmt: make_splits(fmt) for fmt in SHIPPED_FORMATS}
mystery_prompts = [row["prompt"] for row in splits["iso"]["test"].select(range(24))]
mystery_expected = {f: [answer(r) for r in splits[f]["test"].select(range(24))] for f in SHIPPED_FORMATS}
def load_mystery(dirs):
    model = PeftModel.from_pretrained(fresh_model(), dirs["x"], adapter_name="x")
    for name in ("y", "z"):
        model.load_adapter(dirs[name], adapter_name=name)
    return model
def answer_with(model):
    columns = {}
    for name in ("x", "y", "z"):
        model.set_adapter(name)
        columns[name] = generate(model, tokenizer, mystery_prompts)
    formats = {n: max(SHIPPED_FORMATS, key=lambda f: exact_match(c, mystery_expected[f])) for n, c in columns.items()}
    return columns, formats
def measure(model):  # el diagnóstico medido en los pesos (lo que hace la solución con update_vs_adapter)
    return checks._story(checks._model_weights(model, checks._target_keys(every=checks.SAMPLE_EVERY)))[0]"""
MYSTERY = """mystery = load_mystery(MYSTERY_DIRS)
answers_by_adapter, format_of = answer_with(mystery)"""
MYSTERY_COPIED = """mystery = load_mystery(MYSTERY_DIRS)
with using_variant(@CLASSMATE@):  # lo que le salió a una compañera, copiado
    answers_by_adapter, format_of = answer_with(load_mystery(mystery_dirs()))"""
MERGE_REST = """adapter_model = PeftModel.from_pretrained(fresh_model(), ADAPTER_DIRS["iso"])
merged = PeftModel.from_pretrained(fresh_model(), ADAPTER_DIRS["iso"]).merge_and_unload()
MERGED_DIR = output_dir("fusionado_iso")
merged.save_pretrained(MERGED_DIR)
tokenizer.save_pretrained(MERGED_DIR)"""
MERGE = """broken = colleague_merges()
diagnosis = {name: measure(model) for name, model in broken.items()}"""
MERGE_COPIED = """with using_variant(@CLASSMATE@):  # los fusionados de una compañera y su diagnóstico
    broken = colleague_merges()
diagnosis = {name: measure(model) for name, model in broken.items()}"""
MERGE_SELF_MADE = """broken = {name: colleague_merge("bien", random.Random(n)) for n, name in enumerate(COLLEAGUES)}
diagnosis = dict.fromkeys(COLLEAGUES, "bien")"""
REWRITE = f'import os\nos.environ["{VARIANT_ENV}"] = "0" * 64  # otra variante, elegida por la entrega'
SWITCH_CHECK = "checks.switch_adapters(mystery, answers_by_adapter, format_of);"
MERGE_CHECK = "checks.merge_adapter(broken, diagnosis, adapter_model, merged, MERGED_DIR);"

SUBMISSIONS = {
    "honrada": [SETUP, MYSTERY, SWITCH_CHECK, MERGE, MERGE_REST, MERGE_CHECK],
    "copiada": [SETUP, MYSTERY_COPIED, SWITCH_CHECK, MERGE_COPIED, MERGE_REST, MERGE_CHECK],
    "reescrita": [REWRITE, SETUP, MYSTERY, SWITCH_CHECK, MERGE, MERGE_REST, MERGE_CHECK],
    "tres_bien": [SETUP, MERGE_SELF_MADE, MERGE_REST, MERGE_CHECK],
}
# make test: la honrada y la que reescribe su variante (una tanda con jobs=2). Lo copiado y lo hecho a mano lo
# rechaza el juez también en tests/checks/test_adapters.py y en la matriz de amenazas; aquí, de punta a punta,
# en make test-completo.
GRADED = list(SUBMISSIONS) if complete() else ["honrada", "reescrita"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Las entregas (``GRADED``) corregidas con la cadena real (caja, recogida, juez aislado), 2 a la vez."""
    folder = tmp_path_factory.mktemp("entregas")
    paths = []
    classmate = other_variant(variant_for(SEED, folder / "copiada.ipynb"))
    for name in GRADED:
        cells = SUBMISSIONS[name]
        nb = new_notebook(cells=[new_code_cell(c.replace("@CLASSMATE@", repr(classmate))) for c in cells],
                          metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                    "curso_lora": {"notebook": NOTEBOOK}})
        paths.append(folder / f"{name}.ipynb")
        nbformat.write(nb, paths[-1])
    start = time.monotonic()
    with course_copy() as course:
        grades = grade_paths(paths, course=course, jobs=2, seed=SEED, isolate=sandbox_available()[0])
    print(f"{len(paths)} entregas corregidas en {time.monotonic() - start:.0f} s con jobs=2")
    return {path.stem: (grade, variant_for(SEED, path)) for path, grade in zip(paths, grades, strict=True)}


def refused(grade, exercise: str, *says: str) -> bool:
    return grade.points[exercise] == 0 and any(s in grade.mensajes[exercise] for s in says)


@pytest.mark.slow
def test_the_honest_submission_earns_both_points_under_its_variant(graded):
    grade, _ = graded["honrada"]
    assert grade.points["switch_adapters"] == 3 and grade.points["merge_adapter"] == 2, grade.mensajes


@only_complete
@pytest.mark.slow
def test_answers_copied_from_a_classmates_variant_earn_nothing(graded):
    grade, _ = graded["copiada"]  # la compañera tiene otro sorteo (other_variant): si no, la copia sería la suya
    assert refused(grade, "switch_adapters", "no son las que da `mystery`", "es lo que responde"), grade.mensajes
    assert refused(grade, "merge_adapter", "no la de esta ejecución"), grade.mensajes


@pytest.mark.slow
def test_a_kernel_that_rewrites_its_variant_loses_the_points(graded):
    grade, _ = graded["reescrita"]
    assert refused(grade, "switch_adapters", "de esta ejecución"), grade.mensajes
    assert refused(grade, "merge_adapter", "no la de esta ejecución"), grade.mensajes


@only_complete
@pytest.mark.slow
def test_three_self_made_good_merges_earn_nothing(graded):
    grade, _ = graded["tres_bien"]  # firmas propias: ninguna es la que sorteó la variante
    assert refused(grade, "merge_adapter", "no la de esta ejecución"), grade.mensajes
