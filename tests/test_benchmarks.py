"""Los benchmarks (``make bench*``) no se ejecutan en las pruebas, pero al menos arrancan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import COURSE_ROOT

SCRIPTS = sorted((COURSE_ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert {p.stem for p in SCRIPTS} >= {"foundation", "grading", "notebooks", "train_processes"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_imports_and_explains_itself(script: Path):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          cwd=COURSE_ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
