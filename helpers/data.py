"""La tarea del curso: fechas escritas en español -> un formato fijo.

``"viernes 5 de marzo de 2021"`` -> ``"2021-03-05"`` (ISO 8601), ``"03/05/2021"`` (EE. UU.),
``"March 5, 2021"`` (inglés) o ``"05.03.2021"`` (con puntos). La entrada es la misma para todos los
formatos: el formato lo decide el adaptador LoRA que esté activo. Los conjuntos son deterministas
(semilla) y disjuntos por fecha.

Los adaptadores publicados en ``adapters/`` producen ``iso``, ``us`` y ``en`` (``SHIPPED_FORMATS``). Los
cuadernos que entrenan enseñan ``TRAINED_FORMAT`` (``dotted``), que ningún archivo del curso produce: un
adaptador que lo responde bien lo ha entrenado quien lo entrega.
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
    "dotted": "con puntos (DD.MM.AAAA)",
}
SHIPPED_FORMATS = ("iso", "us", "en")  # los de adapters/ (cuaderno de carga)
TRAINED_FORMAT = "dotted"  # el que entrenan lora_finetuning y lora_advanced: no lo produce ningún archivo del curso
SYSTEM_PROMPT = "Normaliza la fecha."
FIRST_DAY, LAST_DAY = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
DEFAULT_SIZES = {"train": 512, "validation": 48, "test": 120}


def format_date(day: dt.date, fmt: str) -> str:
    """La respuesta correcta para ``day`` en el formato ``fmt`` ('iso', 'us', 'en' o 'dotted')."""
    if fmt == "iso":
        return day.isoformat()
    if fmt == "us":
        return f"{day.month:02d}/{day.day:02d}/{day.year}"
    if fmt == "en":
        return f"{MONTHS_EN[day.month - 1]} {day.day}, {day.year}"
    if fmt == "dotted":
        return f"{day.day:02d}.{day.month:02d}.{day.year}"
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


# --- fechas con las que las comprobaciones ponen a prueba un modelo ------------------------------------

def _notebook_days(seed: int = 0) -> set[dt.date]:
    """Las fechas de todos los conjuntos que usan los cuadernos (``make_splits`` con sus tamaños)."""
    rng = random.Random(seed)
    span = (LAST_DAY - FIRST_DAY).days + 1
    return {FIRST_DAY + dt.timedelta(days=o) for o in rng.sample(range(span), sum(DEFAULT_SIZES.values()))}


def hidden_rows(fmt: str, n: int, seed: int) -> Dataset:
    """``n`` filas de fechas que ningún cuaderno ve (ni train, ni validation, ni test), elegidas con ``seed``.

    Las usa la corrección: mide lo que hace el modelo de una entrega con fechas que la entrega no conoce.
    Con la misma ``seed`` salen las mismas fechas y las mismas frases para todos los formatos.
    """
    format_date(FIRST_DAY, fmt)
    seen = _notebook_days()
    rng = random.Random(f"corrección-{seed}")
    days: list[dt.date] = []
    span = (LAST_DAY - FIRST_DAY).days + 1
    while len(days) < n:
        day = FIRST_DAY + dt.timedelta(days=rng.randrange(span))
        if day not in seen and day not in days:
            days.append(day)
    return Dataset.from_list([
        {"prompt": prompt_messages(spanish_phrase(day, random.Random(f"{seed}-{day}"))),
         "completion": [{"role": "assistant", "content": format_date(day, fmt)}]}
        for day in days
    ])


class Examples:
    """De dónde saca una comprobación las fechas con las que prueba un modelo.

    En el cuaderno, las del conjunto ``split`` (las mismas que ve el alumno); en la corrección, ``hidden``
    con la semilla que elige quien corrige: fechas que la entrega nunca vio.
    """

    def __init__(self, split: str = "test", hidden_seed: int | None = None):
        self.split, self.hidden_seed = split, hidden_seed

    @classmethod
    def hidden(cls, seed: int) -> Examples:
        return cls(split="hidden", hidden_seed=seed)

    @property
    def is_hidden(self) -> bool:
        return self.hidden_seed is not None

    def rows(self, fmt: str = "iso", n: int = 8) -> Dataset:
        if self.is_hidden:
            return hidden_rows(fmt, n, self.hidden_seed)
        split = make_splits(fmt)[self.split]
        return split.select(range(min(n, len(split))))

    def prompts(self, n: int = 8) -> list[list[dict]]:
        return [row["prompt"] for row in self.rows("iso", n)]
