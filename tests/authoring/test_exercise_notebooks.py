"""Una sola fuente: notebooks/ es exactamente lo que `make exercises` escribe a partir de solutions/."""

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers.authoring import exercise_notebooks as en
from helpers.authoring.exercise_notebooks import (
    TODO,
    assigned_names,
    exercise_notebook,
    expected_exercise_notebooks,
    main,
    render,
    strip_solutions,
)
from helpers.checks.cells import BEGIN, END, checks_called, solution_regions
from helpers.paths import NOTEBOOKS_DIR, OUTPUT_ENV, SOLUTIONS_DIR


def region(code: str, indent: str = "") -> str:
    lines = [BEGIN, *code.splitlines(), END]
    return "\n".join(indent + line if line else line for line in lines)


def executed(cell, count):
    """Una celda como la deja Jupyter tras ejecutarla: salida, contador y tiempos."""
    cell.execution_count = count
    cell.outputs = [new_output("stream", name="stdout", text="hola\n"),
                    new_output("display_data", data={"text/plain": "✅"})]
    cell.metadata["execution"] = {"iopub.execute_input": "2025-01-01T00:00:00Z"}
    return cell


def synthetic_solution():
    """Un cuaderno de soluciones pequeño y ejecutado, con lo que tienen los reales."""
    return new_notebook(cells=[
        new_markdown_cell("# Cuaderno\n### BEGIN SOLUTION en un markdown no se toca"),
        executed(new_code_cell("from helpers.checks import finetuning as checks\nRANKS = [4, 8]"), 1),
        executed(new_code_cell("# Ejercicio 🐢\n" + region("peft_config = LoraConfig(r=8)\nsteps = 3")
                               + "\nprint('listo')", metadata={"tags": ["ejercicio"]}), 2),
        executed(new_code_cell("# NBVAL_CHECK_OUTPUT\nchecks.lora_config(peft_config)"), 3),
        executed(new_code_cell("results = {}\nfor r in RANKS:\n" + region("results[r] = r * 2", "    ")
                               + "\nprint(results)"), 4),
        executed(new_code_cell("def train():\n" + region("model.train()", "    ")), 5),
        executed(new_code_cell("checks.rank_sweep(results)"), 6),
    ], metadata={"curso_lora": {"notebook": "lora_finetuning"},
                 "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


# --- la sincronía de verdad ------------------------------------------------------------------------

def test_notebooks_folder_is_what_make_exercises_writes():
    expected = expected_exercise_notebooks()
    present = set(NOTEBOOKS_DIR.glob("*.ipynb"))
    assert present == set(expected), (
        "notebooks/ no corresponde a solutions/: ejecuta `make exercises` (y borra los cuadernos que sobren)")
    stale = [p.name for p, text in expected.items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"Desactualizados (ejecuta `make exercises`): {stale}"
    assert {p.name for p in SOLUTIONS_DIR.glob("*.ipynb")} == {p.name for p in expected}


def test_main_check_agrees_with_the_real_folders(capsys):
    assert main(["--check"]) == 0, capsys.readouterr().out


# --- el mismo mecanismo en carpetas sintéticas ------------------------------------------------------

@pytest.fixture
def course(tmp_path, monkeypatch):
    """Carpetas de soluciones, cuadernos y salidas temporales (nunca las reales)."""
    solutions, notebooks, out = tmp_path / "solutions", tmp_path / "notebooks", tmp_path / "salidas"
    solutions.mkdir()
    nbformat.write(synthetic_solution(), solutions / "lora_finetuning.ipynb")
    monkeypatch.setenv(OUTPUT_ENV, str(out))
    return solutions, notebooks, out


def test_main_writes_then_check_passes_and_detects_drift(course, capsys):
    solutions, notebooks, out = course
    kw = {"solutions_dir": solutions, "notebooks_dir": notebooks}
    assert main(["--check"], **kw) == 1  # falta el cuaderno
    assert not notebooks.exists()  # --check no escribe
    assert main([], **kw) == 0
    written = notebooks / "lora_finetuning.ipynb"
    assert written.read_text(encoding="utf-8") == expected_exercise_notebooks(solutions, notebooks)[written]
    assert main(["--check"], **kw) == 0
    assert not (out / "copias_de_notebooks").exists()  # nada que guardar: no había versión anterior

    written.write_text(written.read_text(encoding="utf-8").replace("RANKS", "RANGOS"), encoding="utf-8")
    assert main(["--check"], **kw) == 1
    assert "Desactualizados" in capsys.readouterr().out

    solution = nbformat.read(solutions / "lora_finetuning.ipynb", as_version=4)
    solution.cells[1].source += "\nSEED = 0"
    nbformat.write(solution, solutions / "lora_finetuning.ipynb")
    main([], **kw)
    assert main(["--check"], **kw) == 0
    assert "SEED = 0" in written.read_text(encoding="utf-8")


def test_an_orphan_exercise_notebook_is_reported_not_deleted(course, capsys):
    solutions, notebooks, _ = course
    main([], solutions_dir=solutions, notebooks_dir=notebooks)
    orphan = notebooks / "viejo.ipynb"
    orphan.write_text("{}", encoding="utf-8")
    assert main([], solutions_dir=solutions, notebooks_dir=notebooks) == 0
    assert orphan.exists() and "viejo.ipynb" in capsys.readouterr().out
    assert main(["--check"], solutions_dir=solutions, notebooks_dir=notebooks) == 1


def test_a_differing_notebook_is_backed_up_before_being_replaced(course):
    solutions, notebooks, out = course
    notebooks.mkdir()
    mine = notebooks / "lora_finetuning.ipynb"
    mine.write_text("mi trabajo", encoding="utf-8")
    main([], solutions_dir=solutions, notebooks_dir=notebooks)
    backups = list((out / "copias_de_notebooks").glob("lora_finetuning-*.ipynb"))
    assert [b.read_text(encoding="utf-8") for b in backups] == ["mi trabajo"]
    assert mine.read_text(encoding="utf-8") != "mi trabajo"
    main([], solutions_dir=solutions, notebooks_dir=notebooks)  # ya al día: ninguna copia más
    assert len(list((out / "copias_de_notebooks").iterdir())) == 1


def test_backups_in_the_same_second_do_not_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    monkeypatch.setattr(en.time, "strftime", lambda fmt: "20250101-000000")
    first, second = en._backup(tmp_path / "a.ipynb", "uno"), en._backup(tmp_path / "a.ipynb", "dos")
    assert first != second and first.read_text() == "uno" and second.read_text() == "dos"


# --- qué hace con cada celda ------------------------------------------------------------------------

def test_exercise_notebook_strips_solutions_outputs_and_counts_and_keeps_the_rest():
    solution = synthetic_solution()
    before = copy.deepcopy(solution)
    nb = exercise_notebook(solution)
    assert solution == before  # no toca el cuaderno de soluciones
    assert {**nb.metadata, "kernelspec": None} == {**solution.metadata, "kernelspec": None}
    assert nb.metadata["kernelspec"] == en.KERNELSPEC and len(nb.cells) == len(solution.cells)
    for new, old in zip(nb.cells, solution.cells):
        assert new.cell_type == old.cell_type and new.get("id") == old.get("id")
        if new.cell_type == "code":
            assert new.outputs == [] and new.execution_count is None and "execution" not in new.metadata
            if BEGIN not in old.source:
                assert new.source == old.source
        else:
            assert new == old
    assert nb.cells[2].metadata == {"tags": ["ejercicio"]}
    assert nb.cells[2].source == ("# Ejercicio 🐢\n" + todo("lora_config", "peft_config", "steps")
                                  + "\npeft_config = None\nsteps = None\nprint('listo')")
    assert nb.cells[4].source == ("results = {}\nfor r in RANKS:\n    " + todo("rank_sweep")
                                  + "\n    pass\nprint(results)")  # results[r] = … no liga nombres
    assert nb.cells[5].source == "def train():\n    " + todo("rank_sweep") + "\n    pass"
    assert not [c for c in nb.cells if c.cell_type == "code" and (BEGIN in c.source or END in c.source)]
    assert nbformat.reads(render(nb), as_version=4) == nb


def test_the_exercise_cells_run_and_leave_the_names_as_none():
    nb = exercise_notebook(synthetic_solution())
    namespace = {"RANKS": [4, 8]}
    exec(nb.cells[2].source, namespace)  # noqa: S102 - la celda generada debe ejecutarse sin errores
    exec(nb.cells[4].source, namespace)  # noqa: S102
    exec(nb.cells[5].source, namespace)  # noqa: S102
    assert namespace["peft_config"] is None and namespace["steps"] is None and namespace["results"] == {}


def todo(exercise, *names):
    produce = f": crea {', '.join(f'`{n}`' for n in names)}" if names else ""
    return TODO.format(name=exercise, produce=produce)


def test_strip_keeps_indentation_and_binds_every_assigned_name_but_loop_variables():
    source = "if True:\n" + region("a, (b, *c) = 1, (2, 3)\nfor i in range(2):\n    d = i\nwith x() as e:\n"
                                   "    pass\ndef f():\n    g = 1\nm.attr = 1\nm[0] = 1", "    ")
    out = strip_solutions(source, "olora")
    assert out.splitlines() == ["if True:", "    " + todo("olora", *"abcdef"),
                                *(f"    {name} = None" for name in "abcdef")]


def test_the_todo_names_what_to_produce_and_never_stubs_a_loop_variable():
    source = region("answers = {}\nfor name in NAMES:\n    answers[name] = 1\nformat_of = dict(answers)")
    out = strip_solutions(source, "switch_adapters")
    assert "name = None" not in out and "crea `answers`, `format_of`" in out


def test_a_region_without_names_at_top_level_leaves_only_the_todo():
    assert strip_solutions(region("trainer.train()"), "sft_trainer") == todo("sft_trainer")


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN}\nx = 1", "Falta '### END SOLUTION'"),
    (f"x = 1\n{END}", "sin un '### BEGIN SOLUTION' antes"),
    (f"{BEGIN}\nx = 1\n{BEGIN}\ny = 2\n{END}", "repetido"),
])
def test_broken_markers_raise_a_clear_error(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source, "olora")


