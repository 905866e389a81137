"""Las comprobaciones del cuaderno load_lora_adapter_example: aprueban lo correcto y explican lo incorrecto.

Cada comprobación se prueba con la respuesta buena y con las equivocaciones habituales; cada una debe dar ❌
con su mensaje concreto en español (nunca una traza). Y por el camino de la corrección (``handover.write`` +
``judge``), cada respuesta fabricada (archivos del curso, números escritos a mano, objetos que se parecen) se
rechaza, mientras que los objetos de la solución sacan todos los puntos.
"""

import ast
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from helpers.authoring.build_adapters import lora_config
from helpers.checks import adapters as checks
from helpers.checks import handover
from helpers.checks.registry import exercises_for
from helpers.colleagues import colleague_draw, colleague_merge, colleague_merges
from helpers.data import SHIPPED_FORMATS, answer, make_splits
from helpers.evaluation import exact_match, generate
from helpers.model import base_model_path, load_base_model, load_tokenizer
from helpers.paths import OUTPUT_ENV, SOLUTIONS_DIR
from helpers.shipped import (
    COLLEAGUES,
    MERGE_STORIES,
    MYSTERY_NAMES,
    VARIANT_ENV,
    adapter_dir,
    mystery_dir,
    mystery_dirs,
    mystery_sources,
    using_variant,
)
from tests.checking import assert_fails, run
from tests.suite import only_complete

N = checks.MYSTERY_MIN_ROWS  # las fechas del ejercicio 🦁 en el cuaderno (N_MYSTERY)
SEED = 12345


def fresh():
    """Un modelo base nuevo: PeftModel inyecta capas en el que recibe, así que no se comparte."""
    return load_base_model("cpu")[0]


def peft(fmt, name="default", model=None):
    from peft import PeftModel

    return PeftModel.from_pretrained(model or fresh(), str(adapter_dir(fmt)), adapter_name=name)


def judged(exercise, tmp_path, **arguments):
    """Lo que decide quien corrige: los objetos se escriben como datos y se juzgan con fechas ocultas."""
    handover.write(exercise.info.name, arguments, exercise.handover, tmp_path)
    return exercise.judge(tmp_path, SEED)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


# ---------------------------------------------------------------- 🐢 load_adapter
@pytest.fixture(scope="module")
def iso_model():
    return peft("iso", "iso")


def test_load_adapter_passes_on_the_iso_adapter(capsys, iso_model):
    passed, text = run(checks.load_adapter, capsys, iso_model)
    assert passed, text
    assert text.startswith("✅") and "'iso'" in text


def test_load_adapter_fails_without_the_name_iso(capsys):
    """Issue 29: el texto pide `adapter_name="iso"` y una celda posterior hace `set_adapter("iso")`: cuesta el punto."""
    assert_fails(checks.load_adapter, capsys, peft("iso"), says=["con el nombre 'default'", "adapter_name='iso'",
                                                                  'set_adapter("iso")'])


def test_load_adapter_fails_on_the_base_model(capsys):
    assert_fails(checks.load_adapter, capsys, fresh(), says="es el modelo base")


def test_load_adapter_fails_on_another_format(capsys):
    assert_fails(checks.load_adapter, capsys, peft("us"), says=["EE. UU.", "ADAPTER_DIRS['iso']"])


def test_load_adapter_fails_when_iso_is_loaded_but_not_active(capsys):
    model = peft("us", "us")
    model.load_adapter(str(adapter_dir("iso")), adapter_name="iso")
    assert_fails(checks.load_adapter, capsys, model, says="model.set_adapter('iso')")


def test_load_adapter_fails_on_a_new_untrained_adapter(capsys):
    from peft import get_peft_model

    assert_fails(checks.load_adapter, capsys, get_peft_model(fresh(), lora_config()), says="get_peft_model")


def test_load_adapter_fails_on_the_transformers_native_api(capsys):
    model = fresh()
    model.load_adapter(str(adapter_dir("iso")))
    assert_fails(checks.load_adapter, capsys, model, says="API de transformers")


def test_load_adapter_fails_on_a_base_that_was_already_merged(capsys):
    """La equivocación de cargar sobre un `base` que PEFT ya modificó en su sitio (aquí, fusionándolo)."""
    base = fresh()
    peft("iso", model=base).merge_and_unload()  # `base` queda con ΔW sumado
    assert_fails(checks.load_adapter, capsys, peft("iso", "iso", model=base), says=["ya llevan sumado", "en su sitio"])


def test_load_adapter_fails_cleanly_on_a_path_instead_of_a_model(capsys):
    assert_fails(checks.load_adapter, capsys, "adapters/iso", says="es un str, no un modelo")


def test_load_adapter_untouched_is_not_attempted(capsys):
    passed, text = run(checks.load_adapter, capsys, None)
    assert passed is False and text.startswith("⏳")


def test_the_grader_passes_the_loaded_adapter_and_rejects_the_wrong_one_and_the_base(tmp_path, iso_model):
    assert judged(checks.load_adapter, tmp_path, model=iso_model).passed
    assert not judged(checks.load_adapter, tmp_path, model=peft("us")).passed
    assert not judged(checks.load_adapter, tmp_path, model=fresh()).passed
    assert judged(checks.load_adapter, tmp_path, model=None).status == "sin intentar"


