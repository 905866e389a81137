"""Corrección de entregas: ejecuta copias, reúne los puntos y escribe una fila por entrega, pase lo que pase.

Casi todo se prueba con cuadernos sintéticos pequeños (un kernel cada uno, unos segundos) que definen
sus propias comprobaciones con nombres del registro. Al final, los cuadernos reales del curso.
"""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers.checks import RESULT_MIME, STRICT_ENV
from helpers.checks.registry import EXERCISES, NOTEBOOKS, exercises_for
from helpers.exercise_notebooks import NOTEBOOKS_DIR, SOLUTIONS_DIR, checks_called, exercise_notebook
from helpers.grade import main
from helpers.grading import (
    Grade,
    SubmissionError,
    check_results,
    collect,
    csv_header,
    expand_paths,
    grade_file,
    grade_paths,
    identify,
    table,
    write_csv,
)
from helpers.paths import COURSE_ROOT, OUTPUT_ENV

NOTEBOOK = "load_lora_adapter_example"  # el sintético usa sus tres ejercicios: 1 + 2 + 3 = 6 puntos
FULL = {"load_adapter": 1, "merge_adapter": 2, "switch_adapters": 3}
ZERO = dict.fromkeys(FULL, 0)

SETUP = '''from types import SimpleNamespace
from helpers.checks import exercise, expect

def make(name, value):
    def check(x):
        expect(x is not None, f"Todavía no hay respuesta para {name}.")
        expect(x == value, f"Vale {x!r}; prueba con {value}.")
        return f"{name}: bien."
    check.__name__ = name
    return exercise("load_lora_adapter_example", hint=f"Usa {value}.")(check)

checks = SimpleNamespace(load_adapter=make("load_adapter", 1), merge_adapter=make("merge_adapter", 2),
                         switch_adapters=make("switch_adapters", 3))'''

ENV_PROBE = '''import os, sys
from helpers.paths import output_dir
print(repr(os.environ.get("CURSO_LORA_STRICT")), output_dir(), os.getcwd(), sys.executable, sep="\\n")
(output_dir() / "escrito.txt").write_text("hola")'''


def solution_cells(**replace):
    """Celdas de un cuaderno de soluciones sintético; ``replace`` cambia celdas por su clave."""
    cells = {
        "intro": new_markdown_cell("# Cuaderno sintético"),
        "setup": new_code_cell(SETUP),
        "a": new_code_cell("### BEGIN SOLUTION\na = 1\n### END SOLUTION"),
        "check_a": new_code_cell("checks.load_adapter(a)"),
        "env": new_code_cell(ENV_PROBE),
        "b": new_code_cell("### BEGIN SOLUTION\nb = 2\n### END SOLUTION"),
        "check_b": new_code_cell("checks.merge_adapter(b)"),
        "boom": new_code_cell("1 / 0  # una celda que falla no detiene la corrección"),
        "c": new_code_cell("### BEGIN SOLUTION\nc = 3\n### END SOLUTION"),
        "check_c": new_code_cell("checks.switch_adapters(c)"),
    }
    for key, source in replace.items():
        cells[key] = new_code_cell(source)
    return list(cells.values())


def notebook(cells, meta=NOTEBOOK):
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if meta:
        metadata["curso_lora"] = {"notebook": meta}
    return new_notebook(cells=cells, metadata=metadata)


def write(tmp_path, name, nb):
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def missing(name):
    return f"falta la comprobación de {name} (¿borraste o renombraste la llamada checks.{name}(...)?)"


def fingerprint(path):
    return path.read_bytes(), os.stat(path).st_mtime_ns


# --- cuadernos ejecutados de verdad (un kernel por entrega) ------------------------------------------

