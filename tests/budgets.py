"""Presupuestos diminutos: ejecutar un cuaderno entero en una prueba en segundos, no en minutos.

Una celda que va justo después de la de parámetros (la que define los pasos) y reduce pasos, lotes
y filas; el resto del cuaderno no cambia. Solo para pruebas que miran si el cuaderno *funciona*
(sin errores, con un veredicto en cada comprobación), nunca para lo que aprende.
"""

from __future__ import annotations

import copy

import nbformat

_SMALL_SPLITS = '''_make_splits = make_splits


def make_splits(fmt="iso", sizes=None, seed=0):
    return _make_splits(fmt, {"train": 16, "validation": 4, "test": 8}, seed)
'''

TINY_BUDGETS = {
    "load_lora_adapter_example": '''# presupuesto diminuto de la prueba (no es del cuaderno)
N_SAMPLES, N_MERGE_PROMPTS, LATENCY_REPEATS, N_PRECISION_PROMPTS = 3, 2, 1, 1
''',
    "lora_finetuning": '''# presupuesto diminuto de la prueba (no es del cuaderno)
MAIN_STEPS, MAIN_BATCH, EVAL_EVERY, VALIDATION_ROWS = 1, 2, 1, 2
COMPARE_STEPS, COMPARE_BATCH, COMPARE_TEST_ROWS = 1, 2, 4
MERGE_CHECK_ROWS, LATENCY_REPEATS = 4, 1
''' + _SMALL_SPLITS,
    "lora_advanced": '''# presupuesto diminuto de la prueba (no es del cuaderno)
DELTA_STEPS, DELTA_BATCH = 1, 2
N_MIXED, THROUGHPUT_REPEATS, N_COMBINE_ROWS, SWAP_REPEATS = 4, 1, 2, 1
DPO_MAX_STEPS, DPO_BATCH, DPO_DEFAULT_LR_STEPS, N_DPO_EVAL = 2, 2, 1, 2
''' + _SMALL_SPLITS,
    "lora_deploy": '''# presupuesto diminuto de la prueba (no es del cuaderno)
TEST_ROWS, HEART_QUESTIONS, HEART_ROWS, ADAPTER_ROWS, FAILURE_ROWS, LOGIT_ROWS = 4, 1, 2, 2, 2, 1
''',
}


_FIRST_PARAMETER = {"load_lora_adapter_example": "N_SAMPLES =", "lora_finetuning": "MAIN_STEPS =",
                    "lora_advanced": "DELTA_STEPS =", "lora_deploy": "TEST_ROWS ="}


def _is_parameters_cell(cell, name: str) -> bool:
    """La celda del cuaderno ``name`` que fija los presupuestos que el diminuto reduce."""
    mark = _FIRST_PARAMETER[name]
    return cell.cell_type == "code" and any(line.startswith(mark) for line in cell.source.splitlines())


def with_tiny_budget(nb, name: str):
    """Una copia de ``nb`` con el presupuesto diminuto de ``name`` tras su celda de parámetros."""
    nb = copy.deepcopy(nb)
    where = next(i for i, cell in enumerate(nb.cells) if _is_parameters_cell(cell, name))
    nb.cells.insert(where + 1, nbformat.v4.new_code_cell(TINY_BUDGETS[name]))
    return nb
