"""Paso «recoger» de la corrección: lo que dejó la ejecución, copiado a una carpeta de quien corrige.

Tras la ejecución en la caja, la carpeta de la entrega es del alumno: pudo dejar ahí cualquier cosa
(enlaces a las soluciones, tuberías que bloquean al que lee, archivos enormes, miles de archivos). Este
paso saca de ella, archivo a archivo y sin seguir enlaces (``helpers.checks.safe_files``), solo lo que la
corrección usa:

- ``entregado/<ejercicio>/``: lo entregado por cada ejercicio del cuaderno (según el registro), copiado
  entero a ``destino/entregado/`` y comprobado contra su manifiesto (SHA-256 de los bytes copiados). Un
  ejercicio con algo raro (un enlace, una tubería, un archivo o un total demasiado grandes, un manifiesto
  que no cuadra) no se copia y deja su motivo; los demás siguen.
- ``ejecutado.ipynb``: la copia ejecutada (para que el profesor vea los ✅/❌), guardada como bytes, con
  tope: quien corrige nunca la analiza (``--ejecutados`` escribe esos bytes).
- ``estado.json``: por qué se detuvo la ejecución, si se detuvo (solo da el texto de un motivo).

Si la ejecución no terminó bien (``trusted=False``: su padre murió, se pasó de un límite...), ni el estado
ni la copia ejecutada se leen: los escribió la entrega, no el ejecutor. El motivo lo da la caja de arena.
Todo lo que se analiza aquí (el estado, cada manifiesto) tiene un tope a la medida de su tamaño honrado.

Después, el juez solo lee ``destino/``, que ninguna entrega puede tocar.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checks.safe_files import Budget, Missing, Refused, copy_tree, open_folder, read_regular, remove_tree
from .read import MAX_SUBMISSION_BYTES
from .run import EXECUTED, HANDED_OVER, STATE, RunLimits

MANIFEST = "manifiesto.json"  # el de helpers.checks.handover (sin importarlo: este paso no carga PEFT)
MAX_STATE_BYTES = 64 * 2**10
# el cuaderno entregado (sin salidas) más sus salidas, con su tope (medido en JSON: con margen para el formato)
MAX_EXECUTED_BYTES = MAX_SUBMISSION_BYTES + 2 * RunLimits.output_bytes
MAX_MANIFEST_BYTES = 1 << 20  # una línea por archivo (ruta y SHA-256), MAX_FILES archivos: unos 400 KiB
MAX_FILE_BYTES = 2 * 2**30
MAX_FILES = 4096


@dataclass
class Collected:
    """Lo recogido de una ejecución: el cuaderno ejecutado (sus bytes, o None), la carpeta copiada y los motivos."""

    handed_over: Path
    executed: bytes | None = None
    stop: str | None = None  # el motivo con el que se detuvo la ejecución (de estado.json)
    reasons: list[str] = field(default_factory=list)


def collect(folder: Path, target: Path, exercises: list[str], *, total_bytes: int, trusted: bool = True) -> Collected:
    """Copia de ``folder`` (la carpeta de la ejecución) a ``target`` (nueva, de quien corrige) lo que se juzga.

    ``trusted``: la ejecución terminó bien (el ejecutor escribió el estado y la copia ejecutada); si no, no
    se leen.
    """
    target.mkdir(mode=0o700)
    result = Collected(handed_over=target / HANDED_OVER)
    result.handed_over.mkdir(mode=0o700)
    folder_fd = open_folder(str(folder), label="la carpeta de la ejecución")
    try:
        if trusted:
            result.stop = _state(folder_fd, result.reasons)
            result.executed = _executed(folder_fd, result.reasons)
        _handed_over(folder_fd, result.handed_over, exercises, total_bytes, result.reasons)
    finally:
        os.close(folder_fd)
    return result


def _state(folder_fd: int, reasons: list[str]) -> str | None:
    try:
        state = json.loads(read_regular(STATE, dir_fd=folder_fd, cap=MAX_STATE_BYTES).decode("utf-8"))
    except Missing:
        return None
    except Refused as refused:
        reasons.append(f"{refused}; no se lee")
        return None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    stop = state.get("motivo") if isinstance(state, dict) else None
    return stop[:300] if isinstance(stop, str) and stop else None


def _executed(folder_fd: int, reasons: list[str]) -> bytes | None:
    """Los bytes de la copia ejecutada, sin analizarlos; None (con motivo si había algo raro) si no hay una."""
    try:
        return read_regular(EXECUTED, dir_fd=folder_fd, cap=MAX_EXECUTED_BYTES)
    except Missing:
        return None
    except Refused as refused:
        reasons.append(f"la copia ejecutada no se guarda: {refused}")
        return None


def _handed_over(folder_fd: int, target: Path, exercises: list[str], total_bytes: int, reasons: list[str]) -> None:
    try:
        root_fd = open_folder(HANDED_OVER, dir_fd=folder_fd, label=HANDED_OVER)
    except Missing:
        return
    except Refused as refused:
        reasons.append(f"no se recoge nada entregado: {refused}")
        return
    budget = Budget(file_bytes=MAX_FILE_BYTES, total_bytes=total_bytes, files=MAX_FILES)
    try:
        for name in exercises:
            try:
                exercise_fd = open_folder(name, dir_fd=root_fd, label=f"{HANDED_OVER}/{name}")
            except Missing:
                continue
            except Refused as refused:
                reasons.append(f"{name}: no se recoge lo entregado ({refused})")
                continue
            try:
                _exercise(exercise_fd, target / name, budget, f"{HANDED_OVER}/{name}")
            except Refused as refused:
                remove_tree(target / name)
                reasons.append(f"{name}: no se recoge lo entregado ({refused})")
            finally:
                os.close(exercise_fd)
    finally:
        os.close(root_fd)


def _exercise(exercise_fd: int, target: Path, budget: Budget, label: str) -> None:
    """Copia un ejercicio y comprueba su manifiesto contra los bytes copiados."""
    digests = copy_tree(exercise_fd, target, budget, label)
    if MANIFEST not in digests:
        remove_tree(target)  # sin manifiesto no hay entrega completa: el juez dirá «sin intentar»
        return
    raw = read_regular(target / MANIFEST, cap=MAX_MANIFEST_BYTES, label=f"{label}/{MANIFEST}")  # antes de analizarlo
    try:
        listed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(f"{label}/{MANIFEST} no es un JSON válido") from None
    copied = {name: digest for name, digest in digests.items() if name != MANIFEST}
    if not isinstance(listed, dict) or set(listed) != set(copied):
        raise Refused("los archivos no coinciden con su manifiesto")
    changed = sorted(name for name, digest in copied.items() if listed[name] != digest)
    if changed:
        raise Refused(f"{changed[0]} cambió después de escribirse (no cuadra con el manifiesto)")