def test_the_grader_rejects_a_forged_model_description(tmp_path):
    """Datos escritos a mano: un modelo "peft" que en realidad es el base, con el manifiesto rehecho."""
    handover.write("load_adapter", {"model": fresh()}, checks.load_adapter.handover, tmp_path)
    marker = tmp_path / "load_adapter" / "model" / "modelo.json"
    marker.write_text('{"peft": true, "adapters": ["iso"], "active": "iso", "dtype": "torch.float32"}')
    manifest = tmp_path / "load_adapter" / handover.MANIFEST
    listed = json.loads(manifest.read_text())
    listed["model/modelo.json"] = handover._sha256(marker)
    manifest.write_text(json.dumps(listed))
    assert not checks.load_adapter.judge(tmp_path, SEED).passed


# ---------------------------------------------------------------- 🦁 switch_adapters
def expected_answers(n=N):
    return {fmt: [answer(r) for r in make_splits(fmt)["test"].select(range(n))] for fmt in SHIPPED_FORMATS}


def load_mystery(names=MYSTERY_NAMES, base=None, folders=None):
    from peft import PeftModel

    folders = folders or mystery_dirs()
    model = PeftModel.from_pretrained(base or fresh(), folders[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(folders[name], adapter_name=name)
    return model


def answers_of(model, names=MYSTERY_NAMES, n=N):
    prompts = [r["prompt"] for r in make_splits("iso")["test"].select(range(n))]
    answers = {}
    for name in names:
        model.set_adapter(name)
        answers[name] = generate(model, load_tokenizer(), prompts)
    return answers


def decide(answers):
    """Lo que hace la solución: cada adaptador, el formato en el que más acierta."""
    key = expected_answers(len(next(iter(answers.values()))))
    return {name: max(SHIPPED_FORMATS, key=lambda fmt: exact_match(column, key[fmt])) for name, column in answers.items()}


@pytest.fixture(scope="module")
def mystery_case():
    """Lo que hace bien el alumno: los tres en un PeftModel, sus respuestas y el formato de cada uno."""
    model = load_mystery()
    answers = answers_of(model)
    return model, answers, decide(answers)


@pytest.mark.slow  # 10-20 s: en make test, no en test-fast
def test_switch_adapters_passes(capsys, mystery_case):
    model, answers, decided = mystery_case
    passed, text = run(checks.switch_adapters, capsys, model, answers, decided)
    assert passed, text
    assert "x → " + decided["x"] in text


def test_switch_adapters_fails_on_a_wrong_decision(capsys, mystery_case):
    model, answers, decided = mystery_case
    wrong = {**decided, "x": next(fmt for fmt in SHIPPED_FORMATS if fmt != decided["x"])}
    assert_fails(checks.switch_adapters, capsys, model, answers, wrong,
                 says=["El adaptador 'x' no produce el formato", "en tu propia columna", "quédate con el que más"])


def test_the_mystery_adapters_make_mistakes_on_the_notebook_rows(mystery_case):
    """Si acertaran todas, la clave de respuestas (`expected`) sería su columna y se podría escribir sin generar."""
    _, answers, decided = mystery_case
    key = expected_answers()
    assert all(N - exact_match(answers[name], key[decided[name]]) > checks.MYSTERY_MAX_MISMATCHES
               for name in MYSTERY_NAMES), {name: exact_match(answers[name], key[decided[name]]) for name in answers}


def test_switch_adapters_fails_on_the_answer_key_typed_instead_of_generated(capsys, mystery_case):
    model, _, decided = mystery_case
    key = expected_answers()
    typed = {name: key[decided[name]] for name in MYSTERY_NAMES}
    assert_fails(checks.switch_adapters, capsys, model, typed, decided,
                 says=["es la clave de respuestas", "Genera sus respuestas con el modelo"])


def test_switch_adapters_fails_on_one_answer_per_adapter(capsys, mystery_case):
    model, answers, decided = mystery_case
    short = {name: column[:1] for name, column in answers.items()}
    assert_fails(checks.switch_adapters, capsys, model, short, decided,
                 says=["la columna tiene que ser entera", f"al menos {checks.MYSTERY_MIN_ROWS}"])


def test_switch_adapters_fails_when_never_switching(capsys, mystery_case):
    model, answers, decided = mystery_case
    same = {name: answers["x"] for name in MYSTERY_NAMES}
    assert_fails(checks.switch_adapters, capsys, model, same, decided, says=["son iguales", "set_adapter"])


def test_switch_adapters_fails_on_a_column_of_another_adapter(capsys, mystery_case):
    model, answers, decided = mystery_case
    if answers["x"] == answers["y"]:
        pytest.skip("x e y responden igual en estas filas")
    swapped = {**answers, "x": answers["y"], "y": answers["x"]}
    assert_fails(checks.switch_adapters, capsys, model, swapped, decided, says=["es lo que responde 'y'",
                                                                                 "set_adapter('x')"])


def test_switch_adapters_fails_on_a_missing_adapter(capsys, mystery_case):
    _, answers, decided = mystery_case
    two = load_mystery(("x", "y"))
    assert_fails(checks.switch_adapters, capsys, two, answers, decided, says=["faltan", "'z'", "load_adapter"])


def test_switch_adapters_fails_when_loaded_on_the_base_peft_already_modified(capsys, mystery_case):
    """`base` aún lleva los adaptadores de la sección 2: cargar los misteriosos encima los mezcla con ellos."""
    _, answers, decided = mystery_case
    base = fresh()
    model = peft("iso", "iso", model=base)
    model.load_adapter(str(adapter_dir("us")), adapter_name="us")
    assert_fails(checks.switch_adapters, capsys, load_mystery(base=base), answers, decided,
                 says=["lleva además los adaptadores", "'iso'", "fresh_model()"])


def test_switch_adapters_fails_on_a_labelled_adapter_under_a_mystery_name(capsys, mystery_case):
    _, answers, decided = mystery_case
    folders = {**mystery_dirs(), "x": str(adapter_dir("iso"))}
    assert_fails(checks.switch_adapters, capsys, load_mystery(folders=folders), answers, decided,
                 says=["es `adapters/iso`, uno con etiqueta", "MYSTERY_DIRS['x']"])


def test_switch_adapters_fails_on_folders_loaded_under_the_wrong_names(capsys, mystery_case):
    _, answers, decided = mystery_case
    folders = {**mystery_dirs(), "x": mystery_dirs()["y"], "y": mystery_dirs()["x"]}
    assert_fails(checks.switch_adapters, capsys, load_mystery(folders=folders), answers, decided,
                 says="tiene los pesos de `MYSTERY_DIRS['y']`")


def test_switch_adapters_fails_on_keys_that_are_formats_not_names(capsys, mystery_case):
    model, _, decided = mystery_case
    assert_fails(checks.switch_adapters, capsys, model, expected_answers(), decided, says="deben ser exactamente")


@pytest.mark.parametrize("said, says", [("ISO", "en minúsculas, 'iso'"), (None, "decide por el formato"),
                                        ("dotted", "usa 'iso', 'us' o 'en'")])
def test_switch_adapters_fails_on_a_format_that_is_not_one_of_the_three(capsys, mystery_case, said, says):
    model, answers, decided = mystery_case
    assert_fails(checks.switch_adapters, capsys, model, answers, {**decided, "x": said}, says=says)


@pytest.mark.parametrize("answers, formats, says", [
    (["2021-03-05"], {}, "debe ser un dict"),
    ({"x": "2021-03-05", "y": "a", "z": "b"}, None, "lista de respuestas"),
])
def test_switch_adapters_fails_cleanly_on_wrong_types(capsys, mystery_case, answers, formats, says):
    model, _, decided = mystery_case
    assert_fails(checks.switch_adapters, capsys, model, answers, decided if formats is None else formats, says=says)


def test_switch_adapters_untouched_is_not_attempted(capsys):
    passed, text = run(checks.switch_adapters, capsys, None, None, None)
    assert passed is False and text.startswith("⏳") and "Todavía no has hecho" in text


def test_the_grader_rejects_fabricated_switch_answers(tmp_path, mystery_case):
    """Una columna de una respuesta, la clave escrita a mano y los adaptadores con etiqueta: nada de eso puntúa."""
    model, answers, decided = mystery_case
    key = expected_answers()
    fabricated = [
        (model, {name: column[:1] for name, column in answers.items()}, decided),
        (model, {name: key[decided[name]] for name in MYSTERY_NAMES}, decided),
        (fresh(), {name: key[decided[name]] for name in MYSTERY_NAMES}, decided),
        (load_mystery(folders={name: str(adapter_dir(decided[name])) for name in MYSTERY_NAMES}), answers, decided),
    ]
    for mystery, columns, formats in fabricated:
        outcome = judged(checks.switch_adapters, tmp_path, mystery=mystery, answers_by_adapter=columns,
                         format_of=formats)
        assert not outcome.passed, outcome.message


def test_a_hand_edited_handover_breaks_its_manifest(tmp_path, mystery_case):
    model, answers, decided = mystery_case
    handover.write("switch_adapters", {"mystery": model, "answers_by_adapter": answers, "format_of": decided},
                   checks.switch_adapters.handover, tmp_path)
    forged = tmp_path / "switch_adapters" / "format_of" / "valor.json"
    forged.write_text('{"dict": [["x", "iso"], ["y", "iso"], ["z", "iso"]]}')
    outcome = checks.switch_adapters.judge(tmp_path, SEED)
    assert not outcome.passed and "cambió después de escribirse" in outcome.message


# ---------------------------------------------------------------- 🐢 unload_adapters
def test_unload_adapters_passes(capsys):
    passed, text = run(checks.unload_adapters, capsys, peft("iso", "iso").unload())
    assert passed, text


def test_unload_adapters_fails_when_restored_is_still_a_peft_model(capsys):
    assert_fails(checks.unload_adapters, capsys, peft("iso"), says="todavía es un PeftModel")


def test_unload_adapters_fails_on_get_base_model(capsys):
    assert_fails(checks.unload_adapters, capsys, peft("iso").get_base_model(), says=["capas LoRA", "get_base_model()"])


def test_unload_adapters_fails_on_merge_and_unload(capsys):
    assert_fails(checks.unload_adapters, capsys, peft("iso").merge_and_unload(),
                 says=["llevan sumado el ΔW del ISO", "merge_and_unload()"])


def test_unload_adapters_fails_on_merging_another_adapter(capsys):
    assert_fails(checks.unload_adapters, capsys, peft("us").merge_and_unload(), says="ΔW de otro adaptador")


def test_unload_point_certifies_the_outcome(tmp_path):
    """Definido así (README): en los datos entregados, `unload()` y un base recién cargado son lo mismo."""
    assert judged(checks.unload_adapters, tmp_path, restored=peft("iso").unload()).passed
    assert judged(checks.unload_adapters, tmp_path, restored=fresh()).passed
    assert not judged(checks.unload_adapters, tmp_path, restored=peft("iso").merge_and_unload()).passed


# ---------------------------------------------------------------- 🐕 merge_adapter
@pytest.fixture(scope="module")
def stories():
    """Un fusionado de compañero por historia (dos de "otro_adaptador": uno con us y otro con en)."""
    made = {story: colleague_merge(story, random.Random(number)) for number, story in enumerate(MERGE_STORIES)}
    made["otro_adaptador_2"] = colleague_merge("otro_adaptador", random.Random(99))
    return made


def colleagues(stories, *names):
    return dict(zip(COLLEAGUES, (stories[n] for n in names), strict=True))


def truth(*names):
    return dict(zip(COLLEAGUES, (n.removesuffix("_2") for n in names), strict=True))


TRIO = ("dos_veces", "sin_escala", "otro_adaptador")


@pytest.fixture(scope="module")
def merged_case(tmp_path_factory, tokenizer):
    """Lo que hace el alumno bien: una copia sin fusionar, otra fusionada, guardada con el tokenizador."""
    adapter_model = peft("iso")
    merged = peft("iso").merge_and_unload()
    folder = tmp_path_factory.mktemp("fusionado")
    merged.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return adapter_model, merged, folder


def merge_run(stories, merged_case, names=TRIO, diagnosis=None, **changes):
    adapter_model, merged, folder = merged_case
    arguments = {"broken": colleagues(stories, *names), "diagnosis": diagnosis or truth(*names),
                 "adapter_model": adapter_model, "merged": merged, "merged_dir": folder, **changes}
    return arguments


def test_every_story_is_measured_from_the_weights(stories):
    for story, model in stories.items():
        weights = checks._model_weights(model, checks._target_keys(every=checks.SAMPLE_EVERY))
        measured, errors = checks._story(weights)
        assert measured == story.removesuffix("_2"), errors
        runner_up = sorted(errors.values())[1]
        assert runner_up >= 40 * checks.STORY_TOLERANCE, errors  # la más cercana de las otras está a ≥ 0,5


def test_colleague_merges_are_signed_and_drawn_apart():
    merges = colleague_merges()
    assert set(merges) == set(COLLEAGUES)
    base_norm = checks._base_weight("model.norm.weight")
    nonces = {checks.signature_nonce(m.model.norm.weight.detach(), base_norm) for m in merges.values()}
    assert None not in nonces and len(nonces) == 3
    assert checks.signature_nonce(fresh().model.norm.weight.detach(), base_norm) is None


@pytest.mark.slow
def test_merge_adapter_passes(capsys, stories, merged_case):
    for names in (TRIO, ("bien", "sin_fusionar", "otro_adaptador_2")):
        passed, text = run(checks.merge_adapter, capsys, *merge_run(stories, merged_case, names).values())
        assert passed, text
    assert "Diagnóstico correcto" in text and "·10" in text


@pytest.mark.slow
@pytest.mark.parametrize("names, said, says", [
    (("dos_veces", "bien", "sin_escala"), ("bien", "bien", "sin_escala"),
     ["desplazado un ΔW entero", "en su sitio", "fresh_model()"]),
    (("dos_veces", "bien", "sin_escala"), ("dos_veces", "sin_fusionar", "sin_escala"), "desplazado un ΔW entero"),
    (("dos_veces", "bien", "sin_escala"), ("dos_veces", "bien", "bien"), ["aunque sus respuestas lo parezcan",
                                                                          "no bastan"]),
    (("otro_adaptador", "bien", "sin_escala"), ("sin_fusionar", "bien", "sin_escala"),
     ["Para Ana dices «sin_fusionar»", "si fuera «sin_fusionar», W = W_base"]),
    (TRIO, ("dos veces", "sin_escala", "otro_adaptador"), "usa una de las historias"),
])
def test_merge_adapter_fails_on_a_wrong_diagnosis(capsys, stories, merged_case, names, said, says):
    arguments = merge_run(stories, merged_case, names, diagnosis=dict(zip(COLLEAGUES, said, strict=True)))
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=says)


@pytest.mark.slow
def test_merge_adapter_fails_on_look_alike_colleague_models(capsys, stories, merged_case):
    """Modelos base recién cargados con el diagnóstico "sin_fusionar": sin la firma del compañero no valen."""
    arguments = merge_run(stories, merged_case, diagnosis=dict.fromkeys(COLLEAGUES, "sin_fusionar"),
                          broken={name: fresh() for name in COLLEAGUES})
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=["no lleva la firma", "colleague_merges()"])


