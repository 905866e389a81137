"""Paso «informar» de la corrección: la fila de cada entrega (``Grade``), el CSV, la tabla y la unión de partes."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks.registry import EXERCISES, ExerciseInfo


@dataclass
class Grade:
    """Una fila de la corrección."""

    archivo: str
    cuaderno: str | None = None
    points: dict[str, int] = field(default_factory=dict)  # ejercicio de su cuaderno -> puntos
    maximo: int | None = None
    motivos: list[str] = field(default_factory=list)
    aislamiento: str = ""  # "bwrap" o el aviso de que se ejecutó sin aislar
    seconds: float = 0.0
    executed: Any = field(default=None, repr=False)  # el cuaderno ejecutado (nbformat), si se ejecutó
    mensajes: dict[str, str] = field(default_factory=dict)  # ejercicio -> veredicto del juez

    @property
    def total(self) -> int:
        return sum(self.points.values())

    @property
    def motivo(self) -> str:
        return "; ".join(self.motivos)


def columns(exercises: Sequence[ExerciseInfo] = EXERCISES) -> dict[tuple[str, str], str]:
    """(cuaderno, ejercicio) -> nombre de su columna (el del ejercicio; con el cuaderno si se repite)."""
    counts: dict[str, int] = {}
    for e in exercises:
        counts[e.name] = counts.get(e.name, 0) + 1
    return {(e.notebook, e.name): e.name if counts[e.name] == 1 else f"{e.notebook}.{e.name}"
            for e in exercises}


def csv_header(exercises: Sequence[ExerciseInfo] = EXERCISES) -> list[str]:
    return ["archivo", "cuaderno", *columns(exercises).values(), "total", "maximo", "motivo", "aislamiento"]


def csv_row(grade: Grade, exercises: Sequence[ExerciseInfo] = EXERCISES) -> list:
    cells = [grade.points.get(name, "") if notebook == grade.cuaderno else ""
             for (notebook, name) in columns(exercises)]
    maximo = "" if grade.maximo is None else grade.maximo
    row = [grade.archivo, grade.cuaderno or "", *cells, grade.total, maximo, grade.motivo, grade.aislamiento]
    return [_cell(value) for value in row]


def _cell(value):
    """Un texto que una hoja de cálculo tomaría por fórmula (=, +, -, @...) va precedido de un apóstrofo."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(grades: Sequence[Grade], csv_path, exercises: Sequence[ExerciseInfo] = EXERCISES) -> Path:
    """Escribe el CSV (UTF-8, una fila por entrega). Se escribe aparte y se renombra: nunca queda a medias."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    partial = csv_path.with_name(f".{csv_path.name}.parcial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(exercises))
        writer.writerows(csv_row(grade, exercises) for grade in grades)
    os.replace(partial, csv_path)
    return csv_path


def table(grades: Sequence[Grade], exercises: Sequence[ExerciseInfo] = EXERCISES) -> str:
    """Tabla legible, un bloque por cuaderno: puntos de cada ejercicio, total y motivo."""
    blocks = []
    notebooks = list(dict.fromkeys(e.notebook for e in exercises))
    for notebook in [*notebooks, None]:
        rows = [g for g in grades if g.cuaderno == notebook]
        if not rows:
            continue
        expected = [e for e in exercises if e.notebook == notebook]
        if notebook is None:
            title = "Entregas sin corregir (no se reconoce el cuaderno o no se puede leer)"
            header = ["archivo", "motivo"]
            body = [[g.archivo, g.motivo] for g in rows]
        else:
            title = f"Cuaderno {notebook} (máximo {sum(e.points for e in expected)} puntos)"
            header = ["archivo", *(e.name for e in expected), "total", "motivo"]
            body = [[g.archivo, *(f"{g.points.get(e.name, 0)}/{e.points}" for e in expected),
                     f"{g.total}/{g.maximo}", g.motivo] for g in rows]
        widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header) - 1)]
        lines = [title]
        for row in [header, *body]:
            lines.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
        blocks.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(blocks)


def merge_csvs(parts: list[Path], csv_path: Path) -> int:
    """Junta los CSV de las partes (misma cabecera) en ``csv_path``, ordenados por archivo; devuelve las filas."""
    rows, header = [], csv_header()
    for path in parts:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            if next(reader, None) != header:
                raise ValueError(f"{path} no es un CSV de notas de esta versión del curso (otra cabecera)")
            rows += list(reader)
    rows.sort(key=lambda row: row[0])
    partial = csv_path.with_name(f".{csv_path.name}.parcial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(partial, csv_path)
    return len(rows)
