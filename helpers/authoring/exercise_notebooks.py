"""Genera los cuadernos de ejercicios (`notebooks/`) a partir de las soluciones (`solutions/`).

Las soluciones son la única fuente. Cada zona entre ``### BEGIN SOLUTION`` y ``### END SOLUTION``
se sustituye por un ``# TODO`` que deja la celda ejecutable: los nombres que la zona asignaba quedan
en ``None``, así la comprobación siguiente responde con su mensaje en vez de con un error. Se quitan
las salidas y los contadores de ejecución; todo lo demás queda igual.

Uso: ``python -m helpers.authoring.exercise_notebooks`` (escribe; guarda antes una copia de lo que sustituye en
``salidas/copias_de_notebooks/``) o ``--check`` (solo comprueba).
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
import time
from pathlib import Path

import nbformat

from ..checks.cells import BEGIN, END, checks_called, parse_cell, without_outputs
from ..paths import COURSE_ROOT, NOTEBOOKS_DIR, SOLUTIONS_DIR, output_dir

TODO = "# TODO: completa este ejercicio{produce}. ¿Atascado? Prueba checks.{name}.hint()"
# El núcleo tal como lo anuncia ipykernel (``ipykernel.kernelspec.get_kernel_dict()``): si el cuaderno dice
# otro nombre («Python 3»), JupyterLab lo corrige al abrirlo y lo marca como modificado (●), y al cerrarlo
# pregunta si se guarda aunque el alumno no haya tocado nada.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _bound(target) -> list[str]:
    """Nombres que liga un destino de asignación (``x``, ``a, *b``), no ``obj.attr`` ni ``d[k]``."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _bound(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _bound(element)]
    return []


def _bindings(statements) -> list[str]:
    names = []
    for node in statements:
        if isinstance(node, ast.Assign):
            names += [name for target in node.targets for name in _bound(target)]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            names += _bound(node.target)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.For, ast.AsyncFor)):  # la variable del bucle no es un resultado
            names += _bindings(node.body) + _bindings(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            names += [name for item in node.items if item.optional_vars
                      for name in _bound(item.optional_vars)]
            names += _bindings(node.body)
        elif isinstance(node, (ast.If, ast.While)):
            names += _bindings(node.body) + _bindings(node.orelse)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            names += _bindings(node.body) + _bindings(node.orelse) + _bindings(node.finalbody)
            for handler in node.handlers:
                names += _bindings(handler.body)
    return names


def assigned_names(code: str) -> list[str]:
    """Nombres que el código liga en el ámbito del cuaderno (``x = ...``, ``def f``, ``for x in``...).

    Entra en los bloques (``for``, ``if``, ``with``, ``try``...), que en Python no crean ámbito, pero no
    en funciones ni clases. ``obj.attr = ...`` y ``d[k] = ...`` no ligan ningún nombre.
    """
    try:
        tree = parse_cell(textwrap.dedent(code))
    except SyntaxError:
        return []
    return list(dict.fromkeys(_bindings(tree.body)))


def strip_solutions(source: str, exercise: str) -> str:
    """La celda sin sus zonas de solución: un TODO y los nombres asignados a ``None``."""
    out, region, indent = [], None, ""
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == BEGIN:
            if region is not None:
                raise ValueError(f"'{BEGIN}' repetido en la línea {number} sin cerrar el anterior "
                                 f"(ejercicio {exercise!r}): añade '{END}'.")
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif line.strip() == END:
            if region is None:
                raise ValueError(f"'{END}' en la línea {number} sin un '{BEGIN}' antes "
                                 f"(ejercicio {exercise!r}).")
            names = assigned_names("\n".join(region))
            produce = f": crea {', '.join(f'`{n}`' for n in names)}" if names else ""
            out.append(indent + TODO.format(name=exercise, produce=produce))
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


def exercise_notebook(solution):
    """Versión de ejercicios de un cuaderno de soluciones (un objeto de nbformat; no lo modifica).

    El núcleo (``kernelspec``) pasa a ser el que anuncia ipykernel, para que abrirlo no lo marque modificado.
    """
    nb = without_outputs(solution)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (BEGIN in cell.source or END in cell.source):
            try:
                cell.source = strip_solutions(cell.source, exercise_for_cell(nb.cells, index))
            except ValueError as error:
                raise ValueError(f"Celda {index + 1}: {error}") from None
    return nb


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def expected_exercise_notebooks(solutions_dir: Path | None = None,
                                notebooks_dir: Path | None = None) -> dict[Path, str]:
    """Lo que `notebooks/` debe contener: ruta -> texto (por defecto, las carpetas del curso)."""
    solutions_dir = Path(solutions_dir or SOLUTIONS_DIR)
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    expected = {}
    for src in sorted(solutions_dir.glob("*.ipynb")):
        try:
            expected[notebooks_dir / src.name] = render(exercise_notebook(nbformat.read(src, as_version=4)))
        except ValueError as error:
            raise ValueError(f"{src.name}: {error}") from None
    return expected


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(COURSE_ROOT))
    except ValueError:
        return str(path)


def _backup(path: Path, text: str) -> Path:
    """Copia ``text`` en ``salidas/copias_de_notebooks/`` con un nombre que no pisa copias anteriores."""
    folder = output_dir("copias_de_notebooks")
    stem = f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    backup, n = folder / f"{stem}.ipynb", 1
    while backup.exists():
        n += 1
        backup = folder / f"{stem}-{n}.ipynb"
    backup.write_text(text, encoding="utf-8")
    return backup


def main(argv: list[str] | None = None, *, solutions_dir: Path | None = None,
         notebooks_dir: Path | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="no escribe; falla si notebooks/ no está al día")
    args = parser.parse_args(argv)
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    expected = expected_exercise_notebooks(solutions_dir, notebooks_dir)
    stale = []
    for path, text in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            if current is not None:  # nunca se pierde lo que alguien escribió en notebooks/
                print(f"copia de seguridad de la versión anterior: {_backup(path, current)}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"escrito {_shown(path)}")
    orphans = sorted(set(notebooks_dir.glob("*.ipynb")) - set(expected))
    if orphans:
        print("Sin cuaderno de soluciones (no se tocan; bórralos si sobran): "
              + ", ".join(p.name for p in orphans))
    if args.check and (stale or orphans):
        if stale:
            print("Desactualizados (ejecuta `make exercises`): " + ", ".join(p.name for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