def test_a_solution_gets_full_points_on_a_copy_in_a_clean_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")  # la corrección lo quita: un ❌ no debe romper la ejecución
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path / "salidas_del_profesor"))
    path = write(tmp_path, "ana.ipynb", notebook(solution_cells()))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = fingerprint(path)

    grade = grade_file(path, timeout=120)

    assert (grade.cuaderno, grade.points, grade.total, grade.maximo) == (NOTEBOOK, FULL, 6, 6)
    assert grade.motivo == ""
    assert fingerprint(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ana.ipynb"]
    strict, output, cwd, python = grade.executed.cells[4].outputs[0].text.splitlines()
    assert strict == "None" and python == sys.executable
    assert os.path.dirname(output) == cwd and os.path.basename(cwd).startswith("curso-lora-correccion-")
    assert not os.path.exists(cwd)  # la carpeta temporal se borra al acabar
    assert not str(output).startswith(str(COURSE_ROOT)) and not (tmp_path / "salidas_del_profesor").exists()
    assert [o.output_type for o in grade.executed.cells[7].outputs] == ["error"]  # 1/0, y siguió


def test_the_untouched_exercise_version_gets_zero_even_with_forged_outputs(tmp_path):
    nb = exercise_notebook(notebook(solution_cells()))
    for cell in nb.cells:  # salidas guardadas que dicen "aprobado": no cuentan, solo cuenta lo ejecutado
        if cell.cell_type == "code" and checks_called(cell.source):
            (name,) = checks_called(cell.source)
            cell.outputs = [new_output("display_data", data={RESULT_MIME: {
                "notebook": NOTEBOOK, "exercise": name, "passed": True, "points": 3, "max_points": 3}})]
    path = write(tmp_path, "load_lora_adapter_example.ipynb", nb)

    grade = grade_file(path, timeout=120)

    assert (grade.points, grade.total, grade.maximo, grade.motivo) == (ZERO, 0, 6, "")
    assert check_results(grade.executed, NOTEBOOK) == dict.fromkeys(FULL, False)  # cada ❌ se mostró
    texts = [o.data["text/plain"] for c in grade.executed.cells for o in c.get("outputs", [])
             if o.output_type == "display_data"]
    assert any("❌" in t and "Todavía no hay respuesta para load_adapter" in t for t in texts)


def test_deleted_renamed_and_crashing_check_calls_each_get_their_reason(tmp_path):
    cells = solution_cells(check_a="# checks.load_adapter(a)  # la borré",
                           check_b="checks.merge_adaptor(b)",
                           c="c = variable_que_no_existe")
    grade = grade_file(write(tmp_path, "entrega.ipynb", notebook(cells)), timeout=120)
    assert grade.points == ZERO and grade.total == 0
    assert grade.motivos == [
        missing("load_adapter"),
        missing("merge_adapter"),
        "la celda de checks.switch_adapters(...) dio un error: NameError: name 'c' is not defined",
    ]


def test_a_timeout_keeps_the_points_earned_before_it(tmp_path):
    path = write(tmp_path, "lenta.ipynb", notebook(solution_cells(env="import time\ntime.sleep(600)")))
    start = time.monotonic()
    grade = grade_file(path, timeout=8)
    assert time.monotonic() - start < 120
    assert grade.points == {"load_adapter": 1, "merge_adapter": 0, "switch_adapters": 0}
    assert grade.motivos == ["se agotó el tiempo (8 s por cuaderno) en la celda 5; "
                             "cuentan las comprobaciones hechas hasta entonces"]


def test_a_dying_kernel_keeps_the_points_earned_before_it(tmp_path):
    path = write(tmp_path, "muere.ipynb", notebook(solution_cells(env="import os\nos._exit(1)")))
    grade = grade_file(path, timeout=120)
    assert grade.points == {"load_adapter": 1, "merge_adapter": 0, "switch_adapters": 0}
    assert len(grade.motivos) == 1 and grade.motivos[0].startswith("el kernel se detuvo en la celda 5")


# --- archivos que no se pueden corregir: fila con motivo, sin kernel ---------------------------------

def _valid_text(meta=NOTEBOOK):
    return nbformat.writes(notebook(solution_cells(), meta=meta))


BAD_FILES = {
    "notas.txt": ("hola, profe", "no es un cuaderno de Jupyter: no es JSON"),
    "foto.ipynb": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "no es un archivo de texto"),
    "vacio.ipynb": ("", "el archivo está vacío"),
    "cortado.ipynb": (_valid_text()[:300], "el cuaderno está dañado o incompleto"),
    "viejo.ipynb": (json.dumps({"nbformat": 2, "nbformat_minor": 0, "worksheets": [], "metadata": {}}),
                    "formato de cuaderno no compatible (nbformat 2"),
    "futuro.ipynb": (json.dumps({"nbformat": 9, "nbformat_minor": 0, "cells": [], "metadata": {}}),
                     "formato de cuaderno no compatible (nbformat 9"),
    "lista.ipynb": ("[1, 2]", "es JSON, pero no tiene 'nbformat'"),
    "invalido.ipynb": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                   "cells": [{"cell_type": "code"}]}), "el cuaderno no es válido"),
    "tarea_de_otro_curso.ipynb": (_valid_text(meta=None), "no reconozco el cuaderno"),
    "tarea.ipynb": (_valid_text(meta="otro_cuaderno"), "no reconozco el cuaderno"),
}


