"""Informes de la corrección: uno por entrega y el resumen de la clase, a partir del CSV y los veredictos.

Sin kernel ni juez: filas ``Grade`` sintéticas como las que deja la cadena (también las que fallaron, y una
entrega hostil cuyo nombre, motivos y mensajes llevan HTML, JavaScript y secuencias de la terminal). La orden
de línea se prueba con ``grade_paths`` sustituido por esas filas. Al final, Chromium sin ventana dibuja un
informe y el resumen (donde lo hay).
"""

import csv
import html.parser
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from helpers.checks.registry import exercises_for
from helpers.grading import cli, feedback, report
from helpers.grading.feedback import Reports, report_html, report_markdown, summarize
from helpers.grading.report import Batch, Grade, read_class, record_path, write_csv, write_record
from helpers.grading.sandbox import NOT_ISOLATED
from helpers.grading.text import clean, short

LOAD, TUNE = "load_lora_adapter_example", "lora_finetuning"
HOSTILE_NAME = 'entregas/<script>alert(1)</script>"onload=alert(2) x=\x1b[2K\r[1/9] ana — 7 puntos.ipynb'
HOSTILE_VALUE = ('<img src=x onerror="window.__pwned=1"> [pincha](javascript:alert(3)) | `x` '
                 '<a href="javascript:alert(4)">a</a>\x1b]8;;javascript:alert(5)\x07enlace\x1b]8;;\x07')
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def verdicts(notebook, states, message="{name}: bien"):
    return {e.name: f"{state}: {message.format(name=e.name)}"
            for e, state in zip(exercises_for(notebook), states)}


def row(archivo, notebook, states, motivos=(), aislamiento="bwrap", seconds=60.0, message="{name}: bien"):
    """Una fila como la de la cadena: puntos completos donde el juez dice «correcto»."""
    if notebook is None:
        return Grade(archivo, None, {}, None, list(motivos), aislamiento, seconds)
    exercises = exercises_for(notebook)
    points = {e.name: e.points if state == "correcto" else 0 for e, state in zip(exercises, states)}
    return Grade(archivo, notebook, points, sum(e.points for e in exercises), list(motivos), aislamiento, seconds,
                 mensajes=verdicts(notebook, states, message) if states else {})


def class_rows() -> list[Grade]:
    ok, bad, none = "correcto", "incorrecto", "sin intentar"
    return [
        row("entregas/ana/load_lora_adapter_example.ipynb", LOAD, [ok] * 4, seconds=78.2),
        row("entregas/beto/load_lora_adapter_example.ipynb", LOAD, [ok, bad, ok, none], seconds=81.5,
            message="{name}: el adaptador responde en formato US en 3 de 8 fechas ocultas"),
        row("entregas/carla/load_lora_adapter_example.ipynb", LOAD, [ok, bad, bad, none], seconds=90.0,
            message="{name}: el adaptador responde en formato US en 5 de 8 fechas ocultas"),
        row(HOSTILE_NAME, LOAD, [bad, "error", ok, none], seconds=12.5,
            motivos=[f"switch_adapters: rechazado sin cargarlo ({HOSTILE_VALUE})", "\x1b[31mrojo\x1b[0m\rpisado"],
            message="{name}: r = 'ab<script>alert(6)</script>' no es un entero" + HOSTILE_VALUE),
        row("entregas/dani/load_lora_adapter_example.ipynb", LOAD, [], seconds=40.0,
            motivos=["no se pudo juzgar: el juez se detuvo: tiempo agotado; la fila vale 0"]),
        row("entregas/eva/lora_finetuning.ipynb", TUNE, [ok, ok, bad, ok, none, ok, ok], seconds=301.0,
            aislamiento=NOT_ISOLATED),
        row("entregas/vacio.ipynb", None, [], motivos=["el archivo está vacío"], aislamiento="", seconds=0.01),
    ]


@pytest.fixture
def graded(tmp_path):
    """El CSV y sus veredictos de la clase, como los deja la orden de línea."""
    grades = class_rows()
    csv_path = write_csv(grades, tmp_path / "notas.csv")
    write_record(grades, csv_path, Batch(semilla=7, segundos=700.0, entregas=len(grades), trabajos=2))
    return grades, csv_path


# --- texto limpio --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["a\x1b[2K\rb", "x\x1b]8;;javascript:alert(1)\x07y\x1b]8;;\x07", "\x9b31mz",
                                  "nombre\u202egnp.exe", "no utf-8 \udcff", "nul\x00 bel\x07 del\x7f",
                                  "\x1bP1;2|datos\x1b\\fin"])