def test_broken_markers_name_the_cell_and_the_notebook(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 0"), new_code_cell(f"{BEGIN}\nx = 1"),
                             new_code_cell("checks.olora(x)")])
    with pytest.raises(ValueError, match=r"Celda 2: Falta .* 'olora'"):
        exercise_notebook(nb)
    nbformat.write(nb, tmp_path / "roto.ipynb")
    with pytest.raises(ValueError, match=r"roto\.ipynb: Celda 2"):
        expected_exercise_notebooks(tmp_path, tmp_path / "out")


def test_solution_regions_are_dedented_and_in_order():
    source = "a = 0\n" + region("x = 1") + "\nfor i in y:\n" + region("z = i\nw = 2", "    ")
    assert solution_regions(source) == ["x = 1", "z = i\nw = 2"]


def test_assigned_names_understands_ipython_syntax_and_ignores_broken_code():
    assert assigned_names("%time x = 1\ny = 2") == ["y"]
    assert assigned_names("x = (") == []


@pytest.mark.parametrize("source, names", [
    ("checks.lora_config(peft_config)", ["lora_config"]),
    ("ok = checks.olora(model, tokenizer=tok)\nprint(ok)", ["olora"]),
    ("checks.lora_config.hint()\nchecks.lora_config.solution()", []),
    ("# checks.lora_config(peft_config)", []),
    ("print('checks.lora_config(x)')", []),
    ("my.checks.lora_config(x)\nother.lora_config(x)", []),
    ("%matplotlib inline\nchecks.sft_trainer(trainer)", ["sft_trainer"]),
    ("!ls\nchecks.sft_trainer(trainer)", ["sft_trainer"]),
    ("x = (\nchecks.olora(m)  # checks.rank_sweep(r)", ["olora"]),  # error de sintaxis: cuenta lo escrito
])
def test_checks_called(source, names):
    assert checks_called(source) == names


def test_the_kernelspec_is_the_one_the_server_announces():
    """Con otro ``display_name``, JupyterLab marca el cuaderno modificado (●) nada más abrirlo (medido en el navegador)."""
    from ipykernel.kernelspec import KERNEL_NAME, get_kernel_dict

    announced = get_kernel_dict()
    assert en.KERNELSPEC == {"display_name": announced["display_name"], "language": announced["language"],
                             "name": KERNEL_NAME}
    for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        assert exercise_notebook(nbformat.read(path, as_version=4)).metadata["kernelspec"] == en.KERNELSPEC
