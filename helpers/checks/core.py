"""Maquinaria de las comprobaciones: ``checks.X(objeto)``, ``checks.X.hint()``, ``checks.X.solution()``.

Una comprobación es una función que inspecciona los objetos reales del alumno y llama a
``expect(condición, "qué está mal y qué probar")``; si todo va bien devuelve un texto con lo que está
bien. Nunca lanza una traza al alumno por una respuesta incorrecta: responde ❌ con el motivo.

La misma función sirve para dos cosas:

- en el cuaderno, ``checks.X(...)`` la ejecuta y muestra ✅/❌ (solo para aprender; no da puntos);
- en la corrección, ``checks.X(...)`` además entrega sus argumentos como datos (``handover``), y quien
  corrige, en su propio proceso, los carga y ejecuta la función con ``Exercise.judge``: de ahí salen
  los puntos, medidos con fechas que la entrega nunca vio (``examples``).

Con ``CURSO_LORA_STRICT=1`` (CI) un fallo lanza ``AssertionError`` para que nbval lo note.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from . import handover
from .registry import info

STRICT_ENV = "CURSO_LORA_STRICT"

# Los cuatro resultados posibles de un ejercicio (como en learntools).
PASSED, FAILED, ERROR, NOT_ATTEMPTED = "correcto", "incorrecto", "error", "sin intentar"


class Wrong(Exception):
    """Respuesta incorrecta: el mensaje dice qué está mal y qué probar."""


def expect(condition, message: str) -> None:
    """Si ``condition`` es falsa, la comprobación falla con ``message``."""
    if not condition:
        raise Wrong(message)


@dataclass(frozen=True)
class Outcome:
    """El veredicto de una comprobación: uno de los cuatro resultados, con su mensaje."""

    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == PASSED


class Exercise:
    """Un ejercicio: se llama para comprobar; ``hint()``, ``hint(2)`` y ``solution()`` ayudan.

    ``hint``: la pista en dos pasos, ``(idea, forma del código)``: primero qué hacer y por qué; después la
    forma de las llamadas, con huecos (``...``). La solución entera, solo con ``solution()``.
    ``handover``: {argumento: formato} de lo que viaja a la corrección (``helpers.checks.handover``).
    Si la función acepta ``examples``, la corrección le pasa fechas ocultas.
    """

    def __init__(self, notebook: str, check, hint: tuple[str, str], handover_formats: dict):
        self.info = info(notebook, check.__name__)
        self._check, self.handover = check, handover_formats
        self._hints = (hint,) if isinstance(hint, str) else tuple(hint)
        self._signature = inspect.signature(check)
        unknown = set(handover_formats) - set(self._signature.parameters)
        if unknown:
            raise TypeError(f"{check.__name__}: formatos para argumentos que no tiene: {sorted(unknown)}")
        self.__doc__ = check.__doc__

    def __call__(self, *args, **kwargs) -> bool:
        root = handover.handover_root()
        if root is not None:  # en la corrección: entregar los objetos antes de mirarlos
            try:
                bound = self._signature.bind_partial(*args, **kwargs).arguments
                handover.write(self.info.name, bound, self.handover, root)
            except Exception:  # noqa: BLE001, S110 - sin entrega no hay puntos, pero el alumno ve su comprobación
                pass
        outcome = self.run(*args, **kwargs)
        self._report(outcome)
        if not outcome.passed and os.environ.get(STRICT_ENV) == "1":
            raise AssertionError(f"[{self.info.name}] {outcome.message}")
        return outcome.passed

    def run(self, *args, **kwargs) -> Outcome:
        """Ejecuta la comprobación y devuelve su veredicto (sin mostrar nada)."""
        bound = self._signature.bind_partial(*args, **kwargs).arguments
        given = [bound.get(name) for name in self.handover]
        if given and all(value is None for value in given):
            return Outcome(NOT_ATTEMPTED, "Todavía no has hecho este ejercicio: completa la celda del TODO y "
                                          "vuelve a ejecutar esta.")
        try:
            praise = self._check(*args, **kwargs)
            return Outcome(PASSED, praise or "¡Correcto!")
        except Wrong as wrong:
            return Outcome(FAILED, str(wrong))
        except Exception as error:  # noqa: BLE001 - una respuesta rara es una respuesta incorrecta
            return Outcome(ERROR, f"Al comprobar tu respuesta saltó un error ({type(error).__name__}: {error}). "
                                  "Revisa que la celda del ejercicio se ejecutó sin errores y que el objeto es "
                                  "el que se pide.")

    def judge(self, root: Path, hidden_seed: int) -> Outcome:
        """En el proceso de quien corrige: carga lo entregado en ``root`` y lo comprueba con fechas ocultas."""
        from ..data import Examples

        try:
            arguments = handover.read(self.info.name, self.handover, Path(root))
        except FileNotFoundError:
            return Outcome(NOT_ATTEMPTED, f"no llegó nada de checks.{self.info.name}(...): la celda no se "
                                          "ejecutó, falló antes o se cambió")
        except Exception as error:  # noqa: BLE001 - datos dañados o falsificados: no valen puntos
            return Outcome(FAILED, f"lo entregado no es válido ({type(error).__name__}: {error})")
        if "examples" in self._signature.parameters:
            arguments["examples"] = Examples.hidden(hidden_seed)
        return self.run(**arguments)

    def _report(self, outcome: Outcome) -> None:
        e = self.info
        mark = {PASSED: "✅", NOT_ATTEMPTED: "⏳"}.get(outcome.status, "❌")
        unit = "punto" if e.points == 1 else "puntos"  # «(1/1 punto)», «(0/2 puntos)»
        head = f"{mark} {e.level} {e.title} ({e.points if outcome.passed else 0}/{e.points} {unit})"
        _show({"text/plain": f"{head}\n{outcome.message}", "text/markdown": f"**{head}**\n\n{outcome.message}"})

    def hint(self, step: int = 1) -> None:
        """La pista: ``hint()`` da la idea; ``hint(2)``, la forma del código (con huecos)."""
        last = len(self._hints)
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= last:
            _show({"text/plain": f"Esta pista tiene {last} pasos: usa `hint()` o `hint({last})`.",
                   "text/markdown": f"Esta pista tiene {last} pasos: usa `hint()` o `hint({last})`."})
            return
        text = self._hints[step - 1]
        more = (f"\n\n¿Aún atascado? `checks.{self.info.name}.hint({step + 1})` te enseña la forma del código."
                if step < last else f"\n\nLa solución entera: `checks.{self.info.name}.solution()`.")
        label = "Pista" if last == 1 else f"Pista {step}/{last}"
        _show({"text/plain": f"💡 {label}: {text}{more}", "text/markdown": f"💡 **{label}:** {text}{more}"})

    def solution(self) -> None:
        """La solución, tal cual está en el cuaderno de soluciones."""
        code = solution_code(self.info.notebook, self.info.name)
        _show({"text/plain": f"Solución:\n{code}", "text/markdown": f"**Solución:**\n\n```python\n{code}\n```"})

    def __repr__(self) -> str:
        return f"<ejercicio {self.info.level} {self.info.name}: usa .hint(), .hint(2) o .solution()>"


def exercise(notebook: str, hint: tuple[str, str], handover: dict):
    """Decorador: convierte una función de comprobación en un ``Exercise`` del registro.

    ``hint``: ``(idea, forma del código)``. ``handover``: {argumento: formato de
    ``helpers.checks.handover``} de lo que viaja a la corrección.
    """
    return lambda check: Exercise(notebook, check, hint, handover)


def solution_code(notebook: str, name: str, solutions_dir=None) -> str:
    """El código de solución del ejercicio, leído de ``solutions/`` (la única fuente).

    Son las zonas de solución que hay entre la comprobación anterior y ``checks.<name>(...)``.
    """
    import nbformat

    from ..paths import SOLUTIONS_DIR
    from .cells import checks_called, solution_regions

    path = Path(solutions_dir or SOLUTIONS_DIR) / f"{notebook}.ipynb"
    if not path.is_file():  # la copia para el alumnado y la corrección no llevan soluciones
        return ("(las soluciones no están disponibles en esta copia del curso: pide ayuda a tu profesor o "
                "usa la pista, `.hint()`)")
    try:
        cells = nbformat.read(path, as_version=4).cells
    except (OSError, ValueError) as error:  # el cuaderno está dañado: se dice, sin traza
        return f"(no puedo leer el cuaderno de soluciones {path.name}: {type(error).__name__}: {error})"
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