def test_clean_removes_every_control_sequence(text):
    for cleaned in (clean(text), clean(text, lines=True), short(text)):
        assert not CONTROL.search(cleaned.replace("\n", "")) and "\x1b" not in cleaned, repr(cleaned)
        assert not re.search(r"[\u202a-\u202e\ud800-\udfff]", cleaned), repr(cleaned)
    assert clean("línea 1\r\nlínea 2", lines=True) == "línea 1\nlínea 2"
    assert clean("a\tb\nc") == "a b c"


def test_the_csv_and_the_table_carry_no_control_characters(graded):
    grades, csv_path = graded
    raw = csv_path.read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\r" not in raw.replace("\r\n", "")  # el CSV acaba sus líneas en \r\n
    assert "\x1b" not in report.table(grades) and "\r" not in report.table(grades)
    with csv_path.open(encoding="utf-8", newline="") as handle:
        assert next(csv.reader(handle)) == report.csv_header()


# --- un informe por fila -------------------------------------------------------------------------------

def test_a_report_per_row_in_html_and_markdown_even_for_failed_rows(graded, tmp_path):
    grades, csv_path = graded
    reports = Reports(tmp_path / "informes")
    rows, _ = read_class(csv_path)
    written = [reports.add(g) for g in rows]
    assert len(set(written)) == len(grades)
    names = sorted(p.name for p in (tmp_path / "informes").iterdir())
    assert len(names) == 2 * len(grades) and not [n for n in names if n.startswith(".")], names
    assert "entregas_ana_load_lora_adapter_example.informe.html" in names
    for grade, page in zip(rows, written):
        text, markdown = page.read_text("utf-8"), page.with_name(page.name.replace(".html", ".md")).read_text()
        assert feedback.esc(grade.archivo) in text and feedback.md(grade.archivo) in markdown
        for motivo in grade.motivos:
            assert feedback.esc(motivo) in text and feedback.md(motivo) in markdown
        for line in feedback.lines(grade):  # puntos, nivel, veredicto, mensaje y la pista de cada ejercicio
            assert f"{line.points}/{line.maximum}" in text and f"checks.{line.name}.hint()" in text
            assert feedback.level(line.level) in text and feedback.esc(line.message) in text
            assert f"`checks.{line.name}.hint()`" in markdown
        assert feedback.duration(grade.seconds) in text
    empty, unjudged, eva = (read(written, k) for k in ("vacio", "dani", "eva"))
    assert "No se pudo corregir" in empty and "el archivo está vacío" in empty and "<table>" not in empty
    assert "no se pudo juzgar" in unjudged and unjudged.count("sin veredicto") == 4
    assert "sin aislamiento" in eva and "SIN AISLAMIENTO" in eva
    ana = read(written, "ana")
    assert "4 de 7 puntos" not in ana and "7 de 7 puntos" in ana and "en la caja de arena (bubblewrap)" in ana


def read(written, key):
    return next(p for p in written if key in p.name).read_text("utf-8")


def test_the_verdict_is_the_judges_state_and_message():
    grade = row("a.ipynb", LOAD, ["incorrecto"] * 4, message="falla: {name}")
    assert grade.verdict("load_adapter") == ("incorrecto", "falla: load_adapter")
    assert Grade("b.ipynb").verdict("load_adapter") == ("", "")


# --- texto hostil --------------------------------------------------------------------------------------

ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "dl", "dt", "dd",
                "span", "p", "ul", "ol", "li", "strong", "small", "code", "br", "table", "thead", "tbody", "tr",
                "th", "td", "img", "a"}


