"""Paso «informar» de la corrección: la fila de cada entrega (``Grade``), el CSV, la tabla y la unión de partes.

Junto al CSV (``notas.csv``) va ``notas.veredictos.json``: lo que el CSV no tiene y los informes necesitan
(el veredicto del juez por ejercicio, los motivos uno a uno, los segundos de cada entrega) y el lote (parte,
semilla, tiempo de reloj). ``--unir`` junta los dos; ``read_class`` rehace las filas a partir de ambos, así
que el resumen de la clase sale igual de una corrección entera que de sus partes unidas
(``helpers.grading.feedback``). Todo texto de una entrega sale limpio (``helpers.grading.text.clean``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..checks.registry import EXERCISES, ExerciseInfo, exercises_for
from .judge import STATES
from .text import clean


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
    mensajes: dict[str, str] = field(default_factory=dict)  # ejercicio -> "estado: mensaje" del juez

    @property
    def total(self) -> int:
        return sum(self.points.values())

    @property
    def motivo(self) -> str:
        return "; ".join(self.motivos)

    def verdict(self, name: str) -> tuple[str, str]:
        """(estado, mensaje) del juez para el ejercicio ``name``; ("", "") si no lo juzgó (ningún estado lleva
        ": ", así que el primero separa)."""
        state, _, message = self.mensajes.get(name, "").partition(": ")
        return (state, message) if state in STATES else ("", self.mensajes.get(name, ""))


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
    """Sin caracteres de control; un texto que una hoja de cálculo tomaría por fórmula (=, +, -, @...) va
    precedido de un apóstrofo."""
    if not isinstance(value, str):
        return value
    value = clean(value)
    return "'" + value if value.lstrip()[:1] in ("=", "+", "-", "@") else value


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
            body = [[clean(g.archivo), clean(g.motivo)] for g in rows]
        else:
            title = f"Cuaderno {notebook} (máximo {sum(e.points for e in expected)} puntos)"
            header = ["archivo", *(e.name for e in expected), "total", "motivo"]
            body = [[clean(g.archivo), *(f"{g.points.get(e.name, 0)}/{e.points}" for e in expected),
                     f"{g.total}/{g.maximo}", clean(g.motivo)] for g in rows]
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


# --- lo que el CSV no tiene: veredictos, motivos, segundos y el lote --------------------------------

RECORD_SUFFIX = ".veredictos.json"
RECORD_FORMAT = "curso-lora/veredictos-1"


@dataclass
class Batch:
    """Un lote corregido en una máquina: su parte, la semilla de las fechas ocultas y su tiempo de reloj."""

    parte: str = "1/1"
    semilla: int | None = None
    segundos: float = 0.0
    entregas: int = 0
    trabajos: int = 1


def record_path(csv_path) -> Path:
    """``notas.csv`` → ``notas.veredictos.json``, en la misma carpeta."""
    return Path(csv_path).with_suffix(RECORD_SUFFIX)


def _write_json(data: dict, path: Path) -> None:
    partial = path.with_name(f".{path.name}.parcial")
    partial.write_text(json.dumps(data, ensure_ascii=True, indent=1), encoding="utf-8")
    os.replace(partial, path)


def write_record(grades: Sequence[Grade], csv_path, batch: Batch) -> Path:
    """Escribe los veredictos de ``grades`` y el lote junto al CSV (aparte y renombrado, como el CSV)."""
    rows = [{"archivo": g.archivo, "cuaderno": g.cuaderno, "segundos": round(g.seconds, 3), "motivos": g.motivos,
             "aislamiento": g.aislamiento, "veredictos": g.mensajes} for g in grades]
    path = record_path(csv_path)
    _write_json({"formato": RECORD_FORMAT, "lotes": [asdict(batch)], "filas": rows}, path)
    return path


def _read_record(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"falta {path.name} junto a su CSV (lo escribe la corrección): sin él no hay "
                         "informes ni resumen") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"no puedo leer {path} ({type(error).__name__})") from None
    if not isinstance(data, dict) or data.get("formato") != RECORD_FORMAT:
        raise ValueError(f"{path} no es un archivo de veredictos de esta versión del curso")
    return data


def merge_records(parts: Sequence[Path], csv_path) -> list[str]:
    """Junta los veredictos de las partes (los de junto a cada CSV) como ``merge_csvs`` junta sus filas, en
    el mismo orden; devuelve avisos (p. ej. partes corregidas con semillas distintas)."""
    rows, batches = [], []
    for part in parts:
        data = _read_record(record_path(part))
        rows += data["filas"]
        batches += data["lotes"]
    rows.sort(key=lambda row: _cell(row["archivo"]))  # la clave de merge_csvs: la celda del archivo
    _write_json({"formato": RECORD_FORMAT, "lotes": batches, "filas": rows}, record_path(csv_path))
    seeds = {batch.get("semilla") for batch in batches}
    return [] if len(seeds) <= 1 else [
        (f"las partes se corrigieron con semillas distintas ({', '.join(map(str, sorted(seeds, key=str)))}): "
        "sus fechas ocultas no son las mismas")]


def read_class(csv_path) -> tuple[list[Grade], list[Batch]]:
    """Las filas del CSV (puntos, total, máximo, aislamiento) con sus veredictos, motivos y segundos, y los
    lotes; ``ValueError`` si el CSV y sus veredictos no se corresponden."""
    csv_path = Path(csv_path)
    with csv_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != csv_header():
            raise ValueError(f"{csv_path} no es un CSV de notas de esta versión del curso (otra cabecera)")
        table_rows = [dict(zip(header, row)) for row in reader]
    data = _read_record(record_path(csv_path))
    if len(data["filas"]) != len(table_rows) or any(
            row["archivo"] != _cell(str(kept["archivo"])) for row, kept in zip(table_rows, data["filas"])):
        raise ValueError(f"{csv_path} y {record_path(csv_path).name} no tienen las mismas entregas")
    names = columns()
    grades = []
    for row, kept in zip(table_rows, data["filas"]):
        notebook = row["cuaderno"] or None
        try:
            points = {e.name: int(row[names[(notebook, e.name)]] or 0) for e in exercises_for(notebook)} \
                if notebook else {}
            maximo = int(row["maximo"]) if row["maximo"] else None
        except (KeyError, ValueError):
            raise ValueError(f"{csv_path}: la fila de {clean(row['archivo'])} tiene puntos que no son números "
                             "enteros") from None
        grades.append(Grade(archivo=str(kept["archivo"]), cuaderno=notebook, points=points, maximo=maximo,
                            motivos=list(kept["motivos"]), aislamiento=row["aislamiento"],
                            seconds=float(kept["segundos"]), mensajes=dict(kept["veredictos"])))
    return grades, [Batch(**batch) for batch in data["lotes"]]
