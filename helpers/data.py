"""La tarea del curso: fechas escritas en español -> un formato fijo.

``"viernes 5 de marzo de 2021"`` -> ``"2021-03-05"`` (ISO 8601), ``"03/05/2021"`` (EE. UU.) o
``"March 5, 2021"`` (inglés). La entrada es la misma para todos los formatos: el formato lo decide el
adaptador LoRA que esté activo. Los conjuntos son deterministas (semilla) y disjuntos por fecha.
"""

from __future__ import annotations

import datetime as dt
import random

from datasets import Dataset, DatasetDict

MONTHS_ES = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
             "septiembre", "octubre", "noviembre", "diciembre"]
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"]
WEEKDAYS_ES = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]

FORMATS = {
    "iso": "ISO 8601 (AAAA-MM-DD)",
    "us": "EE. UU. (MM/DD/AAAA)",
    "en": "inglés (Month D, YYYY)",
}
SYSTEM_PROMPT = "Normaliza la fecha."
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
DEFAULT_SIZES = {"train": 512, "validation": 48, "test": 120}


def format_date(day: dt.date, fmt: str) -> str:
    """La respuesta correcta para ``day`` en el formato ``fmt`` ('iso', 'us' o 'en')."""
    if fmt == "iso":
        return day.isoformat()
    if fmt == "us":
        return f"{day.month:02d}/{day.day:02d}/{day.year}"
    if fmt == "en":
        return f"{MONTHS_EN[day.month - 1]} {day.day}, {day.year}"
    raise ValueError(f"Formato desconocido {fmt!r}. Usa uno de: {', '.join(FORMATS)}.")


def spanish_phrase(day: dt.date, rng: random.Random) -> str:
    """Una forma española de escribir ``day``, elegida al azar entre varias."""
    d, month, y = day.day, MONTHS_ES[day.month - 1], day.year
    weekday = WEEKDAYS_ES[day.weekday()]
    phrasings = [
        f"{d} de {month} de {y}",
        f"el {d} de {month} de {y}",
        f"{weekday} {d} de {month} de {y}",
        f"{weekday}, {d} de {month} del {y}",
        f"{d} {month[:3]}. {y}",
        f"{'1.º' if d == 1 else d} de {month.capitalize()} de {y}",
    ]
    return rng.choice(phrasings)


def prompt_messages(phrase: str) -> list[dict]:
    """El prompt de chat para una fecha: un mensaje de sistema corto y la fecha."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": phrase}]


def make_splits(fmt: str = "iso", sizes: dict | None = None, seed: int = 0) -> DatasetDict:
    """train / validation / test en formato conversacional prompt-completion de TRL.

    Cada fecha aparece en un solo conjunto. Con la misma semilla, las entradas son idénticas para
    todos los formatos (solo cambia la respuesta).
    """
    format_date(FIRST_DAY, fmt)  # valida el formato antes de trabajar
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    rng = random.Random(seed)
    span = (LAST_DAY - FIRST_DAY).days + 1
    offsets = rng.sample(range(span), sum(sizes.values()))
    splits, start = {}, 0
    for name, size in sizes.items():
        days = [FIRST_DAY + dt.timedelta(days=o) for o in offsets[start:start + size]]
        start += size
        splits[name] = Dataset.from_list([
            {"prompt": prompt_messages(spanish_phrase(day, rng)),
             "completion": [{"role": "assistant", "content": format_date(day, fmt)}]}
            for day in days
        ])
    return DatasetDict(splits)


def answer(row: dict) -> str:
    """La respuesta esperada de una fila."""
    return row["completion"][-1]["content"]


def phrase(row: dict) -> str:
    """La fecha en español (la entrada) de una fila."""
    return row["prompt"][-1]["content"]
