"""Los informes de la corrección: uno por entrega (HTML y Markdown) y el resumen de la clase (``resumen.html``).

Todo sale de lo que decidió quien corrige: los puntos del CSV y los veredictos del juez (medidos con fechas
ocultas), nunca de lo que la entrega mostró en su cuaderno. El informe de una entrega da, por ejercicio, los
puntos, el nivel, el veredicto y su mensaje y cómo pedir la pista en el cuaderno; además, los motivos de la
fila, si se ejecutó aislada y cuánto tardó. El resumen da, por ejercicio, cuántas entregas tienen el punto
(con una gráfica), los mensajes del juez más repetidos cuando no lo dio, la distribución de los totales, el
tiempo de cada entrega y del lote, y qué filas no se ejecutaron aisladas.

Un texto de la entrega (nombre de archivo, motivos, mensajes que citan sus valores) es hostil: se limpia
(``helpers.grading.text.clean``) y se escapa (HTML; en Markdown, también sus signos), y las páginas llevan una
política de seguridad (CSP) que no deja ejecutar ningún script. Cada archivo se escribe aparte y se enlaza
con su nombre sin pisar nada: si el nombre ya existe se elige otro (``-2``, ``-3``...) y se avisa.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import statistics
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..checks.registry import EXERCISES, POINTS_BY_LEVEL, exercises_for
from ..numbers import integer, percent
from .report import Batch, Grade
from .text import clean, short

SUMMARY = "resumen.html"
REPORT_SUFFIXES = (".informe.html", ".informe.md")
LEVELS = {"🐢": "básico", "🐕": "intermedio", "🦁": "avanzado"}
ICONS = {"correcto": "✅", "incorrecto": "❌", "error": "⚠️", "sin intentar": "➖", "": "·"}
NO_VERDICT = "sin veredicto"
NO_MESSAGE = "— (el juez no lo juzgó: mira los motivos de la fila)"
ISOLATED = "bwrap"
TOP_MESSAGES = 5
MAX_TEXT = 2000  # caracteres de un mensaje o motivo en una página: uno que cita un valor enorme no la infla
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px 32px}
h1{font-size:1.6em;margin:0 0 .3em} h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #d8dde6}
h3{font-size:1em;margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%;font-size:.92em} th,td{border:1px solid #d8dde6;padding:5px 8px;
vertical-align:top;text-align:left} th{background:#f1f4f8}
td.num,th.num{text-align:right;white-space:nowrap} .msg{white-space:pre-wrap;overflow-wrap:anywhere}
.archivo{font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.correcto{background:#eefaf0} .incorrecto{background:#fdf0f0} .error{background:#fff6e5}
.aviso{background:#fff6e5;border-left:4px solid #e0a100;padding:8px 12px}
.nota{color:#555;font-size:.9em} dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}
dt{font-weight:600} dd{margin:0} img{max-width:100%} table.compacta{width:auto;min-width:16em}
td.ancha{width:40%} td.nowrap{white-space:nowrap}
"""


# --- texto ------------------------------------------------------------------------------------------

def esc(text) -> str:
    """Texto (quizá de la entrega) seguro dentro de HTML: limpio y escapado, también las comillas."""
    return html.escape(clean(text, lines=True), quote=True)


_MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+!|~-])")


def md(text) -> str:
    """Texto (quizá de la entrega) seguro en una línea de Markdown: limpio, sin HTML y sin sus signos."""
    return _MARKDOWN_SIGNS.sub(r"\\\1", html.escape(" ".join(clean(text).split()), quote=False))