@pytest.mark.slow
def test_merge_adapter_fails_on_a_colleague_model_changed_in_place(capsys, stories, merged_case):
    changed = colleague_merge("bien", random.Random(7))
    peft("iso", model=changed).merge_and_unload()  # fusionar encima lo modifica en su sitio: 2·ΔW... y la firma sigue
    arguments = merge_run(stories, merged_case, ("dos_veces", "sin_escala", "bien"),
                          broken=colleagues(stories, "dos_veces", "sin_escala", "bien") | {"carla": changed})
    passed, text = run(checks.merge_adapter, capsys, *arguments.values())
    assert not passed and "Carla" in text  # sus pesos son ahora "dos_veces", no lo que dice el diagnóstico
    again = colleague_merge("sin_escala", random.Random(8))
    with torch.no_grad():
        again.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    arguments["broken"] = colleagues(stories, "dos_veces", "sin_escala", "bien") | {"carla": again}
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=["ya no son los que te pasó Carla",
                                                                          "¿los modificaste"])


@pytest.mark.slow
def test_merge_adapter_fails_on_the_same_colleague_twice(capsys, stories, merged_case):
    arguments = merge_run(stories, merged_case, ("bien", "bien", "sin_escala"))
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says="el mismo modelo que otro compañero")


@pytest.mark.slow
def test_merge_adapter_fails_when_the_compared_model_was_merged(capsys, stories, merged_case):
    """Fusionar el modelo con el que se compara: `merge_and_unload()` lo deja fusionado en su sitio."""
    compared = peft("iso")
    merged = compared.merge_and_unload()
    arguments = merge_run(stories, merged_case, adapter_model=compared, merged=merged)
    assert_fails(checks.merge_adapter, capsys, *arguments.values(),
                 says=["`adapter_model` ya no tiene el adaptador", "comparas el fusionado consigo mismo"])


