"""Las versiones fijadas hacen funcionar todo lo que el curso enseña (nada se salta por versiones)."""

import re
from importlib.metadata import version

import nbformat
import peft
from packaging.version import Version

from helpers.paths import COURSE_ROOT, SOLUTIONS_DIR

PINNED = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")


def test_the_installed_versions_are_the_pinned_ones():
    text = (COURSE_ROOT / "requirements.txt").read_text(encoding="utf-8")
    for name in PINNED:
        pin = re.search(rf"^{name}==([\w.]+)", text, re.MULTILINE)
        assert pin, f"requirements.txt no fija {name}"
        assert Version(version(name)).base_version == pin[1], f"{name}: instalado {version(name)}, fijado {pin[1]}"


def test_transformers_native_adapter_api_accepts_the_pinned_peft():
    """transformers 5.24 pide peft ≥ 0.22 para load_adapter/set_adapter nativos; la última peft es 0.21."""
    from transformers.integrations import peft as integration

    assert Version(peft.__version__) >= Version(integration.MIN_PEFT_VERSION)


def test_the_loading_notebook_ran_the_native_api_section_instead_of_skipping_it():
    nb = nbformat.read(SOLUTIONS_DIR / "load_lora_adapter_example.ipynb", as_version=4)
    outputs = ["".join(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
               for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("¿API nativa disponible? sí" in text for text in outputs)
    assert any("¿'iso' nativo responde como 'iso' con PeftModel? sí" in text for text in outputs)
    assert not any("Con estas versiones no se puede" in text for text in outputs)
