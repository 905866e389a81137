"""Paso «leer» de la corrección: los bytes de una entrega, una sola vez, y qué cuaderno del curso es.

También encuentra las entregas (``expand_paths``) y reparte una clase entre máquinas (``shard``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat

from ..checks.registry import EXERCISES, ExerciseInfo
from .text import short

SUPPORTED_NBFORMAT = (3, 4)  # la 3 se convierte a la 4 al leerla
MAX_SUBMISSION_BYTES = 50 * 2**20
# listas y diccionarios de JSON: cada uno cuesta ~100 bytes ya analizado (23 veces lo que ocupa «[]»). Un
# cuaderno honrado con muchas salidas tiene decenas de miles; con este tope, analizarlo cuesta < 100 MiB.
MAX_JSON_CONTAINERS = 500_000


class SubmissionError(Exception):
    """La entrega no se puede corregir; el mensaje es el motivo que va a la fila."""


def parse_submission(data: bytes):
    """El cuaderno (nbformat 4) de los bytes de una entrega, o ``SubmissionError`` con el motivo."""
    if not data.strip():
        raise SubmissionError("el archivo está vacío")
    if data.count(b"[") + data.count(b"{") > MAX_JSON_CONTAINERS:  # se cuenta antes de analizar nada
        raise SubmissionError(f"el cuaderno tiene más de {MAX_JSON_CONTAINERS:,} listas y diccionarios JSON".replace(",", ".")
                              + ": ¿salidas enormes? Bórralas (Kernel > Restart & Clear Output)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError("no es un cuaderno de Jupyter: no es un archivo de texto "
                              "(¿un PDF, una imagen, un .zip?)") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("{"):
            raise SubmissionError(
                f"el cuaderno está dañado o incompleto (JSON no válido en la línea {error.lineno}, "
                f"columna {error.colno}: {error.msg}); pide que lo guarde de nuevo desde Jupyter") from None
        raise SubmissionError("no es un cuaderno de Jupyter: no es JSON "
                              "(¿un .py o un .txt con la extensión cambiada?)") from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise SubmissionError("no es un cuaderno de Jupyter: es JSON, pero no tiene 'nbformat'")
    if raw["nbformat"] not in SUPPORTED_NBFORMAT:
        raise SubmissionError(f"formato de cuaderno no compatible (nbformat {raw['nbformat']!r}; "
                              "se espera 4): pide que lo abra y lo guarde con un Jupyter actual")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - cualquier rareza del formato es un cuaderno no válido
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SubmissionError(f"el cuaderno no es válido ({short(detail)})") from None
    return nb


def identify(nb, filename: str, exercises: Sequence[ExerciseInfo] = EXERCISES) -> str:
    """El cuaderno del curso que es: metadatos ``curso_lora.notebook``; si no, el nombre del archivo."""
    known = list(dict.fromkeys(e.notebook for e in exercises))
    meta = nb.metadata.get("curso_lora")
    declared = meta.get("notebook") if isinstance(meta, dict) else None
    if declared in known:
        return declared
    stem = Path(filename).stem.lower().replace("-", "_").replace(" ", "_")
    if stem in known:
        return stem
    inside = [name for name in known if name in stem]
    if len(inside) == 1:
        return inside[0]
    raise SubmissionError(
        f"no reconozco el cuaderno (metadatos curso_lora.notebook = {declared!r}, archivo "
        f"{Path(filename).name!r}); debe ser uno de: {', '.join(known)}")


def read_submission(path: Path, exercises: Sequence[ExerciseInfo] = EXERCISES):
    """(cuaderno nbformat, nombre del cuaderno del curso) de una entrega; ``SubmissionError`` si no se puede."""
    if path.is_symlink():
        raise SubmissionError("es un enlace simbólico: entrega el archivo en sí, no un enlace a otro")
    if not path.exists():
        raise SubmissionError("no encuentro el archivo")
    if not path.is_file():
        raise SubmissionError("no es un archivo")
    if path.stat().st_size > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"el archivo pesa más de {MAX_SUBMISSION_BYTES // 2**20} MiB: ¿entregaste el "
                              "cuaderno con salidas enormes? Bórralas (Kernel > Restart & Clear Output)")
    try:
        data = path.read_bytes()  # la única vez que se lee la entrega; no se vuelve a abrir
    except OSError as error:
        raise SubmissionError(f"no puedo leer el archivo ({error.strerror or error})") from None
    nb = parse_submission(data)
    return nb, identify(nb, path.name, exercises)


def expand_paths(paths: Iterable) -> tuple[list[Path], list[str]]:
    """Archivos a corregir (las carpetas aportan sus ``*.ipynb``, también en subcarpetas) y avisos.

    Cada ruta es una fila: un enlace simbólico es una entrega aparte (se rechaza con su motivo), nunca
    se junta con el archivo al que apunta. Una misma ruta escrita dos veces cuenta una vez.
    """
    files, warnings_, seen = [], [], set()
    for given in map(Path, paths):
        if given.is_dir() and not given.is_symlink():
            found = sorted(p for p in given.rglob("*") if p.suffix.lower() == ".ipynb"
                           and (p.is_file() or p.is_symlink())
                           and not any(part.startswith(".") for part in p.relative_to(given).parts))
            if not found:
                warnings_.append(f"la carpeta {given} no tiene cuadernos .ipynb")
        else:
            found = [given]
        for path in found:
            key = Path(os.path.abspath(path))
            if key not in seen:
                seen.add(key)
                files.append(path)
    return files, warnings_


def shard(files: Sequence[Path], index: int, total: int) -> list[Path]:
    """La parte ``index`` (1..total) de ``files``: una de cada ``total``, en orden; todas juntas, todas."""
    return [path for number, path in enumerate(files) if number % total == index - 1]