def _make_bad(tmp_path, name):
    content, _ = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_cannot_be_graded_gets_a_row_with_its_reason(tmp_path, name):
    path = _make_bad(tmp_path, name)
    before = fingerprint(path)
    grade = grade_file(path)
    assert BAD_FILES[name][1] in grade.motivo
    assert (grade.cuaderno, grade.total, grade.maximo, grade.executed) == (None, 0, None, None)
    assert fingerprint(path) == before


def test_a_broken_file_whose_name_says_the_notebook_is_listed_with_it(tmp_path):
    path = tmp_path / "lora_finetuning.ipynb"
    path.write_text(_valid_text()[:200], encoding="utf-8")
    grade = grade_file(path)
    assert grade.cuaderno == "lora_finetuning"
    assert grade.maximo == sum(e.points for e in exercises_for("lora_finetuning"))
    assert grade.total == 0 and set(grade.points) == {e.name for e in exercises_for("lora_finetuning")}
    assert "dañado o incompleto" in grade.motivo


def test_a_missing_file_gets_a_row():
    grade = grade_file("no/existe/entrega.ipynb")
    assert grade.motivo == "no encuentro el archivo" and grade.archivo == "no/existe/entrega.ipynb"


def test_identify_by_metadata_then_by_filename():
    nb = notebook([], meta="lora_finetuning")
    assert identify(nb, "cualquier_nombre.ipynb") == "lora_finetuning"  # los metadatos mandan
    bare = notebook([], meta=None)
    assert identify(bare, "lora_finetuning.ipynb") == "lora_finetuning"
    assert identify(bare, "Ana-lora_finetuning (1).ipynb") == "lora_finetuning"
    assert identify(notebook([], meta="desconocido"), "load_lora_adapter_example.ipynb") == NOTEBOOK
    with pytest.raises(SubmissionError, match="no reconozco el cuaderno .* debe ser uno de: "):
        identify(bare, "entrega.ipynb")


# --- leer los resultados (sin kernel) ----------------------------------------------------------------

def result(name, passed, notebook_name=NOTEBOOK, points=None, as_text=False):
    payload = {"notebook": notebook_name, "exercise": name, "passed": passed, "points": points or 0,
               "max_points": 9}
    return new_output("display_data", data={RESULT_MIME: json.dumps(payload) if as_text else payload})


def executed_cell(source, outputs=(), count=1):
    cell = new_code_cell(source, outputs=list(outputs))
    cell.execution_count = count
    return cell


def test_collect_the_last_result_counts_and_points_come_from_the_registry():
    nb = notebook([
        executed_cell("checks.load_adapter(a)", [result("load_adapter", True, points=99)]),
        executed_cell("checks.load_adapter(a)", [result("load_adapter", False)]),  # la última cuenta
        executed_cell("checks.merge_adapter(b)", [result("merge_adapter", False),
                                                  result("merge_adapter", True, as_text=True)]),
        executed_cell("checks.switch_adapters(c)", [result("switch_adapters", True, notebook_name="otro")]),
    ])
    points, reasons = collect(nb, NOTEBOOK)
    assert points == {"load_adapter": 0, "merge_adapter": 2, "switch_adapters": 0}
    assert reasons == [
        "checks.switch_adapters(...) no dio resultado (¿está dentro de un if, de una función o de un try?)"]


def test_collect_explains_missing_results():
    error = new_output("error", ename="NameError", evalue="name 'b' is not defined", traceback=[])
    nb = notebook([
        executed_cell("checks.merge_adapter(b)", [error]),
        new_code_cell("checks.switch_adapters(c)"),  # no se ejecutó
    ])
    _, reasons = collect(nb, NOTEBOOK)
    assert reasons == [
        missing("load_adapter"),
        "la celda de checks.merge_adapter(...) dio un error: NameError: name 'b' is not defined",
        "la celda de checks.switch_adapters(...) no se ejecutó",
    ]
    _, reasons = collect(nb, NOTEBOOK, stopped=True)  # tras un tiempo agotado basta con ese motivo
    assert len(reasons) == 2
    _, reasons = collect(nb, NOTEBOOK, calls={"load_adapter", "merge_adapter", "switch_adapters"})
    assert reasons[0] == "la celda de checks.load_adapter(...) no se ejecutó"


