"""Un ejercicio tiene un solo nivel: el del registro, y así lo dicen la introducción del cuaderno, su sección y el README."""

import re

import nbformat
import pytest

from helpers.checks.cells import checks_called
from helpers.checks.registry import NOTEBOOKS, exercises_for
from helpers.paths import COURSE_ROOT, SOLUTIONS_DIR

LEVELS = "🐢🐕🦁"


def _levels(text: str) -> list[str]:
    return [char for char in text if char in LEVELS]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_introduction_lists_the_exercises_with_their_registry_levels(name):
    nb = nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
    intro = nb.cells[0].source
    assert _levels(intro) == [e.level for e in exercises_for(name)], (
        "los niveles de la introducción, en orden, deben ser los del registro")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_exercise_section_heading_has_its_registry_level(name):
    nb = nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
    heading, found = None, {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#") and _levels(line):
                    heading = line
        elif cell.cell_type == "code":
            for exercise in checks_called(cell.source):
                found.setdefault(exercise, heading)
    for exercise in exercises_for(name):
        assert found.get(exercise.name), f"{exercise.name}: no hay título con nivel antes de su comprobación"
        assert _levels(found[exercise.name]) == [exercise.level], (exercise.name, found[exercise.name])


def test_the_readme_tables_give_each_exercise_its_registry_level():
    readme = (COURSE_ROOT / "README.md").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        for exercise in exercises_for(name):
            rows = [line for line in readme.splitlines() if re.match(rf"\|\s*`{exercise.name}`\s*\|", line)]
            assert rows, f"el README no tiene la fila de {exercise.name}"
            assert all(_levels(row.split("|")[2]) == [exercise.level] for row in rows), rows


def test_the_readme_says_what_each_point_certifies_with_the_registry_points():
    readme = (COURSE_ROOT / "README.md").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        for exercise in exercises_for(name):
            rows = [line.strip() for line in readme.splitlines()
                    if re.match(rf"\s+\|\s*`{exercise.name}`\s*\|\s*\d+\s*\|", line)]
            assert len(rows) == 1, f"falta (o se repite) la fila de {exercise.name} en «Qué certifica cada punto»"
            assert int(rows[0].split("|")[2]) == exercise.points, rows[0]