@pytest.mark.slow
def test_merge_adapter_fails_when_both_copies_share_one_base(capsys, stories, merged_case):
    from peft import PeftModel

    base = fresh()
    compared = PeftModel.from_pretrained(base, str(adapter_dir("iso")))
    merged = PeftModel.from_pretrained(base, str(adapter_dir("iso"))).merge_and_unload()
    arguments = merge_run(stories, merged_case, adapter_model=compared, merged=merged)
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=["sobre el mismo modelo base",
                                                                          "su propio `fresh_model()`"])


@pytest.mark.slow
def test_merge_adapter_fails_when_comparing_with_a_base_peft_already_modified(capsys, stories, merged_case):
    """El adaptador puesto sobre un base ya fusionado: se compara contra base + 2·ΔW."""
    arguments = merge_run(stories, merged_case, adapter_model=peft("iso", model=peft("iso").merge_and_unload()))
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=["ya lleva sumado el ΔW del ISO",
                                                                          "base + 2·ΔW", "fresh_model()"])


@pytest.mark.slow
def test_merge_adapter_fails_when_comparing_with_another_adapter(capsys, stories, merged_case):
    arguments = merge_run(stories, merged_case, adapter_model=peft("us"))
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says="no es el de `adapters/iso`")


def manual_merge_without_scaling():
    from safetensors.torch import load_file

    model = fresh()
    weights = load_file(adapter_dir("iso") / "adapter_model.safetensors")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, a in weights.items():
            if "lora_A" in key:
                stem = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
                params[f"{stem}.weight"] += weights[key.replace("lora_A", "lora_B")] @ a
    return model


