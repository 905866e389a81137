"""Genera los cuadernos de ejercicios (`notebooks/`) a partir de las soluciones (`solutions/`).

Las soluciones son la única fuente. Cada zona entre ``### BEGIN SOLUTION`` y ``### END SOLUTION``
se sustituye por un ``# TODO`` que deja la celda ejecutable: los nombres que la zona asignaba quedan
en ``None``, así la comprobación siguiente responde con su mensaje en vez de con un error. Se quitan
las salidas y los contadores de ejecución; todo lo demás queda igual.

Uso: ``python -m helpers.exercise_notebooks`` (escribe; guarda antes una copia de lo que sustituye en
``salidas/copias_de_notebooks/``) o ``--check`` (solo comprueba).
"""

from __future__ import annotations

import ast
import argparse
import sys
import textwrap
import time
from pathlib import Path

import nbformat

from .paths import COURSE_ROOT, output_dir

SOLUTIONS_DIR = COURSE_ROOT / "solutions"
NOTEBOOKS_DIR = COURSE_ROOT / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
TODO = "# TODO: completa este ejercicio. ¿Atascado? Prueba checks.{name}.hint()"


def solution_regions(source: str) -> list[str]:
    """El código de cada zona de solución de una celda (sin los marcadores, sin sangría común)."""
    regions, current = [], None
    for line in source.splitlines():
        if line.strip() == BEGIN:
            current = []
        elif line.strip() == END and current is not None:
            regions.append(textwrap.dedent("\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return regions


def assigned_names(code: str) -> list[str]:
    """Nombres que el código asigna en su nivel superior (``x = ...``, ``def f``, ``for x in``...)."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.With,)):
            targets = [item.optional_vars for item in node.items if item.optional_vars]
        for target in targets:
            names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))


def strip_solutions(source: str, exercise: str) -> str:
    """La celda sin sus zonas de solución: un TODO y los nombres asignados a ``None``."""
    out, region, indent = [], None, ""
    for line in source.splitlines():
        if line.strip() == BEGIN:
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif line.strip() == END and region is not None:
            names = assigned_names("\n".join(region))
            out.append(indent + TODO.format(name=exercise))
            out += [f"{indent}{name} = None" for name in names] or ([f"{indent}pass"] if indent else [])
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise ValueError(f"Falta '{END}' en una celda del ejercicio {exercise!r}.")
    return "\n".join(out)


def exercise_for_cell(cells: list, index: int) -> str:
    """El ejercicio al que pertenece una celda: el de la primera llamada ``checks.X(`` que la sigue."""
    for cell in cells[index:]:
        for name in checks_called(cell.source if cell.cell_type == "code" else ""):
            return name
    return "ejercicio"


def checks_called(source: str) -> list[str]:
    """Los ejercicios que una celda comprueba: ``checks.X(...)`` (no ``checks.X.hint()``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks"]


def exercise_notebook(solution):
    """Versión de ejercicios de un cuaderno de soluciones (un objeto de nbformat)."""
    nb = nbformat.from_dict(solution)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source:
            cell.source = strip_solutions(cell.source, exercise_for_cell(nb.cells, index))
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return nb


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def expected_exercise_notebooks() -> dict[Path, str]:
    """Lo que `notebooks/` debe contener: ruta -> texto."""
    return {NOTEBOOKS_DIR / src.name: render(exercise_notebook(nbformat.read(src, as_version=4)))
            for src in sorted(SOLUTIONS_DIR.glob("*.ipynb"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="no escribe; falla si notebooks/ no está al día")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_exercise_notebooks().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            if current is not None:  # nunca se pierde lo que alguien escribió en notebooks/
                backup = output_dir("copias_de_notebooks") / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
                backup.write_text(current, encoding="utf-8")
                print(f"copia de seguridad de la versión anterior: {backup}")
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"escrito {path.relative_to(COURSE_ROOT)}")
    if args.check and stale:
        print("Desactualizados (ejecuta `make exercises`): " + ", ".join(p.name for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
