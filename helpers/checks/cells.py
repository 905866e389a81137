"""Cómo se reconocen en un cuaderno las zonas de solución y las llamadas de comprobación.

Lo usan las comprobaciones (``.solution()``), la corrección (preparar la entrega) y el taller (generar los
cuadernos de ejercicios): una sola definición de los marcadores y de qué es ``checks.X(...)``.
"""

from __future__ import annotations

import ast
import re
import textwrap

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


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


def parse_cell(source: str) -> ast.Module:
    """El árbol de una celda; entiende la sintaxis de IPython (``%magia``, ``!orden``)."""
    try:
        return ast.parse(source)
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source))


def checks_called(source: str) -> list[str]:
    """Los ejercicios que una celda comprueba: ``checks.X(...)`` (no ``checks.X.hint()`` ni comentarios)."""
    try:
        tree = parse_cell(source)
    except SyntaxError:  # celda con un error de sintaxis: la llamada cuenta si está escrita
        code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
        return re.findall(r"(?<![\w.])checks\.(\w+)\s*\(", code)
    return [node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks"]


def without_outputs(nb):
    """Copia del cuaderno sin salidas, contadores ni tiempos de ejecución (no modifica ``nb``)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    return nb