@pytest.mark.slow
@pytest.mark.parametrize("make, says", [
    (lambda: peft("iso").unload(), ["no está fusionado", "merge_and_unload()"]),
    (lambda: peft("us").merge_and_unload(), ["otro adaptador", "ADAPTER_DIRS['iso']"]),
    (lambda: peft("iso", model=peft("iso").merge_and_unload()).merge_and_unload(), ["2·ΔW", "dos veces"]),
    (manual_merge_without_scaling, ["sin la escala", "a mano"]),
    (lambda: peft("iso"), "todavía es un PeftModel"),
    (lambda: colleague_merge("bien", random.Random(5)), ["uno de los fusionados de tus compañeros", "fusiones tú"]),
])
def test_merge_adapter_fails_on_a_wrong_merge(capsys, stories, merged_case, make, says):
    arguments = merge_run(stories, merged_case, merged=make())
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=says)


@pytest.mark.slow
def test_merge_adapter_fails_on_merge_adapter_without_unload(capsys, stories, merged_case):
    model = peft("iso")
    model.merge_adapter()
    arguments = merge_run(stories, merged_case, merged=model.get_base_model())
    assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=["capas LoRA", "merge_and_unload()"])


@pytest.mark.slow
def test_merge_adapter_fails_on_folders_that_cannot_be_used_alone(capsys, stories, merged_case, tmp_path):
    _, _, folder = merged_case
    cases = [(tmp_path / "no_existe", ["no existe", "save_pretrained"]), (None, "`merged_dir` es None"),
             (adapter_dir("iso"), "contiene un adaptador"),
             (base_model_path(), ["no es `merged`", "guardaste antes de fusionar"])]
    no_tokenizer = tmp_path / "sin_tokenizador"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).symlink_to(folder / name)
    cases.append((no_tokenizer, ["falta el tokenizador", "plantilla de chat", "tokenizer.save_pretrained"]))
    pickled = tmp_path / "con_pickle"
    pickled.mkdir()
    for path in folder.iterdir():
        (pickled / path.name).symlink_to(path)
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    cases.append((pickled, ["pickle", "pytorch_model.bin"]))
    for merged_dir, says in cases:
        arguments = merge_run(stories, merged_case, merged_dir=merged_dir)
        assert_fails(checks.merge_adapter, capsys, *arguments.values(), says=says)


