"""El complemento que repite cada ejercicio dentro de la ejecución de nbval: falla si la segunda vez cambia algo."""

import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.paths import COURSE_ROOT
from tests.nbval_rerun import rerun_plan, verdict

CHECK = '''class checks:
    @staticmethod
    def wrapped(ok):
        print(("✅ 🐢 Envuelve el modelo (1/1 puntos)" if ok else "❌ 🐢 Envuelve el modelo (0/1 puntos)")
              + "\\nmensaje")


checks.wrapped(layers == 1);'''


def notebook(solution: str):
    return new_notebook(cells=[new_code_cell("layers = 0"), new_code_cell(f"### BEGIN SOLUTION\n{solution}\n"
                                                                         "### END SOLUTION"),
                               new_code_cell("print('entre medias')"), new_code_cell(CHECK)],
                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def nbval(path):
    return subprocess.run([sys.executable, "-m", "pytest", str(path), "--nbval-lax", "--nbval-current-env", "-q",
                           "-p", "tests.nbval_rerun", "-p", "no:cacheprovider", f"--rootdir={COURSE_ROOT}"],
                          cwd=COURSE_ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_the_plan_repeats_from_the_solution_region_to_the_check():
    cells = notebook("layers += 1").cells
    assert rerun_plan(cells) == {3: [cells[1].source, cells[2].source, cells[3].source]}
    training = [*cells[:3], new_code_cell("checks.sft_trainer(trainer, after);")]
    assert rerun_plan(training, whole_training=False) == {3: [training[3].source]}  # make test: solo la comprobación
    assert rerun_plan(training) == {3: [c.source for c in training[1:]]}  # make test-completo: el ejercicio entero
    assert rerun_plan(cells, whole_training=False) == rerun_plan(cells)  # lo que no entrena, entero siempre
    assert verdict([{"output_type": "stream", "text": "✅ 🐢 Envuelve el modelo (1/1 puntos)\n…"}]) == \
        "✅ 🐢 Envuelve el modelo"


@pytest.mark.slow
def test_an_exercise_that_changes_state_when_run_again_fails_and_an_idempotent_one_passes(tmp_path):
    nbformat.write(notebook("layers += 1  # como envolver otra vez un modelo ya envuelto"), tmp_path / "mal.ipynb")
    nbformat.write(notebook("layers = 1"), tmp_path / "bien.ipynb")
    bad, good = nbval(tmp_path / "mal.ipynb"), nbval(tmp_path / "bien.ipynb")
    assert bad.returncode == 1 and "la primera vez «✅ 🐢 Envuelve el modelo»" in bad.stdout, bad.stdout
    assert good.returncode == 0, good.stdout
