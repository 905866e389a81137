"""Ningún enlace roto: cada enlace o imagen relativa de los .md y de los cuadernos lleva a un archivo.

Se revisan todos los archivos .md del curso y las celdas Markdown de los cuadernos de ``notebooks/`` y
``solutions/``. Los enlaces externos (``https://...``, ``mailto:``...) y los que solo llevan un ancla
(``#seccion``) no se comprueban; el código (bloques y ``código en línea``) tampoco.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers.paths import COURSE_ROOT

SKIP_DIRS = {".git", ".venv", "venv", "salidas", "node_modules", "__pycache__", ".ipynb_checkpoints",
             ".pytest_cache", "build", "dist"}
NOTEBOOK_DIRS = ("notebooks", "solutions")


def markdown_files(root: Path = COURSE_ROOT) -> list[Path]:
    """Los .md del curso, sin entornos virtuales, salidas ni carpetas ocultas."""
    return sorted(p for p in root.rglob("*.md")
                  if not any(part in SKIP_DIRS or part.startswith(".") or part.endswith(".egg-info")
                             for part in p.relative_to(root).parts[:-1]))


def notebook_files(root: Path = COURSE_ROOT) -> list[Path]:
    return sorted(p for folder in NOTEBOOK_DIRS for p in (root / folder).glob("*.ipynb"))


def markdown_sources(path: Path) -> list[tuple[str, str]]:
    """(dónde, texto Markdown) de un .md, o de cada celda Markdown de un cuaderno."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        return [(f"celda {i + 1}", "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for i, c in enumerate(cells) if c.get("cell_type") == "markdown"]
    return [("", path.read_text(encoding="utf-8"))]


# --------------------------------------------------------------------------------------------------
# Extraer enlaces
# --------------------------------------------------------------------------------------------------

FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?^ {0,3}\1[`~]*[ \t]*$", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# [texto](destino "título") o ![alt](<destino con espacios>)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
HTML_ATTR = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _blank(match: re.Match) -> str:
    """Cambia el texto por espacios y conserva los saltos de línea (los números de línea no cambian)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def links(markdown: str) -> list[tuple[int, str]]:
    """(línea, destino) de cada enlace o imagen, fuera del código y de los comentarios HTML."""
    text = HTML_COMMENT.sub(_blank, FENCED.sub(_blank, markdown))
    text = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", "x", m.group(0)), text)  # `[a](b)` no es un enlace
    found = []
    for pattern in (INLINE_LINK, REFERENCE, HTML_ATTR):
        for match in pattern.finditer(text):
            target = match.group(1).strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((text.count("\n", 0, match.start()) + 1, target))
    return sorted(found)


def is_local(target: str) -> bool:
    return bool(target) and not target.startswith(("#", "//")) and not SCHEME.match(target)


def resolve(target: str, source: Path, root: Path = COURSE_ROOT) -> Path:
    """Ruta del archivo al que apunta un enlace relativo (sin ancla ni consulta), como en GitHub."""
    clean = unquote(re.split(r"[#?]", target, maxsplit=1)[0])
    base = root if clean.startswith("/") else source.parent
    return (base / clean.lstrip("/")).resolve()


def dead_links(path: Path, root: Path = COURSE_ROOT) -> list[str]:
    """Descripción de cada enlace relativo roto del archivo (vacía si no hay ninguno)."""
    problems = []
    for where, markdown in markdown_sources(path):
        for line, target in links(markdown):
            if not is_local(target):
                continue
            resolved = resolve(target, path, root)
            place = f"{path.relative_to(root)}:{' ' + where + ',' if where else ''} línea {line}"
            if root.resolve() not in resolved.parents and resolved != root.resolve():
                problems.append(f"{place}: {target!r} sale de la carpeta del curso")
            elif not resolved.exists():
                problems.append(f"{place}: {target!r} no existe")
    return problems


# --------------------------------------------------------------------------------------------------
# Pruebas
# --------------------------------------------------------------------------------------------------

FILES = markdown_files() + notebook_files()


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(COURSE_ROOT)) for p in FILES])
def test_no_dead_links(path):
    problems = dead_links(path)
    assert not problems, "Enlaces rotos:\n" + "\n".join(problems)


def test_the_course_documents_are_checked():
    names = {str(p.relative_to(COURSE_ROOT)) for p in FILES}
    assert {"README.md", "lora_adapters.md"} <= names


def test_links_finds_every_kind_of_link():
    text = (
        "Ver [la lección](lora_adapters.md#qué-es-lora) y ![figura](images/a%20b.png \"título\").\n"
        "[externo](https://example.org) [ancla](#arriba) [con espacios](<mi archivo.md>)\n"
        "`[no](codigo.md)` <img src=\"images/x.png\" width=400>\n"
        "```python\n[tampoco](bloque.md)\n```\n"
        "<!-- [ni esto](comentario.md) -->\n"
        "[ref]: docs/ref.md\n"
        "[`cuaderno`](notebooks/a.ipynb)\n"
    )
    assert links(text) == [
        (1, "images/a%20b.png"), (1, "lora_adapters.md#qué-es-lora"),
        (2, "#arriba"), (2, "https://example.org"), (2, "mi archivo.md"),
        (3, "images/x.png"), (8, "docs/ref.md"), (9, "notebooks/a.ipynb"),
    ]


def test_dead_links_reports_missing_files(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(b"")
    doc = tmp_path / "doc.md"
    doc.write_text("![ok](images/ok.png) [roto](notebooks/falta.ipynb) [fuera](../../etc/passwd) "
                   "[web](https://huggingface.co) [ancla](#x) [raiz](/images/ok.png#y)\n", encoding="utf-8")
    problems = dead_links(doc, tmp_path)
    assert len(problems) == 2
    assert "../../etc/passwd" in problems[0] and "sale de la carpeta" in problems[0]
    assert "notebooks/falta.ipynb" in problems[1] and "no existe" in problems[1]


def test_notebook_markdown_cells_are_checked(tmp_path):
    (tmp_path / "solutions").mkdir()
    nb = tmp_path / "solutions" / "x.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["Lee [la lección](../lora_adapters.md)\n"], "metadata": {}},
        {"cell_type": "code", "source": "# [no es un enlace](nada.md)", "metadata": {}, "outputs": []},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    expected = "solutions/x.ipynb: celda 1, línea 1: '../lora_adapters.md' no existe"
    assert dead_links(nb, tmp_path) == [expected]
    (tmp_path / "lora_adapters.md").write_text("# LoRA\n", encoding="utf-8")
    assert dead_links(nb, tmp_path) == []