def test_merge_adapter_untouched_says_so(capsys, stories):
    text = assert_fails(checks.merge_adapter, capsys, colleagues(stories, *TRIO), None, None, None, None,
                        says="Todavía no has hecho este ejercicio")
    assert "Traceback" not in text


def test_merge_adapter_takes_no_number_from_the_learner():
    """Lo único que escribe el alumno es el diagnóstico (un texto por compañero): no hay números que puntúen."""
    values = [name for name, fmt in checks.merge_adapter.handover.items() if isinstance(fmt, handover.Value)]
    assert values == ["diagnosis"]


@pytest.mark.slow
def test_the_grader_rejects_fabricated_merges(tmp_path, stories, merged_case):
    """Bases recién cargados como compañeros, un diagnóstico escrito para otro sorteo, el fusionado del compañero
    como propio, la copia comparada fusionada en su sitio, el base como fusionado: nada puntúa."""
    adapter_model, merged, folder = merged_case
    honest = {"broken": colleagues(stories, *TRIO), "diagnosis": truth(*TRIO), "adapter_model": adapter_model,
              "merged": merged, "merged_dir": folder}
    compared = peft("iso")
    in_place = compared.merge_and_unload()
    fabricated = {
        "bases recién cargadas": ({"broken": {n: fresh() for n in COLLEAGUES},
                                   "diagnosis": dict.fromkeys(COLLEAGUES, "sin_fusionar")}, "firma"),
        "diagnóstico de otro sorteo": ({"diagnosis": truth("bien", "sin_fusionar", "dos_veces")}, "no encaja"),
        "fusionado del compañero": ({"merged": stories["bien"]}, "compañeros"),
        "comparado consigo mismo": ({"adapter_model": compared, "merged": in_place}, "en su sitio"),
        "el base": ({"merged": fresh()}, "no está fusionado"),
    }
    for label, (change, says) in fabricated.items():
        outcome = judged(checks.merge_adapter, tmp_path, **{**honest, **change})
        assert not outcome.passed and says in outcome.message, (label, outcome.message)


