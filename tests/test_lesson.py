"""Las lecciones (`lora_adapters.md`, `prompt_tuning.md`): su código se ejecuta y su estructura se comprueba.

Convención (documentada también al final de cada lección):
- Se ejecutan todos los bloques ```python de una lección, en orden y en un mismo espacio de nombres
  (como las celdas de un cuaderno), sin red, con el directorio de trabajo en una carpeta temporal.
  Cada bloque es una prueba; si uno falla, los siguientes de esa lección también fallan.
- Antes de ejecutarlos se sustituyen las cadenas genéricas de ``PLACEHOLDERS`` ("base_model_name",
  "path/to/adapter", ...) y cualquier "path/to/save/..." (una carpeta temporal). Una cadena
  "path/to/..." sin correspondencia es un error: añádela a ``PLACEHOLDERS``.
- Los bloques ```python cuda necesitan una GPU CUDA y bitsandbytes: sin ellos se saltan, con el motivo.
  No deben definir nombres que usen los bloques siguientes.
- Las formas antiguas de las APIs solo pueden aparecer en el texto, nunca en un bloque ```python.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.model import base_model_path, hub_offline
from helpers.paths import COURSE_ROOT

LESSONS = ["lora_adapters.md", "prompt_tuning.md"]
ADAPTERS_DIR = COURSE_ROOT / "adapters"
CUDA_REASON = "necesita una GPU CUDA y bitsandbytes (en este equipo no hay)"


def placeholders() -> dict[str, str]:
    """Cadena genérica de la lección -> lo que usa el curso."""
    return {
        "base_model_name": base_model_path(),
        "path/to/adapter": str(ADAPTERS_DIR / "iso"),
        "path/to/another_adapter": str(ADAPTERS_DIR / "us"),
    }


# --------------------------------------------------------------------------------------------------
# Extraer los bloques
# --------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass
class Block:
    lesson: str
    line: int  # línea (1-based) del archivo donde empieza el código, tras la valla
    info: str  # p. ej. "python" o "python cuda"
    code: str

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""

    @property
    def needs_cuda(self) -> bool:
        return "cuda" in self.info.split()[1:]

    @property
    def id(self) -> str:
        return f"{self.lesson}:{self.line}" + (" (cuda)" if self.needs_cuda else "")


def code_blocks(text: str, lesson: str = "") -> list[Block]:
    """Todos los bloques de código delimitados (``` o ~~~) de un texto Markdown."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, start = match["fence"], i + 1
        j = start
        while j < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[j]):
            j += 1
        blocks.append(Block(lesson, start + 1, match["info"].strip(), "\n".join(lines[start:j]) + "\n"))
        i = j + 1
    return blocks


def python_blocks(lesson: str) -> list[Block]:
    path = COURSE_ROOT / lesson
    if not path.is_file():
        return []
    return [b for b in code_blocks(path.read_text(encoding="utf-8"), lesson) if b.language == "python"]


# --------------------------------------------------------------------------------------------------
# Sustituir las cadenas genéricas
# --------------------------------------------------------------------------------------------------

STRING = re.compile(r"""(?P<q>["'])(?P<s>(?:base_model_name|path/to/[^"'\n]*))(?P=q)""")


def substitute(code: str, mapping: dict[str, str], save_root: Path) -> str:
    """Cambia cada cadena genérica por su valor en el curso (y "path/to/save/..." por ``save_root``)."""

    def replace(match: re.Match) -> str:
        s = match["s"]
        if s in mapping:
            value = Path(mapping[s])
            if value.is_relative_to(ADAPTERS_DIR) and not (value / "adapter_config.json").is_file():
                raise AssertionError(f"Falta el adaptador del curso {value} (para {s!r}): "
                                     "créalo con `make adapters`.")
            return repr(mapping[s])
        if s == "path/to/save" or s.startswith("path/to/save/"):
            return repr(str(save_root / s.removeprefix("path/to/")))
        raise AssertionError(f"La cadena {s!r} no tiene correspondencia: añádela a placeholders() "
                             f"en {__file__}")

    return STRING.sub(replace, code)


def test_substitute_maps_known_placeholders(tmp_path):
    mapping = {"base_model_name": "/m", "path/to/adapter": "/a"}
    code = 'f("base_model_name"); g(\'path/to/adapter\'); h("path/to/save/x/y"); k("path/to/adapter_x")'
    with pytest.raises(AssertionError, match="path/to/adapter_x"):
        substitute(code, mapping, tmp_path)
    out = substitute(code.replace('; k("path/to/adapter_x")', ""), mapping, tmp_path)
    assert out == f"f('/m'); g('/a'); h({str(tmp_path / 'save/x/y')!r})"


def test_code_blocks_reads_fences_and_info():
    text = "a\n```python\nx = 1\n```\n\n~~~text\nnada\n~~~\n````python cuda\ny = 2\n````\n"
    blocks = code_blocks(text, "l.md")
    assert [(b.line, b.language, b.needs_cuda, b.code) for b in blocks] == [
        (3, "python", False, "x = 1\n"), (7, "text", False, "nada\n"), (10, "python", True, "y = 2\n")]


# --------------------------------------------------------------------------------------------------
# Ejecutar los bloques, en orden, en un espacio de nombres por lección
# --------------------------------------------------------------------------------------------------

def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


@dataclass
class LessonRunner:
    """Ejecuta los bloques de una lección en orden; recuerda cuáles ya corrieron y cuál falló."""

    lesson: str
    workdir: Path
    namespace: dict = field(default_factory=lambda: {"__name__": "__leccion__"})
    done: int = 0  # índice del siguiente bloque por ejecutar
    failed: str | None = None

    def run_through(self, blocks: list[Block], index: int) -> None:
        while self.done <= index:
            block = blocks[self.done]
            if self.failed:
                pytest.fail(f"No se ejecuta: un bloque anterior de la lección falló ({self.failed}).")
            self.done += 1
            if block.needs_cuda and not cuda_available():
                continue
            self._execute(block)

    def _execute(self, block: Block) -> None:
        save_root = self.workdir / "salidas"
        code = substitute(block.code, placeholders(), save_root)
        # Líneas en blanco delante: los errores señalan la línea real del archivo .md.
        compiled = compile("\n" * (block.line - 1) + code, str(COURSE_ROOT / block.lesson), "exec")
        previous = os.getcwd()
        os.chdir(self.workdir)
        try:
            with hub_offline():
                exec(compiled, self.namespace)  # noqa: S102 - es justo lo que queremos probar
        except BaseException:
            self.failed = block.id
            raise
        finally:
            os.chdir(previous)


@pytest.fixture(scope="module")
def runners():
    with tempfile.TemporaryDirectory(prefix="curso-lora-leccion-") as tmp:
        yield {lesson: LessonRunner(lesson, Path(tmp) / lesson.removesuffix(".md")) for lesson in LESSONS}


ALL_BLOCKS = [(lesson, i, b) for lesson in LESSONS for i, b in enumerate(python_blocks(lesson))]


@pytest.mark.slow
@pytest.mark.parametrize("lesson,index,block", ALL_BLOCKS, ids=[b.id for _, _, b in ALL_BLOCKS])
def test_lesson_block_runs(lesson, index, block, runners):
    if block.needs_cuda and not cuda_available():
        pytest.skip(f"{block.id}: {CUDA_REASON}")
    runner = runners[lesson]
    runner.workdir.mkdir(parents=True, exist_ok=True)
    runner.run_through(python_blocks(lesson), index)


# --------------------------------------------------------------------------------------------------
# Estructura y contenido de la lección principal
# --------------------------------------------------------------------------------------------------

LESSON = COURSE_ROOT / "lora_adapters.md"


@pytest.fixture(scope="module")
def lesson_text() -> str:
    return LESSON.read_text(encoding="utf-8")


def headings(text: str, level: int = 2) -> list[str]:
    outside = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)  # sin bloques de código
    return re.findall(rf"^{'#' * level} (.+?)\s*$", outside, flags=re.MULTILINE)


def test_lesson_sections_in_order(lesson_text):
    expected = ["Qué es LoRA", "Cargar adaptadores", "Fusionar adaptadores", "Guía de implementación",
                "OLoRA", "TRL con PEFT", "Implementación básica de la fusión",
                "Más allá: LoRA por dentro y en producción", "Escalar: varias GPU y varias máquinas",
                "Próximos pasos", "Recursos"]
    assert headings(lesson_text) == expected


def test_lesson_covers_the_required_apis_and_facts(lesson_text):
    for needle in ["PeftModel.from_pretrained", "load_adapter", "set_adapter", "unload()", "merge_and_unload",
                   "disable_adapter", "init_lora_weights=\"olora\"", "SFTTrainer", "peft_config=lora_config",
                   "tokenizer.save_pretrained", "10 000 veces menos parámetros", "3 veces menos memoria",
                   "https://arxiv.org/abs/2106.09685", "https://arxiv.org/abs/2406.01775",
                   "https://huggingface.co/docs/peft", "https://huggingface.co/blog/peft",
                   "](images/lora_adapter.png)"]:
        assert needle in lesson_text, f"La lección no menciona {needle!r}"


def test_lesson_links_notebooks_in_order(lesson_text):
    first = lesson_text.index("](notebooks/load_lora_adapter_example.ipynb)")
    second = lesson_text.index("](notebooks/lora_finetuning.ipynb)")
    assert first < second, "primero load_lora_adapter_example y después lora_finetuning"


def test_lesson_explains_what_changed_in_legacy_apis(lesson_text):
    """Cada forma antigua conocida tiene su nota de una línea (en el mismo punto de lista) con la actual."""
    items = re.split(r"\n\s*\n|\n(?=- )", lesson_text)
    for legacy, current in [("peft_config=", "get_peft_model"), ("load_in_8bit=True", "BitsAndBytesConfig"),
                            ("torch_dtype=", "dtype="), ("tokenizer=", "processing_class=")]:
        assert any(legacy in item and current in item for item in items), \
            f"Falta la nota sobre qué cambió: {legacy!r} -> {current!r}"


LEGACY_KEYWORDS = {
    "from_pretrained": {"torch_dtype": "dtype=",
                        "load_in_8bit": "quantization_config=BitsAndBytesConfig(...)",
                        "load_in_4bit": "quantization_config=BitsAndBytesConfig(...)",
                        "peft_config": "get_peft_model / add_adapter / SFTTrainer(peft_config=...)"},
}


@pytest.mark.parametrize("lesson", LESSONS)
def test_python_blocks_use_current_apis(lesson):
    problems = []
    for block in python_blocks(lesson):
        for node in ast.walk(ast.parse(block.code)):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            banned = dict(LEGACY_KEYWORDS.get(name, {}))
            if name.endswith("Trainer"):
                banned["tokenizer"] = "processing_class="
            problems += [f"{block.id}: {name}({kw.arg}=...) -> {banned[kw.arg]}"
                         for kw in node.keywords if kw.arg in banned]
    assert not problems, "Formas antiguas en bloques que se ejecutan:\n" + "\n".join(problems)


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_documents_the_test_convention(lesson):
    path = COURSE_ROOT / lesson
    if not path.is_file():
        pytest.skip(f"{lesson} no existe")
    text = path.read_text(encoding="utf-8")
    assert "tests/test_lesson.py" in text and "base_model_name" in text


def first_use(code: str) -> dict[str, str]:
    """Nombre -> "load" o "store" según cómo aparece por primera vez en el código (orden del texto)."""
    names = sorted((n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)),
                   key=lambda n: (n.lineno, n.col_offset))
    first: dict[str, str] = {}
    for n in names:
        first.setdefault(n.id, "load" if isinstance(n.ctx, ast.Load) else "store")
    return first


def test_cuda_blocks_define_nothing_used_later():
    """Un bloque que se salta en CPU no puede dejar variables que lean los bloques siguientes.

    Si no, en CPU fallarían y en GPU usarían otro objeto: las dos ejecuciones no serían la misma lección.
    """
    for lesson in LESSONS:
        blocks = python_blocks(lesson)
        for i, block in enumerate(blocks):
            if not block.needs_cuda:
                continue
            pending = {name for name, kind in first_use(block.code).items() if kind == "store"}
            for later in blocks[i + 1:]:
                uses = first_use(later.code)
                leaked = {name for name in pending if uses.get(name) == "load"}
                assert not leaked, f"{block.id} define {sorted(leaked)}, que lee {later.id}"
                pending -= set(uses)  # si el bloque siguiente la reasigna, ya no viene del bloque CUDA