def duration(seconds: float) -> str:
    """``78.4`` → «78 s»; ``390`` → «6 min 30 s»."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def level(symbol: str) -> str:
    return f"{symbol} {LEVELS.get(symbol, '')}".strip()


def hint_call(name: str) -> str:
    """Cómo se pide la pista en el cuaderno (``from helpers.checks import ... as checks``)."""
    return f"checks.{name}.hint()"


# --- el informe de una entrega ----------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """Un ejercicio en el informe de una entrega."""

    name: str
    title: str
    level: str
    points: int
    maximum: int
    state: str  # uno de los estados del juez, o "" si no hubo veredicto
    message: str


def lines(grade: Grade) -> list[Line]:
    """Los ejercicios del cuaderno de la fila, con sus puntos (del CSV) y el veredicto del juez."""
    result = []
    for info in exercises_for(grade.cuaderno) if grade.cuaderno else []:
        state, message = grade.verdict(info.name)
        result.append(Line(info.name, info.title, info.level, grade.points.get(info.name, 0), info.points,
                           state, _capped(message)))
    return result


def _capped(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _isolation(grade: Grade) -> str:
    if grade.aislamiento == ISOLATED:
        return "en la caja de arena (bubblewrap)"
    return grade.aislamiento or "no se ejecutó"


def _headline(grade: Grade) -> str:
    if grade.cuaderno is None:
        return "No se pudo corregir: no se reconoce el cuaderno o no se puede leer."
    return f"{grade.total} de {grade.maximo} puntos"


def report_html(grade: Grade) -> str:
    """El informe de una entrega en HTML (una página sin scripts ni nada externo)."""
    facts = [("Entrega", f'<span class="archivo">{esc(grade.archivo)}</span>'),
             ("Cuaderno", esc(grade.cuaderno or "—")), ("Puntos", esc(_headline(grade))),
             ("Tiempo de corrección", esc(duration(grade.seconds))), ("Ejecución", esc(_isolation(grade)))]
    parts = ["<h1>Informe de corrección</h1>",
             "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    if grade.aislamiento not in ("", ISOLATED):
        parts.append('<p class="aviso">Esta entrega se ejecutó <strong>sin aislamiento</strong>.</p>')
    if grade.motivos:
        parts.append("<h2>Motivos de la fila</h2><ul>"
                     + "".join(f'<li class="msg">{esc(_capped(m))}</li>' for m in grade.motivos) + "</ul>")
    rows = lines(grade)
    if rows:
        body = "".join(
            f'<tr class="{esc(r.state)}"><td><code>{esc(r.name)}</code><br><small>{esc(r.title)}</small></td>'
            f"<td class=nowrap>{esc(level(r.level))}</td><td class=num>{r.points}/{r.maximum}</td>"
            f"<td class=nowrap>{ICONS[r.state]} {esc(r.state or NO_VERDICT)}</td>"
            f"<td class='msg ancha'>{esc(r.message) or NO_MESSAGE}</td>"
            f"<td><code>{esc(hint_call(r.name))}</code></td></tr>" for r in rows)
        parts += ["<h2>Ejercicios</h2>",
                  ("<table><thead><tr><th>Ejercicio</th><th>Nivel</th><th class=num>Puntos</th><th>Veredicto</th>"
                  "<th>Mensaje del juez</th><th>Pista en el cuaderno</th></tr></thead>"
                  f"<tbody>{body}</tbody></table>"),
                  f'<p class="nota">{esc(_JUDGE_NOTE)}</p>']
    return _page(f"Informe: {short(grade.archivo, 80)}", "".join(parts))


_FROM_JUDGE = ("Los puntos, veredictos y mensajes son del juez de quien corrige, medidos con fechas que el "
               "cuaderno nunca vio; los ✅/❌ que mostró el cuaderno no cuentan.")
_JUDGE_NOTE = (f"{_FROM_JUDGE} La pista se pide en el cuaderno con la orden de la última columna (hint(2) da "
               "la forma del código).")


def report_markdown(grade: Grade) -> str:
    """El mismo informe en Markdown (todo texto de la entrega, escapado)."""
    out = ["# Informe de corrección", "",
           f"- **Entrega:** {md(grade.archivo)}", f"- **Cuaderno:** {md(grade.cuaderno or '—')}",
           f"- **Puntos:** {_headline(grade)}", f"- **Tiempo de corrección:** {duration(grade.seconds)}",
           f"- **Ejecución:** {md(_isolation(grade))}", ""]
    if grade.motivos:
        out += ["## Motivos de la fila", "", *(f"- {md(_capped(m))}" for m in grade.motivos), ""]
    rows = lines(grade)
    if rows:
        out += ["## Ejercicios", "", "| Ejercicio | Nivel | Puntos | Veredicto | Mensaje del juez | Pista |",
                "|---|---|---:|---|---|---|"]
        out += [f"| `{r.name}` | {level(r.level)} | {r.points}/{r.maximum} | {ICONS[r.state]} "
                f"{r.state or NO_VERDICT} | {md(r.message) or NO_MESSAGE} | `{hint_call(r.name)}` |" for r in rows]
        out += ["", _JUDGE_NOTE]
    return "\n".join(out) + "\n"


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"es\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n")


# --- el resumen de la clase -------------------------------------------------------------------------

@dataclass
class ExerciseStats:
    """Un ejercicio en la clase: cuántas filas de su cuaderno, cuántas con el punto, estados y mensajes."""

    notebook: str
    name: str
    level: str
    points: int
    rows: int = 0
    passed: int = 0  # filas con todos los puntos del ejercicio, según el CSV
    states: Counter = field(default_factory=Counter)  # estado del juez (o "sin veredicto") -> filas
    messages: list[tuple[str, int, int]] = field(default_factory=list)  # (mensaje, filas, variantes)


@dataclass
class Summary:
    """Los números del resumen, calculados de las filas (CSV + veredictos)."""

    rows: int
    by_notebook: dict[str, int]
    exercises: list[ExerciseStats]
    totals: dict[str, dict[int, int]]  # cuaderno -> total -> filas
    seconds: list[tuple[str, float]]  # (archivo, segundos), de la más lenta a la más rápida
    not_isolated: list[tuple[str, str]]  # (archivo, aislamiento)
    with_reason: list[tuple[str, str]]  # (archivo, motivo)
    batches: list[Batch]


def _shape(message: str) -> str:
    """La forma de un mensaje, sin los valores que cita (números y textos entre comillas): así se agrupan."""
    text = " ".join(clean(message).split())
    text = re.sub(r"'[^']*'|\"[^\"]*\"|«[^»]*»", "'…'", text)
    return re.sub(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?", "#", text)


def _grouped(messages: Sequence[str]) -> list[tuple[str, int, int]]:
    """Los mensajes más repetidos, agrupados por su forma: (el más frecuente del grupo, filas, variantes)."""
    groups: dict[str, Counter] = {}
    for message in messages:
        groups.setdefault(_shape(message), Counter())[message] += 1
    def first(counts: Counter) -> str:  # el más frecuente; a igualdad, el primero en orden (no el de las filas)
        return min(counts, key=lambda message: (-counts[message], message))

    ranked = sorted(groups.values(), key=lambda c: (-sum(c.values()), first(c)))
    return [(first(c), sum(c.values()), len(c)) for c in ranked[:TOP_MESSAGES]]


def summarize(grades: Sequence[Grade], batches: Sequence[Batch] = ()) -> Summary:
    """Los números del resumen de la clase."""
    by_notebook = Counter(g.cuaderno for g in grades if g.cuaderno)
    exercises = []
    for info in (e for e in EXERCISES if e.notebook in by_notebook):
        stats = ExerciseStats(info.notebook, info.name, info.level, info.points)
        refused = []
        for grade in (g for g in grades if g.cuaderno == info.notebook):
            state, message = grade.verdict(info.name)
            stats.rows += 1
            stats.passed += grade.points.get(info.name, 0) == info.points
            stats.states[state or NO_VERDICT] += 1
            if state and state != "correcto":
                refused.append(_capped(message))
        stats.messages = _grouped(refused)
        exercises.append(stats)
    totals = {notebook: dict(sorted(Counter(g.total for g in grades if g.cuaderno == notebook).items()))
              for notebook in by_notebook}
    return Summary(
        rows=len(grades), by_notebook=dict(by_notebook), exercises=exercises, totals=totals,
        seconds=sorted(((g.archivo, g.seconds) for g in grades), key=lambda item: -item[1]),
        not_isolated=[(g.archivo, g.aislamiento) for g in grades if g.aislamiento not in ("", ISOLATED)],
        with_reason=[(g.archivo, _capped(g.motivo)) for g in grades if g.motivos], batches=list(batches))


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)  # el diseño «constrained» ya ajusta los márgenes
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(summary: Summary) -> tuple[str, str]:
    """(éxito por ejercicio, distribución de los totales): dos PNG en base64, con textos en español."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from ..plot_style import spanish_numbers

    stats = summary.exercises
    fig = Figure(figsize=(8, 0.35 * len(stats) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{s.name} ({LEVELS.get(s.level, '')})" for s in stats]
    shares = [s.passed / s.rows if s.rows else 0 for s in stats]
    colors = [f"C{list(summary.by_notebook).index(s.notebook)}" for s in stats]
    ax.barh(range(len(stats)), shares, color=colors)
    ax.set_yticks(range(len(stats)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("entregas con el punto")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: percent(v, 0)))
    for y, (share, s) in enumerate(zip(shares, stats)):
        ax.text(min(share, 0.83) + 0.01, y, f"{s.passed}/{s.rows}", va="center", fontsize=8)
    ax.set_title("Éxito por ejercicio (colores: cuaderno)")
    spanish_numbers(fig)
    success = _png(fig)

    fig = Figure(figsize=(8, 2.6 * max(1, len(summary.totals))), layout="constrained")
    for n, (notebook, counts) in enumerate(summary.totals.items(), start=1):
        ax = fig.add_subplot(len(summary.totals), 1, n)
        maximum = sum(POINTS_BY_LEVEL[e.level] for e in exercises_for(notebook))
        ax.bar(range(maximum + 1), [counts.get(t, 0) for t in range(maximum + 1)], color=f"C{n - 1}")
        ax.set_xticks(range(maximum + 1))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"total de {notebook} (máximo {maximum})")
        ax.set_ylabel("entregas")
    fig.suptitle("Distribución de los totales")
    spanish_numbers(fig)
    return success, _png(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (),
           compact: bool = False) -> str:
    """Una tabla HTML; las celdas ya vienen escapadas."""
    def cell(tag, n, value):
        return f"<{tag} class=num>{value}</{tag}>" if n in numeric else f"<{tag}>{value}</{tag}>"
    head = "".join(cell("th", n, h) for n, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", n, v) for n, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{' class=compacta' if compact else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _file(archivo: str, links: dict[str, str]) -> str:
    name = f'<span class="archivo">{esc(archivo)}</span>'
    return f'<a href="{esc(links[archivo])}">{name}</a>' if archivo in links else name


def _wall(batches: Sequence[Batch]) -> str:
    if not batches:
        return "No consta el tiempo de reloj del lote."
    if len(batches) == 1:
        b = batches[0]
        return (f"El lote tardó {duration(b.segundos)} de reloj en corregir {integer(b.entregas)} entrega(s) "
                f"con --jobs {b.trabajos}.")
    parts = "; ".join(f"parte {esc(b.parte)}: {integer(b.entregas)} entrega(s) en {duration(b.segundos)}"
                      for b in batches)
    return (f"{len(batches)} partes ({parts}). A la vez, en máquinas distintas, la clase tarda lo que la más "
            f"lenta: {duration(max(b.segundos for b in batches))}; una tras otra, "
            f"{duration(sum(b.segundos for b in batches))}.")


def summary_html(summary: Summary, links: dict[str, str] | None = None) -> str:
    """La página del resumen; ``links`` lleva de cada archivo a su informe (en la misma carpeta)."""
    links = links or {}
    success, totals = plots(summary) if summary.exercises else ("", "")
    counts = ", ".join(f"{integer(n)} de <code>{esc(nb)}</code>" for nb, n in summary.by_notebook.items())
    ungraded = summary.rows - sum(summary.by_notebook.values())
    parts = ["<h1>Resumen de la clase</h1>",
             f"<p>{integer(summary.rows)} entrega(s): {counts or 'ninguna corregida'}"
             + (f", y {integer(ungraded)} sin corregir" if ungraded else "") + ".</p>",
             f'<p class="nota">{esc(_FROM_JUDGE)}</p>', "<h2>Éxito por ejercicio</h2>"]
    if success:
        parts.append(f'<img alt="Porcentaje de entregas con el punto en cada ejercicio" '
                     f'src="data:image/png;base64,{success}">')
    for notebook in summary.by_notebook:
        rows = []
        for s in (s for s in summary.exercises if s.notebook == notebook):
            states = ", ".join(f"{ICONS.get(k, ICONS[''])} {esc(k)}: {v}" for k, v in sorted(s.states.items()))
            rows.append([f"<code>{esc(s.name)}</code>", esc(level(s.level)), str(s.points),
                         f"{s.passed}/{s.rows}", esc(percent(s.passed / s.rows if s.rows else 0)), states])
        parts += [f"<h3>{esc(notebook)}</h3>",
                  _table(["Ejercicio", "Nivel", "Puntos", "Con el punto", "%", "Veredictos del juez"], rows,
                         numeric=(2, 3, 4))]
    parts.append("<h2>Mensajes más repetidos del juez cuando no dio el punto</h2>")
    refused = [s for s in summary.exercises if s.messages]
    for s in refused:
        items = "".join(f'<li><strong>{n}×</strong> <span class="msg">{esc(message)}</span>'
                        + (f" <small>({variants} variantes con otros valores)</small>" if variants > 1 else "")
                        + "</li>" for message, n, variants in s.messages)
        parts.append(f"<h3><code>{esc(s.name)}</code></h3><ol>{items}</ol>")
    if not refused:
        parts.append("<p>El juez dio el punto en todos los ejercicios juzgados.</p>")
    parts.append("<h2>Distribución de los totales</h2>")
    if totals:
        parts.append(f'<img alt="Cuántas entregas sacaron cada total" src="data:image/png;base64,{totals}">')
    for notebook, counts in summary.totals.items():
        parts += [f"<h3>{esc(notebook)}</h3>",
                  _table(["Total", "Entregas"], [[str(t), integer(n)] for t, n in counts.items()], (0, 1), compact=True)]
    seconds = [s for _, s in summary.seconds]
    parts += ["<h2>Tiempo de corrección</h2>", f"<p>{_wall(summary.batches)}</p>"]
    if seconds:
        parts.append(f"<p>Por entrega: mediana {duration(statistics.median(seconds))}, la más lenta "
                     f"{duration(max(seconds))}, todas juntas {duration(sum(seconds))}.</p>")
        parts.append(_table(["Entrega", "Tiempo"], [[_file(a, links), duration(s)] for a, s in summary.seconds],
                            numeric=(1,)))
    parts.append("<h2>Filas sin aislamiento</h2>")
    if summary.not_isolated:
        parts.append('<p class="aviso">Estas entregas se ejecutaron fuera de la caja de arena: pudieron leer '
                     "y escribir archivos de quien corrige.</p>"
                     + _table(["Entrega", "Aislamiento"], [[_file(a, links), f'<span class="msg">{esc(w)}</span>']
                                                          for a, w in summary.not_isolated]))
    else:
        parts.append("<p>Ninguna: todas las entregas que se ejecutaron lo hicieron en la caja de arena.</p>")
    if summary.with_reason:
        parts += ["<h2>Filas con motivo</h2>",
                  _table(["Entrega", "Motivo"], [[_file(a, links), f'<span class="msg">{esc(m)}</span>']
                                                 for a, m in summary.with_reason])]
    return _page("Resumen de la clase", "\n".join(parts))


# --- escribir sin pisar nada ------------------------------------------------------------------------

def file_stem(archivo: str) -> str:
    """Un nombre de archivo seguro a partir de la ruta de la entrega (sin carpetas ni signos raros)."""
    name = re.sub(r"[^\w.-]+", "_", clean(archivo)).strip("._") or "entrega"
    name = name[:-6] if name.lower().endswith(".ipynb") else name
    return name.encode("utf-8")[:150].decode("utf-8", errors="ignore")


def write_new(folder: Path, stem: str, suffix: str, text: str) -> Path:
    """Escribe ``text`` en ``folder/<stem><suffix>`` sin pisar nada: aparte y enlazado con un nombre que no
    exista (``stem``, ``stem-2``...). Devuelve la ruta escrita."""
    handle, partial = tempfile.mkstemp(dir=folder, prefix=".parcial-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        for n in range(1, 1000):
            target = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
            try:
                os.link(partial, target)  # falla si ya existe: nunca pisa un archivo
                return target
            except FileExistsError:
                continue
            except OSError:  # un sistema de archivos sin enlaces duros
                if not os.path.lexists(target):
                    os.rename(partial, target)
                    return target
        raise FileExistsError(f"no encuentro un nombre libre para {stem}{suffix} en {folder}")
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)


class Reports:
    """Los informes de un lote en ``folder``: uno por fila (``add``) y el resumen (``summary``)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.links: dict[str, str] = {}  # archivo -> nombre de su informe HTML
        self.bases: set[str] = set()
        self.renamed: list[str] = []  # avisos: un nombre ya existía y se eligió otro

    def add(self, grade: Grade) -> Path:
        """Escribe el informe HTML y el Markdown de ``grade`` con el mismo nombre base; devuelve el HTML."""
        stem, n = file_stem(grade.archivo), 0
        while True:
            n += 1
            base = stem if n == 1 else f"{stem}-{n}"
            if base in self.bases:  # dos entregas con el mismo nombre en este lote
                continue
            existing = [p.name for p in (self.folder / f"{base}{s}" for s in REPORT_SUFFIXES) if os.path.lexists(p)]
            if not existing:
                break
            self.renamed.append(f"{existing[0]} ya existía en {self.folder}: no lo piso (el informe va con otro "
                                "nombre)")
        self.bases.add(base)
        written = write_new(self.folder, base, REPORT_SUFFIXES[0], report_html(grade))
        write_new(self.folder, written.name.removesuffix(REPORT_SUFFIXES[0]), REPORT_SUFFIXES[1],
                  report_markdown(grade))
        self.links[grade.archivo] = written.name
        return written

    def summary(self, grades: Sequence[Grade], batches: Sequence[Batch] = ()) -> Path:
        """Escribe ``resumen.html`` (o ``resumen-2.html``... si ya existe, con su aviso)."""
        stem, suffix = SUMMARY.rsplit(".", 1)
        written = write_new(self.folder, stem, f".{suffix}", summary_html(summarize(grades, batches), self.links))
        if written.name != SUMMARY:
            self.renamed.append(f"{SUMMARY} ya existía en {self.folder}: no lo piso; el resumen va en {written.name}")
        return written
