"""helpers/authoring/render.py: los cuadernos en HTML y en páginas PNG para revisarlos (make render).

Casi todo se prueba sin navegador; la prueba con Chromium solo corre donde lo hay.
"""

import json
import struct

import nbformat
import pytest

from helpers.authoring import render


def write_notebook(path, *cells):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=list(cells)), path)
    return path


@pytest.fixture
def course(tmp_path):
    """Una carpeta de curso con dos cuadernos resueltos, una lección y una figura."""
    for name in ("b", "a"):
        write_notebook(tmp_path / "solutions" / f"{name}.ipynb", nbformat.v4.new_markdown_cell(f"# {name}"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "punto.png").write_bytes(PNG_1x1)
    (tmp_path / "leccion.md").write_text("# Lección\n\n![un punto](images/punto.png)\n\n$r \\ll d$\n")
    return tmp_path


PNG_1x1 = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def test_by_default_every_solution_notebook_and_names_pick_some(course):
    assert [p.name for p in render.sources([], course)] == ["a.ipynb", "b.ipynb"]
    assert render.sources(["b", "leccion.md"], course) == [course / "solutions" / "b.ipynb",
                                                           course / "leccion.md"]


def test_without_solution_notebooks_it_asks_what_to_render(tmp_path):
    with pytest.raises(render.RenderError, match=r"No hay cuadernos resueltos en solutions/: di qué dibujar"):
        render.sources([], tmp_path)


def test_an_unknown_name_is_refused_in_spanish(course):
    with pytest.raises(render.RenderError, match=r"No encuentro lora, otro\.txt\. .*cuaderno resuelto \(a, b\)"):
        render.sources(["lora", "otro.txt"], course)


def test_markdown_becomes_html_with_its_images_inside(course):
    html = render.to_html(course / "leccion.md")
    assert "data:image/png;base64," in html and "images/punto.png" not in html
    assert "Lección" in html and "r \\ll d" in html  # la fórmula queda para MathJax


def test_the_distributions_mathjax_is_used_when_present(tmp_path):
    assert render.local_mathjax([tmp_path / "no" / "MathJax.js"]) is None
    (tmp_path / "MathJax.js").write_text("")
    url = render.local_mathjax([tmp_path / "no" / "MathJax.js", tmp_path / "MathJax.js"])
    assert url == (tmp_path / "MathJax.js").as_uri() + "?config=TeX-AMS_SVG-full,Safe"
    html = render.to_html(write_notebook(tmp_path / "x.ipynb", nbformat.v4.new_markdown_cell("$x$")), url)
    assert f'<script src="{url}">' in html and "libs/mathjax" not in html


def test_pages_cover_the_document_and_cut_between_blocks():
    pages = render.page_breaks(3000, [0, 500, 1100, 1250, 2000, 2990, 5000], page=1300, min_page=0.4)
    assert pages == [(0, 1250), (1250, 2000), (2000, 3000)]  # el último corte que cabe en cada página
    assert render.page_breaks(100, [], page=1300) == [(0, 100)]


def test_without_a_good_cut_the_page_is_cut_full():
    # 100 está antes del 40 % de la página (tira fina) y 2000 no cabe: se corta a página entera
    assert render.page_breaks(2500, [100, 2000], page=1000, min_page=0.4) == [(0, 1000), (1000, 2000),
                                                                             (2000, 2500)]


def test_the_browser_comes_from_the_environment_or_the_path(monkeypatch):
    assert render.find_chromium({"CURSO_LORA_CHROMIUM": "/opt/chrome"}) == "/opt/chrome"
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    assert render.find_chromium({}) is None
    monkeypatch.setattr(render.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "google-chrome" else None)
    assert render.find_chromium({}) == "/usr/bin/google-chrome"


def test_without_chromium_it_writes_the_html_and_says_how_to_install_it(course, monkeypatch, capsys):
    monkeypatch.setattr(render, "COURSE_ROOT", course)
    monkeypatch.setattr(render, "sources", lambda names: [course / "solutions" / "a.ipynb"])
    monkeypatch.setattr(render, "find_chromium", lambda: None)
    monkeypatch.setattr(render, "local_mathjax", lambda: None)
    assert render.main(["--salida", str(course / "salidas")]) == 1
    assert (course / "salidas" / "a" / "a.html").is_file()
    err = capsys.readouterr().err
    assert "No encuentro Chromium" in err and "sudo apt-get install chromium" in err
    assert "las fórmulas salen como texto LaTeX" in err and "libjs-mathjax" in err


def test_an_unknown_name_stops_the_command(capsys):
    assert render.main(["no_existe"]) == 2
    assert "No encuentro no_existe" in capsys.readouterr().err


def png_size(path):
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.skipif(render.find_chromium() is None, reason="sin Chromium (apt-get install chromium)")
def test_chromium_takes_page_width_screenshots(course, capsys):
    long_text = "\n\n".join(f"Párrafo {i}: " + "texto " * 40 for i in range(40))
    (course / "largo.md").write_text(long_text)
    out = course / "salidas"
    assert render.main([str(course / "largo.md"), "--salida", str(out), "--ancho", "700", "--alto", "900"]) == 0
    pages = sorted((out / "largo").glob("largo-*.png"))
    assert len(pages) >= 3
    sizes = [png_size(p) for p in pages]
    assert all(width == 700 and height <= 900 for width, height in sizes)
    assert all(height > 0.4 * 900 for _, height in sizes[:-1])


def test_an_exercise_notebook_does_not_overwrite_its_solutions_pages(course):
    assert render.page_name(course / "solutions" / "a.ipynb", course) == "a"
    assert render.page_name(course / "leccion.md", course) == "leccion"
    assert render.page_name(course / "notebooks" / "a.ipynb", course) == "notebooks-a"


def test_code_blocks_get_a_background_and_are_never_cut(course):
    html = render.to_html(course / "leccion.md")
    assert render.CODE_CSS in html and "background" in render.CODE_CSS
    assert render.CODE_JS in html and "pre-wrap" in render.CODE_JS and "text-indent" in render.CODE_JS


@pytest.mark.skipif(render.find_chromium() is None, reason="sin Chromium (apt-get install chromium)")
def test_a_long_code_line_wraps_inside_its_block_with_a_deeper_indent(course):
    import asyncio

    loop = "for r in (8, 16):\n    config = LoraConfig(r=r, " + ", ".join(f"opcion_{i}={i}" for i in range(25)) \
        + ", use_rslora=True)\n"
    (course / "codigo.md").write_text(f"# Código\n\n```python\n{loop}```\n")
    html = course / "codigo.html"
    html.write_text(render.to_html(course / "codigo.md"))
    browser = render.Browser(render.find_chromium())

    async def measure():
        await browser.connect()
        try:
            await browser.pages(html, 700, 900)
            return json.loads(await browser.evaluate(
                "JSON.stringify([...document.querySelectorAll('pre .curso-line')].map(e => {"
                "const r = document.createRange(); r.selectNodeContents(e);"
                "return {lines: e.getClientRects().length, left: e.getBoundingClientRect().left,"
                "last: [...r.getClientRects()].pop().left, wide: e.closest('pre').scrollWidth"
                " <= e.closest('pre').clientWidth + 1}; }))"))
        finally:
            browser.socket.close()
            browser.socket = None

    try:
        spans = asyncio.run(measure())
    finally:
        browser.close()
    assert len(spans) == 2 and all(span["wide"] for span in spans)  # nada queda fuera del ancho
    assert spans[1]["last"] > spans[1]["left"] + 20  # la continuación va sangrada, no a la columna 0