# ---------------------------------------------------------------- la solución, con cualquier sorteo
def _notebook_function(name):
    """El código de una función definida en el cuaderno de soluciones (de una zona de solución o no)."""
    nb = nbformat.read(SOLUTIONS_DIR / f"{checks.NOTEBOOK}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or f"def {name}(" not in cell.source:
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("### "))
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return ast.get_source_segment(source, node)
    raise LookupError(name)


def test_the_solution_diagnoses_every_story(stories):
    """En la corrección llegan otros tres: el diagnóstico de la solución tiene que acertar cualquier historia."""
    import math

    from safetensors.torch import load_file

    namespace = {"json": json, "math": math, "load_file": load_file,
                 "ADAPTER_DIRS": {fmt: str(adapter_dir(fmt)) for fmt in SHIPPED_FORMATS}}
    exec(_notebook_function("update_vs_adapter"), namespace)  # noqa: S102 - código del cuaderno de soluciones
    exec(_notebook_function("diagnose"), namespace)  # noqa: S102
    reference = fresh()
    said = {story: namespace["diagnose"](model, reference) for story, model in stories.items()}
    assert said == {story: story.removesuffix("_2") for story in stories}


# ---------------------------------------------------------------- los cuatro, con los objetos de la solución
@only_complete  # make test: lo que entrega el cuaderno resuelto con nbval, juzgado en tests/grading/test_chain.py
@pytest.mark.slow
def test_the_solution_objects_earn_full_marks_through_the_grader(tmp_path, mystery_case, stories, merged_case):
    model, answers, decided = mystery_case
    adapter_model, merged, folder = merged_case
    verdicts = {
        "load_adapter": judged(checks.load_adapter, tmp_path, model=peft("iso", "iso")),
        "switch_adapters": judged(checks.switch_adapters, tmp_path, mystery=model, answers_by_adapter=answers,
                                  format_of=decided),
        "unload_adapters": judged(checks.unload_adapters, tmp_path, restored=peft("iso", "iso").unload()),
        "merge_adapter": judged(checks.merge_adapter, tmp_path, broken=colleagues(stories, *TRIO),
                                diagnosis=truth(*TRIO), adapter_model=adapter_model, merged=merged, merged_dir=folder),
    }
    points = {e.name: (e.points if verdicts[e.name].passed else 0) for e in exercises_for(checks.NOTEBOOK)}
    assert sum(points.values()) == sum(e.points for e in exercises_for(checks.NOTEBOOK)) == 7, {
        name: v.message for name, v in verdicts.items()}
    assert "fechas que el cuaderno nunca vio" in verdicts["switch_adapters"].message  # el formato, medido ahí


# ---------------------------------------------------------------- la variante de cada entrega (issue 25, clase 4)
# Al corregir, cada entrega tiene su ficha de variante (helpers.grading.chain.variant_for): sus adaptadores sin
# etiqueta y sus compañeros son otros. Dos fichas cualesquiera, con sorteos distintos (se comprueba abajo).
MINE, CLASSMATE = "a" * 64, "b" * 64


def test_without_a_variant_nothing_changes():
    assert VARIANT_ENV not in os.environ
    assert mystery_sources() == {name: name for name in MYSTERY_NAMES} and colleague_draw() is None
    assert mystery_dirs() == {name: str(mystery_dir(name)) for name in MYSTERY_NAMES}


def test_a_variant_draws_the_same_every_time_and_another_variant_draws_otherwise(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    with using_variant(MINE):
        folders, again, drawn = mystery_dirs(), mystery_dirs(), colleague_draw()
    assert VARIANT_ENV not in os.environ  # using_variant deja el entorno como estaba
    assert folders == again and drawn == colleague_draw(MINE)
    assert mystery_sources(MINE) != mystery_sources(CLASSMATE)
    assert [d["story"] for d in drawn.values()] != [d["story"] for d in colleague_draw(CLASSMATE).values()]
    assert {d["nonce"] for d in drawn.values()}.isdisjoint(d["nonce"] for d in colleague_draw(CLASSMATE).values())
    shipped_bytes = {(mystery_dir(n) / "adapter_model.safetensors").read_bytes() for n in MYSTERY_NAMES}
    for name, folder in folders.items():
        assert (tmp_path / "misterio" / name) == Path(folder)  # nada en la ruta dice de qué carpeta salió
        written = load_file(Path(folder) / "adapter_model.safetensors")
        source = load_file(mystery_dir(mystery_sources(MINE)[name]) / "adapter_model.safetensors")
        assert (Path(folder) / "adapter_model.safetensors").read_bytes() not in shipped_bytes
        for key in (k for k in source if "lora_A" in k):
            b = key.replace("lora_A", "lora_B")
            assert not torch.equal(written[key], source[key])
            torch.testing.assert_close(written[b] @ written[key], source[b] @ source[key], atol=1e-6, rtol=1e-5)


def test_the_mystery_adapters_of_another_run_are_refused_under_this_variant(capsys, mystery_case, tmp_path,
                                                                             monkeypatch):
    """Reescribir o borrar `CURSO_LORA_VARIANTE` en el kernel da otros adaptadores: el juez espera los suyos."""
    _, answers, decided = mystery_case
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    with using_variant(CLASSMATE):
        theirs = load_mystery(folders=mystery_dirs())
    shipped = load_mystery(folders={name: str(mystery_dir(name)) for name in MYSTERY_NAMES})
    with using_variant(MINE):
        for model in (shipped, theirs):  # sin variante (las carpetas publicadas) y la de otra entrega
            assert_fails(checks.switch_adapters, capsys, model, answers, decided,
                         says=["de esta ejecución", "MYSTERY_DIRS['x']"])


@pytest.mark.slow
def test_switch_answers_copied_from_another_variant_fail_and_honest_ones_pass(tmp_path_factory):
    """Lo que respondió la variante de una compañera no es lo que responde la mía; lo mío saca los 3 puntos."""
    runs = {}
    for token in (MINE, CLASSMATE):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(OUTPUT_ENV, str(tmp_path_factory.mktemp("salidas")))
            with using_variant(token):
                model = load_mystery(folders=mystery_dirs())
                answers = answers_of(model)
                runs[token] = (model, answers, decide(answers))
    mine, (_, copied_answers, copied_formats) = runs[MINE], runs[CLASSMATE]
    with using_variant(MINE):
        honest = judged(checks.switch_adapters, tmp_path_factory.mktemp("honrada"), mystery=mine[0],
                        answers_by_adapter=mine[1], format_of=mine[2])
        copied = judged(checks.switch_adapters, tmp_path_factory.mktemp("copiada"), mystery=mine[0],
                        answers_by_adapter=copied_answers, format_of=copied_formats)
    assert honest.passed, honest.message
    assert not copied.passed and ("no son las que da `mystery`" in copied.message  # otro adaptador detrás de 'y'
                                  or "es lo que responde" in copied.message), copied.message


@pytest.fixture(scope="module")
def variant_broken():
    """Los fusionados de los compañeros de mi variante y de la de una compañera, con lo que se sorteó."""
    with using_variant(MINE):
        mine = colleague_merges()
    with using_variant(CLASSMATE):
        theirs = colleague_merges()
    return mine, theirs


def stories_of(token):
    return {name: one["story"] for name, one in colleague_draw(token).items()}


def test_colleague_merges_carry_the_variant_nonces_and_stories(variant_broken):
    base_norm = checks._base_weight("model.norm.weight")
    for token, merges in zip((MINE, CLASSMATE), variant_broken, strict=True):
        drawn = colleague_draw(token)
        for name, model in merges.items():
            assert checks.signature_nonce(model.model.norm.weight.detach(), base_norm) == drawn[name]["nonce"]
            measured, _ = checks._story(checks._model_weights(model, checks._target_keys(every=checks.SAMPLE_EVERY)))
            assert measured == drawn[name]["story"]


@pytest.mark.slow
def test_merges_copied_self_made_or_pre_typed_fail_under_the_variant(capsys, variant_broken, merged_case):
    mine, theirs = variant_broken
    drawn = colleague_draw(MINE)
    assert set(stories_of(MINE).values()) != {"bien"}
    self_made = {name: colleague_merge("bien", random.Random(n)) for n, name in enumerate(COLLEAGUES)}
    self_made_signed = {name: colleague_merge("bien", drawn={**drawn[name], "story": "bien"}) for name in COLLEAGUES}
    attempts = {
        "copiado de una compañera": ({"broken": theirs, "diagnosis": stories_of(CLASSMATE)}, "no la de esta ejecución"),
        "tres «bien» hechos a mano": ({"broken": self_made, "diagnosis": dict.fromkeys(COLLEAGUES, "bien")},
                                      "no la de esta ejecución"),
        "tres «bien» con las firmas de esta variante": (
            {"broken": self_made_signed, "diagnosis": dict.fromkeys(COLLEAGUES, "bien")}, "ya no son los que te pasó"),
        "diagnóstico escrito de antemano": ({"broken": mine, "diagnosis": stories_of(CLASSMATE)}, "no encaja"),
    }
    adapter_model, merged, folder = merged_case
    with using_variant(MINE):
        for label, (change, says) in attempts.items():
            text = assert_fails(checks.merge_adapter, capsys, change["broken"], change["diagnosis"], adapter_model,
                                merged, folder, says=says)
            assert "Traceback" not in text, label


@pytest.mark.slow
def test_the_grader_accepts_this_variants_merges_and_refuses_a_classmates(tmp_path_factory, variant_broken,
                                                                         merged_case):
    mine, theirs = variant_broken
    adapter_model, merged, folder = merged_case
    rest = {"adapter_model": adapter_model, "merged": merged, "merged_dir": folder}
    with using_variant(MINE):
        honest = judged(checks.merge_adapter, tmp_path_factory.mktemp("honrada"), broken=mine,
                        diagnosis=stories_of(MINE), **rest)
        copied = judged(checks.merge_adapter, tmp_path_factory.mktemp("copiada"), broken=theirs,
                        diagnosis=stories_of(CLASSMATE), **rest)
    assert honest.passed, honest.message
    assert not copied.passed and "no la de esta ejecución" in copied.message, copied.message


# ---------------------------------------------------------------- pistas, soluciones y registro
def test_checks_have_two_step_hints_and_registry_points():
    points = {"load_adapter": 1, "switch_adapters": 3, "unload_adapters": 1, "merge_adapter": 2}
    for name, value in points.items():
        exercise = getattr(checks, name)
        idea, shape = exercise._hints
        assert exercise.info.points == value and idea and "..." in shape


def test_levels_agree_between_intro_section_and_registry():
    nb = nbformat.read(SOLUTIONS_DIR / f"{checks.NOTEBOOK}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    intro, sections = text.split("\n## ", 1)
    intro_keys = {"load_adapter": "PeftModel.from_pretrained", "switch_adapters": "decidir",
                  "unload_adapters": "unload()", "merge_adapter": "diagnosticar"}
    heading_keys = {"load_adapter": "carga un adaptador", "switch_adapters": "sin etiqueta",
                    "unload_adapters": "unload()", "merge_adapter": "diagnostica"}
    lines = sections.splitlines()
    headings = ["## " + lines[0]] + [line for line in lines if line.startswith(("## ", "### "))]
    for exercise in exercises_for(checks.NOTEBOOK):
        line = next(line for line in intro.splitlines() if intro_keys[exercise.name] in line)
        assert exercise.level in line, (exercise.name, line)
        heading = next(h for h in headings if heading_keys[exercise.name] in h)
        assert exercise.level in heading, (exercise.name, heading)
    assert all(story in text for story in MERGE_STORIES)  # la tabla de historias del cuaderno, completa


def test_solutions_are_read_from_the_solution_notebook(capsys):
    expected = {checks.load_adapter: "PeftModel.from_pretrained", checks.merge_adapter: "merge_and_unload()",
                checks.switch_adapters: "set_adapter", checks.unload_adapters: "model.unload()"}
    for exercise, call in expected.items():
        capsys.readouterr()
        exercise.solution()
        assert call in capsys.readouterr().out


# ---------------------------------------------------------------- la tolerancia, en varios procesos
MERGE_NOISE = """
import torch
from peft import PeftModel
from helpers.data import Examples
from helpers.evaluation import logits
from helpers.model import fresh_base, load_tokenizer
from helpers.shipped import adapter_dir
tokenizer, prompts = load_tokenizer(), Examples("validation").prompts(4)
ballast = [torch.empty(n) for n in (12_345, 678_901)]  # cambia la alineación de lo que venga después
adapter = PeftModel.from_pretrained(fresh_base(), str(adapter_dir("iso")))
merged = PeftModel.from_pretrained(fresh_base(), str(adapter_dir("iso"))).merge_and_unload()
print((logits(merged, tokenizer, prompts) - logits(adapter, tokenizer, prompts)).abs().max().item())
"""


@pytest.mark.slow
def test_a_correct_merge_is_within_tolerance_under_several_hash_seeds():
    """El ruido de un fusionado correcto cambia con el proceso (hash, memoria, CPU); la tolerancia lo cubre."""
    diffs = {}
    for seed in ("1", "3", "5"):
        done = subprocess.run([sys.executable, "-c", MERGE_NOISE], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        diffs[seed] = float(done.stdout.split()[-1])
    print("max|Δlogits| fusionado vs adaptador por PYTHONHASHSEED:", diffs)
    assert all(0 < d < checks.MAX_DIFF_FP32 for d in diffs.values()), diffs