class Tags(html.parser.HTMLParser):
    """Las etiquetas y atributos de una página, tal como los ve un navegador."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def tags_of(page: str):
    parser = Tags()
    parser.feed(page)
    return parser.found


def test_hostile_names_and_values_cannot_inject_markup_or_script(graded, tmp_path):
    grades, csv_path = graded
    hostile = next(g for g in grades if g.archivo == HOSTILE_NAME)
    reports = Reports(tmp_path / "informes")
    for g in grades:
        reports.add(g)
    pages = [report_html(hostile), (reports.summary(*read_class(csv_path))).read_text("utf-8")]
    for page in pages:
        assert "<script" not in page and "\x1b" not in page and "\r" not in page
        assert feedback.CSP in page  # y, por si acaso, ningún script puede ejecutarse
        for tag, attrs in tags_of(page):
            assert tag in ALLOWED_TAGS, tag
            assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
            for url in (attrs.get("href"), attrs.get("src")):
                assert url is None or url.startswith("data:image/png;base64,") or url.endswith(".informe.html")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;onload=alert(2)" in page  # se ve como texto
    markdown = report_markdown(hostile)
    assert "<" not in markdown.replace("&lt;", "") and "\x1b" not in markdown and "\r" not in markdown
    assert "](javascript" not in markdown and "\\[pincha\\]\\(javascript:alert\\(3\\)\\)" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    assert len(table_rows) == 4 and all(len(re.findall(r"(?<!\\)\|", line)) == 7 for line in table_rows)


def test_the_terminal_gets_clean_lines(tmp_path, monkeypatch, capsys):
    grades = class_rows()
    run_cli(tmp_path, monkeypatch, grades, ["--informes", str(tmp_path / "informes")])
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\r" not in out + err
    assert "[4/7] entregas/<script>alert(1)</script>\"onload=alert(2) x= [1/9] ana" in out


# --- el resumen ------------------------------------------------------------------------------------------

def test_summary_numbers_are_the_csvs(graded):
    """Éxitos por ejercicio, totales, tiempos y filas sin aislar, recontados del CSV con el módulo csv."""
    _, csv_path = graded
    with csv_path.open(encoding="utf-8", newline="") as handle:
        table_rows = list(csv.DictReader(handle))
    summary = summarize(*read_class(csv_path))
    names = report.columns()
    for stats in summary.exercises:
        mine = [r for r in table_rows if r["cuaderno"] == stats.notebook]
        assert stats.rows == len(mine)
        assert stats.passed == sum(r[names[(stats.notebook, stats.name)]] == str(stats.points) for r in mine)
    for notebook, counts in summary.totals.items():
        assert counts == dict(Counter(int(r["total"]) for r in table_rows if r["cuaderno"] == notebook))
    assert [clean(a) for a, _ in summary.not_isolated] == [
        r["archivo"] for r in table_rows if r["aislamiento"] not in ("", "bwrap")]
    assert summary.rows == len(table_rows) and sum(summary.by_notebook.values()) == len(
        [r for r in table_rows if r["cuaderno"]])
    record = json.loads(record_path(csv_path).read_text())
    assert sorted(s for _, s in summary.seconds) == sorted(r["segundos"] for r in record["filas"])
    # las cifras que enseña la página
    page = feedback.summary_html(summary)
    load = {s.name: s for s in summary.exercises if s.notebook == LOAD}
    assert load["load_adapter"].passed == 3 and load["load_adapter"].rows == 5
    assert "3/5" in page and "60,0\u00a0%" in page and "11 min 40 s" in page and "eva" in page


def test_refusal_messages_are_grouped_by_their_shape():
    summary = summarize(class_rows())
    switch = next(s for s in summary.exercises if s.name == "switch_adapters")
    message, count, variants = switch.messages[0]
    assert count == 2 and variants == 2 and "fechas ocultas" in message  # «3 de 8» y «5 de 8»: una forma
    assert switch.states == Counter({"incorrecto": 2, "correcto": 1, "sin veredicto": 1, "error": 1})


def test_an_instructors_files_are_never_overwritten(graded, tmp_path, monkeypatch, capsys):
    grades, _csv_path = graded
    folder = tmp_path / "informes"
    folder.mkdir()
    mine = {"resumen.html": "mi resumen", "entregas_ana_load_lora_adapter_example.informe.md": "mis notas"}
    for name, text in mine.items():
        (folder / name).write_text(text)
    run_cli(tmp_path, monkeypatch, grades, ["--informes", str(folder)])
    err = capsys.readouterr().err
    assert all((folder / name).read_text() == text for name, text in mine.items())
    assert (folder / "resumen-2.html").is_file() and (folder / "entregas_ana_load_lora_adapter_example-2.informe.html"
                                                      ).is_file()
    assert "resumen.html ya existía" in err and "no lo piso" in err


def test_reports_never_go_where_a_submission_reaches(tmp_path, monkeypatch, capsys):
    (tmp_path / "entregas").mkdir()
    (tmp_path / "entregas" / "ana.ipynb").write_text("{}")
    for folder in (tmp_path / "entregas" / "informes", Path(cli.sys.prefix) / "informes"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(tmp_path / "entregas"), "--csv", str(tmp_path / "notas.csv"), "--informes", str(folder)])
        assert exit_info.value.code == 2 and "--informes" in capsys.readouterr().err
        assert not folder.exists()


# --- la orden de línea y las partes --------------------------------------------------------------------

def run_cli(tmp_path, monkeypatch, grades, extra, csv_name="notas.csv", part=None):
    """``python -m helpers.grading`` con ``grade_paths`` sustituido: devuelve las filas dadas, una a una."""
    import contextlib

    submissions = tmp_path / "subidas"
    submissions.mkdir(exist_ok=True)
    paths = []
    for n, _ in enumerate(grades):
        paths.append(submissions / f"{n}.ipynb")
        paths[-1].write_text("{}")

    def fake_grade_paths(files, *, course, jobs, on_grade, **options):
        done = []
        for grade in grades:
            done.append(grade)
            on_grade(list(done), grade)
        return done

    monkeypatch.setattr(cli, "grade_paths", fake_grade_paths)
    monkeypatch.setattr(cli, "course_copy", lambda: contextlib.nullcontext(tmp_path))
    args = [*map(str, paths), "--csv", str(tmp_path / csv_name), "--semilla", "7", *extra]
    assert cli.main([*args, *(["--parte", part] if part else [])]) == 0


def test_shards_merged_with_unir_give_the_same_summary(tmp_path, monkeypatch, capsys):
    grades = class_rows()
    run_cli(tmp_path, monkeypatch, grades, ["--informes", str(tmp_path / "entera")], "entera.csv")
    halves = [grades[::2], grades[1::2]]
    for n, half in enumerate(halves, start=1):
        run_cli(tmp_path, monkeypatch, half, [], f"parte-{n}.csv", part=f"{n}/2")
    assert cli.main(["--unir", str(tmp_path / "parte-1.csv"), str(tmp_path / "parte-2.csv"),
                     "--csv", str(tmp_path / "unida.csv"), "--informes", str(tmp_path / "unida")]) == 0
    whole, merged = read_class(tmp_path / "entera.csv"), read_class(tmp_path / "unida.csv")
    assert [b.parte for b in merged[1]] == ["1/2", "2/2"] and sum(b.entregas for b in merged[1]) == len(grades)
    a, b = summarize(whole[0]), summarize(merged[0])
    by_name = sorted(a.seconds) == sorted(b.seconds) and sorted(a.with_reason) == sorted(b.with_reason)
    assert by_name and (a.exercises, a.totals, a.by_notebook, sorted(a.not_isolated)) == (
        b.exercises, b.totals, b.by_notebook, sorted(b.not_isolated))
    for folder in ("entera", "unida"):  # un informe por fila en las dos, y su resumen
        files = sorted(p.name for p in (tmp_path / folder).iterdir())
        assert len(files) == 2 * len(grades) + 1 and "resumen.html" in files, files
    page = (tmp_path / "unida" / "resumen.html").read_text("utf-8")
    assert "2 partes" in page and "entregas_ana_load_lora_adapter_example.informe.html" in page
    assert "Veredictos de las partes" in capsys.readouterr().out


def test_merging_shards_with_different_seeds_warns(tmp_path):
    paths = []
    for n, seed in enumerate((1, 2), start=1):
        grades = class_rows()[n - 1:n]
        paths.append(write_csv(grades, tmp_path / f"p{n}.csv"))
        write_record(grades, paths[-1], Batch(parte=f"{n}/2", semilla=seed))
    report.merge_csvs(paths, tmp_path / "total.csv")
    assert "semillas distintas" in report.merge_records(paths, tmp_path / "total.csv")[0]


def test_a_csv_without_its_verdicts_or_with_other_rows_is_refused(graded, tmp_path):
    grades, _csv_path = graded
    write_csv(grades[:2], tmp_path / "otra.csv")
    with pytest.raises(ValueError, match="falta otra.veredictos.json"):
        read_class(tmp_path / "otra.csv")
    write_record(grades[:3], tmp_path / "otra.csv", Batch())
    with pytest.raises(ValueError, match="no tienen las mismas entregas"):
        read_class(tmp_path / "otra.csv")


# --- en un navegador de verdad ---------------------------------------------------------------------------

def _chromium():
    from helpers.authoring import render

    return render.find_chromium()


@pytest.mark.skipif(_chromium() is None, reason="sin Chromium: las páginas no se dibujan en un navegador "
                                                 "(apt-get install chromium, o CURSO_LORA_CHROMIUM=/ruta)")
def test_chromium_draws_the_report_and_the_summary_and_runs_no_script(graded, tmp_path):
    import asyncio

    from helpers.authoring.render import Browser

    _grades, csv_path = graded
    reports = Reports(tmp_path / "informes")
    for g in read_class(csv_path)[0]:
        reports.add(g)
    pages = [reports.folder / reports.links[HOSTILE_NAME], reports.summary(*read_class(csv_path))]
    browser = Browser(_chromium())
    probe = """JSON.stringify({pwned: window.__pwned === 1, rows: document.querySelectorAll('tr').length,
        images: [...document.images].map(i => [i.complete, i.naturalWidth]),
        height: document.documentElement.scrollHeight, title: document.title})"""

    async def look(page):
        await browser.connect()
        try:
            shots = await browser.pages(page, 1000, 1300)
            return shots, json.loads(await browser.evaluate(probe))
        finally:
            browser.socket.close()
            browser.socket = None

    try:
        seen = {}
        for page in pages:
            shots, seen[page] = asyncio.run(look(page))
            for n, png in enumerate(shots, start=1):  # para mirarlas: junto a cada página
                (page.parent / f"{page.stem}-{n:02d}.png").write_bytes(png)
            assert not seen[page]["pwned"] and seen[page]["rows"] > 4 and seen[page]["height"] > 600, seen
            assert all(complete and width > 300 for complete, width in seen[page]["images"]), seen
            assert shots and len(shots[0]) > 20_000  # algo dibujado, no una página en blanco
    finally:
        browser.close()
    one, summary = (seen[page] for page in pages)
    assert len(one["images"]) == 0 and len(summary["images"]) == 2  # las dos gráficas del resumen
    assert one["title"].startswith("Informe: entregas/<script>") and summary["title"] == "Resumen de la clase"


def test_the_real_chain_reports_rows_that_failed_with_hostile_names(tmp_path, monkeypatch, capsys):
    """Por la cadena de verdad (el paso «leer» falla, así que no hace falta kernel): nombres con HTML y
    secuencias de la terminal llegan limpios a la terminal, al CSV y a su informe."""
    import contextlib

    from helpers.paths import COURSE_ROOT

    monkeypatch.setattr(cli, "course_copy", lambda: contextlib.nullcontext(COURSE_ROOT))
    folder = tmp_path / "entregas"
    folder.mkdir()
    names = ['x\x1b[2K\r<img src=x onerror=alert(1)>"onload=.ipynb', "\x1b]0;titulo\x07_lora_finetuning.ipynb"]
    for name in names:
        (folder / name).write_text('{"nbformat": 4, "cells": [\x1b[31m')
    csv_path = tmp_path / "notas.csv"
    assert cli.main([str(folder), "--csv", str(csv_path), "--informes", str(tmp_path / "informes")]) == 0
    out, err = capsys.readouterr()
    assert not CONTROL.search((out + err).replace("\n", "")), repr(out + err)
    raw = csv_path.read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\x07" not in raw and "\r" not in raw.replace("\r\n", "")
    grades, _ = read_class(csv_path)
    assert sorted(g.archivo for g in grades) == sorted(str(folder / n) for n in names)
    pages = sorted((tmp_path / "informes").glob("*.informe.html"))
    assert len(pages) == 2 and (tmp_path / "informes" / "resumen.html").is_file()
    for page in [*pages, tmp_path / "informes" / "resumen.html"]:
        text = page.read_text("utf-8")
        assert "\x1b" not in text and "\x07" not in text and "<img src=x" not in text
        assert ("&lt;img src=x onerror=alert(1)&gt;" in text) == ("lora_finetuning" not in page.name)
    finetuning = next(p for p in pages if "lora_finetuning" in p.name).read_text("utf-8")
    assert "0 de 13 puntos" in finetuning and finetuning.count("sin veredicto") == 7


def test_unir_without_the_verdicts_of_a_part_merges_the_csv_and_refuses_the_reports(tmp_path, capsys):
    parts = [write_csv(class_rows()[:2], tmp_path / "p1.csv"), write_csv(class_rows()[2:], tmp_path / "p2.csv")]
    write_record(class_rows()[:2], parts[0], Batch(parte="1/2"))  # a la parte 2 le faltan sus veredictos
    assert cli.main(["--unir", *map(str, parts), "--csv", str(tmp_path / "total.csv")]) == 0
    assert "falta p2.veredictos.json" in capsys.readouterr().err and not record_path(tmp_path / "total.csv").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--unir", *map(str, parts), "--csv", str(tmp_path / "total.csv"), "--informes",
                  str(tmp_path / "informes")])
    assert exit_info.value.code == 2 and "no puedo escribir los informes" in capsys.readouterr().err
    assert not list((tmp_path / "informes").glob("*.html"))
