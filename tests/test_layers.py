"""La casa por capas: la biblioteca del alumno abajo, las comprobaciones encima y, arriba, la corrección y el taller.

Se construye el grafo de imports de ``helpers/`` (también los que van dentro de una función) y se comprueba que
no tiene ciclos y que ningún módulo importa de una capa de más arriba ni de una vecina.
"""

import ast
from pathlib import Path

from helpers.paths import COURSE_ROOT

HELPERS = COURSE_ROOT / "helpers"
# capa -> las capas que puede importar (además de sí misma)
ALLOWED = {
    "biblioteca": set(),
    "checks": {"biblioteca"},
    "grading": {"checks", "biblioteca"},
    "authoring": {"checks", "biblioteca"},
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else "biblioteca"


def import_graph(root: Path = HELPERS) -> dict[str, set[str]]:
    """{módulo: módulos de helpers que importa}, con los imports relativos resueltos."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                # ``from . import handover`` importa el módulo; ``from .core import x``, el módulo ``core``
                targets = submodules if all(m in paths for m in submodules) else [base, *submodules]
            else:
                continue
            found |= {target for target in targets if target in paths and target != name}
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Los ciclos del grafo (componentes fuertemente conexas de más de un módulo), con Tarjan."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({layer(a)}) importa {b} ({layer(b)})" for a, targets in graph.items() for b in targets
                  if layer(b) != layer(a) and layer(b) not in ALLOWED[layer(a)])


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "helpers.checks.registry" in graph["helpers.grading.judge"]  # from ..checks.registry import ...
    assert "helpers.grading.sandbox" in graph["helpers.grading.run"]  # from .sandbox import ...
    assert "helpers.model" in graph["helpers.checks.adapters"]  # dentro de una función
    assert "helpers.checks.handover" in graph["helpers.checks.finetuning"]  # from . import handover


def test_helpers_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_imports_from_a_higher_or_neighbouring_layer():
    assert upward_imports(import_graph()) == []


def test_every_layer_is_where_the_readme_says():
    assert {layer(m) for m in import_graph()} == set(ALLOWED)
    assert layer("helpers.model") == layer("helpers") == "biblioteca"
    assert layer("helpers.grading") == layer("helpers.grading.cli") == "grading"


def test_the_checks_fail_on_a_cycle_and_on_an_upward_import(tmp_path):
    fake = tmp_path / "helpers"
    for folder in (fake, fake / "checks", fake / "grading"):
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text("")
    (fake / "model.py").write_text("from .checks import core\n")  # la biblioteca importa las comprobaciones
    (fake / "checks" / "core.py").write_text("def f():\n    from ..grading import cli\n")  # y estas, la corrección
    (fake / "grading" / "cli.py").write_text("from ..model import x\n")
    graph = import_graph(fake)
    assert cycles(graph) == [["helpers.checks.core", "helpers.grading.cli", "helpers.model"]]
    assert upward_imports(graph) == ["helpers.checks.core (checks) importa helpers.grading.cli (grading)",
                                     "helpers.model (biblioteca) importa helpers.checks.core (checks)"]
