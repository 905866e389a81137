"""Texto para las filas y la terminal: una línea, sin secuencias de color, con un tope de longitud."""

from __future__ import annotations

import re


def short(text: str, limit: int = 160) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
