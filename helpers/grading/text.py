"""Texto que viene de una entrega, limpio para la terminal, el CSV y el HTML.

Todo lo que sale de una entrega (nombres de archivo, el texto del cuaderno, los motivos, los mensajes que
citan sus valores) pasa por ``clean`` antes de mostrarse: sin secuencias de escape de la terminal (ESC, CSI,
OSC), sin caracteres de control (un ``\\r`` redibujaba la línea de otra entrega en la terminal), sin los que
invierten el sentido del texto (``U+202E``) y sin sustitutos sueltos (un nombre de archivo que no es UTF-8).
``short`` además lo deja en una línea con un tope de longitud. Escapar el HTML es cosa de quien lo escribe
(``html.escape``), después de limpiar.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... letra), OSC (ESC ] ... BEL o ESC \), DCS/PM/APC/SOS (ESC P|^|_|X ... ESC \) y ESC + un carácter
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x9b[0-?]*[ -/]*[@-~]?"
                      r"|[\x1b\x9d]\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[P^_X][^\x1b]*(?:\x1b\\)?|\x1b.?",
                      re.DOTALL)
# controles C0 y C1, DEL, los de dirección del texto y los sustitutos sueltos
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_KEPT_IN_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(text, *, lines: bool = False) -> str:
    """``text`` sin secuencias de escape ni caracteres de control; con ``lines=True`` conserva los saltos de
    línea y los tabuladores (``\\r\\n`` y ``\\r`` pasan a ser ``\\n``)."""
    text = _ESCAPES.sub("", str(text))
    if lines:
        return _KEPT_IN_LINES.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROLS.sub(lambda m: " " if m[0] in "\t\n\r" else "", text)


def short(text, limit: int = 160) -> str:
    """``text`` limpio, en una línea y con ``limit`` caracteres como mucho (con «…» si se corta)."""
    text = " ".join(clean(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