# --- lote, CSV, tabla y orden de línea ----------------------------------------------------------------

def test_expand_paths_takes_notebooks_from_folders_recursively_once(tmp_path):
    (tmp_path / "ana").mkdir()
    (tmp_path / "ana" / ".ipynb_checkpoints").mkdir()
    for rel in ["b.ipynb", "ana/a.IPYNB", "ana/.ipynb_checkpoints/a-checkpoint.ipynb", "ana/notas.txt"]:
        (tmp_path / rel).write_text("{}")
    (tmp_path / "vacia").mkdir()
    files, warnings = expand_paths([tmp_path, tmp_path / "b.ipynb", tmp_path / "vacia", "suelto.txt"])
    assert files == [tmp_path / "ana" / "a.IPYNB", tmp_path / "b.ipynb", Path("suelto.txt")]
    assert warnings == [f"la carpeta {tmp_path / 'vacia'} no tiene cuadernos .ipynb"]


def test_grade_paths_goes_on_after_bad_files(tmp_path):
    bad = [_make_bad(tmp_path, name) for name in ("vacio.ipynb", "notas.txt", "cortado.ipynb")]
    seen = []
    grades = grade_paths([*bad, tmp_path / "falta.ipynb"], on_grade=lambda i, n, g: seen.append((i, n)))
    assert [g.archivo for g in grades] == [str(p) for p in bad] + [str(tmp_path / "falta.ipynb")]
    assert all(g.motivo for g in grades) and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_csv_has_one_column_per_registered_exercise_and_is_utf8(tmp_path):
    grades = [
        Grade("entregas/ana.ipynb", NOTEBOOK, dict(FULL), 6),
        Grade("entregas/íñigo.ipynb", NOTEBOOK, {**ZERO, "load_adapter": 1}, 6, [missing("merge_adapter")]),
        Grade("entregas/roto.ipynb", None, {}, None, ["el archivo está vacío"]),
    ]
    csv_path = tmp_path / "notas.csv"
    csv_path.write_text("viejo")
    write_csv(grades, csv_path)
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    names = [e.name for e in EXERCISES]
    assert rows[0] == ["archivo", "cuaderno", *names, "total", "maximo", "motivo"] == csv_header()
    ana, inigo, roto = (dict(zip(rows[0], row)) for row in rows[1:])
    assert (ana["load_adapter"], ana["switch_adapters"], ana["total"], ana["maximo"], ana["motivo"]) == \
        ("1", "3", "6", "6", "")
    assert ana["lora_config"] == "" and ana["cuaderno"] == NOTEBOOK  # ejercicio de otro cuaderno: vacío
    assert (inigo["archivo"], inigo["merge_adapter"], inigo["motivo"]) == (
        "entregas/íñigo.ipynb", "0", missing("merge_adapter"))
    assert (roto["cuaderno"], roto["total"], roto["maximo"], roto["load_adapter"]) == ("", "0", "", "")
    assert not list(tmp_path.glob(".*parcial"))

    text = table(grades)
    assert f"Cuaderno {NOTEBOOK} (máximo 6 puntos)" in text and "6/6" in text and "1/1" in text
    assert "Entregas sin corregir" in text and "el archivo está vacío" in text


