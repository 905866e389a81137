"""Maquinaria de las comprobaciones: ``checks.X(objeto)``, ``checks.X.hint()``, ``checks.X.solution()``.

Una comprobación es una función que inspecciona los objetos reales del alumno y llama a
``expect(condición, "qué está mal y qué probar")``; si todo va bien devuelve un texto con lo que está
bien. Nunca lanza una traza al alumno por una respuesta incorrecta: responde ❌ con el motivo.

Cada resultado se muestra en el cuaderno y además viaja como salida con el tipo MIME
``RESULT_MIME``, que es lo que lee la corrección. Con ``CURSO_LORA_STRICT=1`` (CI) un fallo lanza
``AssertionError`` para que nbval lo note.
"""

from __future__ import annotations

import os

from .registry import info

STRICT_ENV = "CURSO_LORA_STRICT"
RESULT_MIME = "application/vnd.curso-lora.check+json"


class Wrong(Exception):
    """Respuesta incorrecta: el mensaje dice qué está mal y qué probar."""


def expect(condition, message: str) -> None:
    """Si ``condition`` es falsa, la comprobación falla con ``message``."""
    if not condition:
        raise Wrong(message)


class Exercise:
    """Un ejercicio: se llama para comprobar; ``hint()`` y ``solution()`` ayudan."""

    def __init__(self, notebook: str, check, hint: str):
        self.info = info(notebook, check.__name__)
        self._check, self._hint = check, hint
        self.__doc__ = check.__doc__

    def __call__(self, *args, **kwargs) -> bool:
        try:
            praise = self._check(*args, **kwargs)
            passed, message = True, praise or "¡Correcto!"
        except Wrong as wrong:
            passed, message = False, str(wrong)
        except Exception as error:  # noqa: BLE001 - una respuesta rara es una respuesta incorrecta
            passed, message = False, (
                f"Al comprobar tu respuesta saltó un error ({type(error).__name__}: {error}). "
                "Revisa que la celda del ejercicio se ejecutó sin errores y que el objeto es el que se pide."
            )
        self._report(passed, message)
        if not passed and os.environ.get(STRICT_ENV) == "1":
            raise AssertionError(f"[{self.info.name}] {message}")
        return passed

    def _report(self, passed: bool, message: str) -> None:
        e = self.info
        earned = e.points if passed else 0
        head = f"{'✅' if passed else '❌'} {e.level} {e.title} ({earned}/{e.points} puntos)"
        payload = {"notebook": e.notebook, "exercise": e.name, "passed": passed,
                   "points": earned, "max_points": e.points}
        _show({"text/plain": f"{head}\n{message}", "text/markdown": f"**{head}**\n\n{message}",
               RESULT_MIME: payload})

    def hint(self) -> None:
        """Una pista para el ejercicio."""
        _show({"text/plain": f"💡 Pista: {self._hint}", "text/markdown": f"💡 **Pista:** {self._hint}"})

    def solution(self) -> None:
        """La solución, tal cual está en el cuaderno de soluciones."""
        code = solution_code(self.info.notebook, self.info.name)
        _show({"text/plain": f"Solución:\n{code}", "text/markdown": f"**Solución:**\n\n```python\n{code}\n```"})

    def __repr__(self) -> str:
        return f"<ejercicio {self.info.level} {self.info.name}: usa .hint() o .solution()>"


def exercise(notebook: str, hint: str):
    """Decorador: convierte una función de comprobación en un ``Exercise`` del registro."""
    return lambda check: Exercise(notebook, check, hint)


def solution_code(notebook: str, name: str, solutions_dir=None) -> str:
    """El código de solución del ejercicio, leído de ``solutions/`` (la única fuente).

    Son las zonas de solución que hay entre la comprobación anterior y ``checks.<name>(...)``.
    """
    from pathlib import Path

    import nbformat

    from .. import exercise_notebooks
    from ..exercise_notebooks import checks_called, solution_regions

    path = Path(solutions_dir or exercise_notebooks.SOLUTIONS_DIR) / f"{notebook}.ipynb"
    try:
        cells = nbformat.read(path, as_version=4).cells
    except (OSError, ValueError) as error:  # falta el cuaderno o está dañado: se dice, sin traza
        return f"(no puedo leer el cuaderno de soluciones {path}: {type(error).__name__}: {error})"
    regions, pending = [], []
    for cell in cells:
        if cell.cell_type != "code":
            continue
        if name in checks_called(cell.source):
            regions = pending
            break
        pending += solution_regions(cell.source)
        if checks_called(cell.source):
            pending = []
    return "\n\n".join(regions) or "(no encuentro la solución en el cuaderno de soluciones)"


def _show(bundle: dict) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython and get_ipython() is not None:
        display(bundle, raw=True)
    else:
        print(bundle["text/plain"])
