"""La matriz de amenazas (issue 25, clase 5): propiedad × ejercicio, por el camino de la corrección.

Cada propiedad que la tabla «Qué certifica cada punto» del README afirma de un ejercicio tiene aquí al
menos un caso: un objeto entregado que viola esa propiedad y solo esa, y que el juez tiene que rechazar.

**La forma de un módulo de casos** (``tests/checks/threats_<cuaderno>.py``; hoy ``threats_loading``,
``threats_finetuning`` y ``threats_advanced``; si uno no existe, la matriz sigue sin él):

- ``CASES``: una lista de ``Case`` (esta clase; impórtala de aquí)::

      Case(notebook="lora_finetuning", exercise="sft_trainer", property="no publicado",
           build=lambda work: {"trainer": ...}, refusal="el publicado en `adapters/iso`", slow=True)

  - ``notebook`` y ``exercise``: el cuaderno y el nombre del ejercicio en ``helpers.checks.registry``.
  - ``property``: el identificador corto de la propiedad de la fila del README que el caso viola.
  - ``build(work: Path) -> dict``: los argumentos que la celda de comprobación pasaría a
    ``checks.<exercise>(...)`` (la entrega falsificada); ``work`` es una carpeta vacía para lo que haga
    falta guardar. Los objetos caros se comparten entre casos con una caché del módulo de casos.
  - ``refusal``: un trozo del mensaje (o del motivo de rechazo de la lista blanca) del veredicto.
  - ``tamper(folder: Path) -> None`` (opcional): edita lo ya escrito en ``entregado/<exercise>/`` como
    lo haría un proceso que escribe bytes a mano; la matriz vuelve a sellar el manifiesto después
    (``handover.seal``), como podría hacer la entrega.
  - ``slow``: True si construir o juzgar el caso cuesta más de ~10 s (va a ``make test``, no a test-fast).
- ``PROPERTIES`` (opcional): ``{ejercicio: (propiedad, ...)}``, lo que la fila del README afirma de cada
  ejercicio del módulo. La matriz exige un caso por cada propiedad declarada y que cada caso viole una
  propiedad declarada: una fila nueva en el README sin su caso se nota aquí.

**El camino**: los argumentos se escriben con ``handover.write`` en ``<ejecución>/entregado/`` (como hace
``checks.X(...)`` al corregir), ``collect`` los copia y comprueba su manifiesto, y ``judge.judge`` (la
función del juez aislado, aquí en este proceso y sin caja) valida con la lista blanca, carga y juzga con
fechas ocultas. Se mira el veredicto del ejercicio: 0 puntos y el motivo esperado.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.checks import handover
from helpers.checks.registry import exercises_for
from tests.suite import complete

HIDDEN_SEED = 11
CASE_MODULES = ("threats_loading", "threats_finetuning", "threats_advanced")
CHECK_MODULES = {"load_lora_adapter_example": "adapters", "lora_finetuning": "finetuning",
                 "lora_advanced": "advanced"}


@dataclass(frozen=True)
class Case:
    """Una entrega que viola exactamente una propiedad de un ejercicio (ver el docstring del módulo)."""

    notebook: str
    exercise: str
    property: str
    build: Callable[[Path], dict]
    refusal: str
    tamper: Callable[[Path], None] | None = None
    slow: bool = False
    variant: str | None = None  # la ficha de variante con la que juzga el juez (la de la entrega al corregir)

    @property
    def id(self) -> str:
        return f"{self.exercise}: {self.property}"


def _case_modules() -> list:
    modules = []
    for name in CASE_MODULES:
        try:
            modules.append(importlib.import_module(f"tests.checks.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"tests.checks.{name}":  # falta otra cosa dentro del módulo: que se vea
                raise
    return modules


MODULES = _case_modules()
CASES = [case for module in MODULES for case in getattr(module, "CASES", [])]
PROPERTIES = {(exercise, prop) for module in MODULES
              for exercise, props in getattr(module, "PROPERTIES", {}).items() for prop in props}


def judge_path(case: Case, tmp_path: Path) -> dict:
    """El veredicto del juez sobre la entrega del caso: escribir → recoger → validar, cargar y juzgar."""
    from helpers.grading import judge
    from helpers.grading.collect import collect
    from helpers.grading.run import HANDED_OVER

    check = getattr(importlib.import_module(f"helpers.checks.{CHECK_MODULES[case.notebook]}"), case.exercise)
    work, run = tmp_path / "taller", tmp_path / "ejecucion"
    work.mkdir()
    handover.write(case.exercise, case.build(work), check.handover, run / HANDED_OVER)
    if case.tamper is not None:
        case.tamper(run / HANDED_OVER / case.exercise)
        handover.seal(run / HANDED_OVER / case.exercise)
    collected = collect(run, tmp_path / "recogido", [case.exercise], total_bytes=8 << 30)
    assert not collected.reasons, collected.reasons  # el caso prueba al juez, no la recogida
    return judge.judge(collected.handed_over, case.notebook, HIDDEN_SEED, case.variant)[case.exercise]




def sampled(cases: list[Case]) -> list[Case]:
    """Los casos de ``make test``: todos los rápidos y el primer caso lento de cada ejercicio.

    La matriz entera cuesta ~9 min en la CPU de 2 núcleos (cada caso lento entrena o juzga ~8 s); ``make test``
    guarda así cada ejercicio por el camino del juez, y ``python curso.py amenazas`` cada propiedad.
    """
    first_slow = {}
    for case in cases:
        if case.slow:
            first_slow.setdefault(case.exercise, case)
    return [case for case in cases if not case.slow or first_slow[case.exercise] is case]


def _params():
    cases = CASES if complete() else sampled(CASES)  # entera: `make amenazas` (unos 9 min)
    return [pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.slow else []) for case in cases]


@pytest.mark.parametrize("case", _params())
def test_a_handover_that_violates_one_property_earns_nothing(case, tmp_path):
    verdict = judge_path(case, tmp_path)
    text = f"{verdict['mensaje']} {verdict.get('rechazo', '')}"
    assert verdict["puntos"] == 0, f"{case.id}: el juez dio {verdict['puntos']} puntos: {verdict['mensaje']}"
    assert verdict["estado"] != "sin intentar", f"{case.id}: no llegó al juez: {text}"
    assert case.refusal in text, f"{case.id}: esperaba «{case.refusal}» y el juez dijo: {text}"


def test_every_declared_property_has_a_case_and_every_case_a_declared_property():
    covered = {(case.exercise, case.property) for case in CASES}
    declared_exercises = {exercise for exercise, _ in PROPERTIES}
    assert not PROPERTIES - covered, f"propiedades sin caso: {sorted(PROPERTIES - covered)}"
    stray = {pair for pair in covered if pair[0] in declared_exercises} - PROPERTIES
    assert not stray, f"casos de propiedades que la tabla no declara: {sorted(stray)}"


def test_the_sample_guards_every_exercise_and_keeps_the_fast_cases():
    chosen = sampled(CASES)
    assert {case.exercise for case in chosen} == {case.exercise for case in CASES}
    assert [case for case in CASES if not case.slow] == [case for case in chosen if not case.slow]
    assert len(chosen) < len(CASES)


def test_every_case_names_a_graded_exercise():
    for case in CASES:
        assert case.notebook in CHECK_MODULES, case.id
        assert case.exercise in {e.name for e in exercises_for(case.notebook)}, case.id