@pytest.mark.parametrize("args, message", [
    ([], "indica al menos una entrega"),
    (["{sub}", "--csv", "{tmp}"], "es una carpeta"),
    (["{txt}", "--csv", "{txt}"], "es una de las entregas"),
    (["{sub}", "--csv", "{sub}"], "parece un cuaderno"),
    (["{sub}", "--timeout", "0"], "--timeout debe ser"),
    (["{empty}"], "no hay ninguna entrega"),
    (["{tmp}", "--ejecutados", "{tmp}/ejecutados"], "dentro de una carpeta de entregas"),
])
def test_cli_usage_errors_exit_2_and_touch_nothing(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    sub, txt, empty = tmp_path / "ana.ipynb", tmp_path / "ana.txt", tmp_path / "vacia"
    sub.write_text(_valid_text())
    txt.write_text("hola")
    empty.mkdir()
    before = fingerprint(sub), fingerprint(txt)
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(sub=sub, txt=txt, tmp=tmp_path, empty=empty) for a in args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert (fingerprint(sub), fingerprint(txt)) == before and not (tmp_path / "notas.csv").exists()


def test_cli_end_to_end(tmp_path):
    """`python -m helpers.grade` con una carpeta, un archivo roto y uno bueno: tabla, CSV y ejecutados."""
    entregas = tmp_path / "entregas"
    (entregas / "luis").mkdir(parents=True)
    (entregas / "luis" / ".ipynb_checkpoints").mkdir()
    write(entregas / "luis", "load_lora_adapter_example.ipynb", exercise_notebook(notebook(solution_cells())))
    write(entregas / "luis" / ".ipynb_checkpoints", "load_lora_adapter_example-checkpoint.ipynb",
          notebook(solution_cells()))
    good = write(tmp_path, "ana.ipynb", notebook(solution_cells()))
    broken = _make_bad(tmp_path, "cortado.ipynb")
    csv_path = tmp_path / "notas.csv"
    csv_path.write_text("se reescribe")
    before = [fingerprint(p) for p in (good, broken)]

    run = subprocess.run([sys.executable, "-m", "helpers.grade", "ana.ipynb", "cortado.ipynb", "entregas",
                          "--csv", "notas.csv", "--timeout", "120", "--ejecutados", "ejecutados"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stderr
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = [dict(zip(csv_header(), row)) for row in list(csv.reader(handle))[1:]]
    assert [(r["archivo"], r["total"], r["maximo"]) for r in rows] == [
        ("ana.ipynb", "6", "6"), ("cortado.ipynb", "0", ""),
        (os.path.join("entregas", "luis", "load_lora_adapter_example.ipynb"), "0", "6")]
    assert "dañado o incompleto" in rows[1]["motivo"] and rows[2]["motivo"] == ""
    assert f"Cuaderno {NOTEBOOK} (máximo 6 puntos)" in run.stdout and "Notas de 3 entrega(s)" in run.stdout
    assert sorted(p.name for p in (tmp_path / "ejecutados").iterdir()) == [
        "ana.ejecutado.ipynb", "entregas_luis_load_lora_adapter_example.ejecutado.ipynb"]
    assert [fingerprint(p) for p in (good, broken)] == before


# --- los cuadernos reales del curso --------------------------------------------------------------------

def _course_notebook(folder, name):
    path = folder / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"todavía no existe {path.relative_to(COURSE_ROOT)}")
    return path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_course_notebooks_are_recognised_and_keep_every_check_call(name):
    for folder in (SOLUTIONS_DIR, NOTEBOOKS_DIR):
        path = _course_notebook(folder, name)
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.get("curso_lora", {}).get("notebook") == name, f"{path.name}: faltan los metadatos"
        calls = {n for c in nb.cells if c.cell_type == "code" for n in checks_called(c.source)}
        assert {e.name for e in exercises_for(name)} <= calls, f"{path}: falta alguna llamada checks.X(...)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_committed_solution_outputs_give_full_points(name):
    nb = nbformat.read(_course_notebook(SOLUTIONS_DIR, name), as_version=4)
    points, reasons = collect(nb, identify(nb, f"{name}.ipynb"))
    assert reasons == [] and points == {e.name: e.points for e in exercises_for(name)}


_graded = {}


def graded(folder, name):
    """La corrección de un cuaderno del curso, una sola vez por sesión (ejecutarlo cuesta minutos)."""
    path = _course_notebook(folder, name)
    if path not in _graded:
        before = fingerprint(path)
        _graded[path] = grade_file(path)
        assert fingerprint(path) == before, f"la corrección modificó {path}"
    return _graded[path]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_grading_a_solution_notebook_gives_full_points(name):
    grade = graded(SOLUTIONS_DIR, name)
    assert grade.motivo == "" and grade.total == grade.maximo == sum(e.points for e in exercises_for(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_grading_an_untouched_exercise_notebook_gives_zero_without_crashing(name):
    grade = graded(NOTEBOOKS_DIR, name)
    assert grade.cuaderno == name and grade.total == 0 and grade.maximo > 0
    assert not [m for m in grade.motivos if m.startswith(("se agotó", "el kernel", "no pude", "la ejecución",
                                                          "error interno", "falta la comprobación"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_in_the_untouched_exercise_notebook_every_check_answers_with_a_cross(name):
    """Cada celda queda ejecutable hasta su comprobación: el alumno ve ❌ y un mensaje, no una traza."""
    grade = graded(NOTEBOOKS_DIR, name)
    assert grade.motivo == ""
    assert check_results(grade.executed, name) == {e.name: False for e in exercises_for(name)}
