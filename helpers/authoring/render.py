"""Dibuja los cuadernos como los verá quien los lea: HTML (nbconvert) y páginas PNG (Chromium sin ventana).

    python -m helpers.authoring.render                       # los cuadernos resueltos (make render)
    python -m helpers.authoring.render lora_finetuning       # solo ese (o varios)
    python -m helpers.authoring.render README.md notebooks/lora_advanced.ipynb --ancho 830

Cada documento deja en ``salidas/render/<nombre>/`` su ``<nombre>.html`` y, si hay Chromium, sus páginas
``<nombre>-01.png``, ``-02.png``..., del ancho de la página y cortadas entre bloques (celdas, párrafos, filas,
líneas de texto), para revisarlas una a una. Todo sin red:

- Las imágenes de los textos (``![...](images/...)``) van dentro del HTML.
- Las fórmulas las dibuja MathJax. nbconvert lo carga de internet; si el sistema tiene el de la distribución
  (Debian/Ubuntu: ``apt-get install libjs-mathjax``) se usa ese y las fórmulas salen dibujadas. Si no, en
  las capturas se ven como texto LaTeX (``$...$``) y el aviso lo dice.
- Chromium es el de la distribución (``apt-get install chromium``) u otro Chrome: ``CURSO_LORA_CHROMIUM``
  puede decir cuál. Sin él solo se escribe el HTML y el aviso dice cómo instalarlo.
- Los emoji (🐢 🐕 🦁) necesitan una fuente de emoji (``fonts-noto-color-emoji``); sin ella salen como
  cuadrados y el aviso lo dice.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..paths import COURSE_ROOT, output_dir, shown

WIDTH = 1000  # px CSS: una ventana de portátil con JupyterLab; el contenido queda en ~900 px
PAGE_HEIGHT = 1300  # px: una pantalla y media; las páginas se cortan antes si hay un corte mejor
MIN_PAGE = 0.4  # una página no se corta antes del 40 % de su alto (no salen tiras finas)
LOAD_TIMEOUT = 60.0  # s para cargar la página y que MathJax termine

MATHJAX_FILES = (Path("/usr/share/javascript/mathjax/MathJax.js"), Path("/usr/share/mathjax/MathJax.js"))
# SVG: las fórmulas son trazos, no necesitan las fuentes web de MathJax (que Chromium no carga desde file://)
MATHJAX_CONFIG = "?config=TeX-AMS_SVG-full,Safe"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_ENV = "CURSO_LORA_CHROMIUM"
# Sin red ni perfil: las opciones que necesita un Chromium sin ventana en una máquina sin salida a internet.
CHROMIUM_FLAGS = ("--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0")

INSTALL_CHROMIUM = (
    "No encuentro Chromium (ni Chrome), así que solo escribo el HTML. Para las capturas, instálalo: "
    "`sudo apt-get install chromium` en Debian, `sudo apt install chromium-browser` en Ubuntu, "
    "`sudo dnf install chromium` en Fedora o `brew install --cask chromium` en macOS; o di dónde está "
    f"con {CHROMIUM_ENV}=/ruta/al/navegador."
)
NO_MATHJAX = (
    "Sin MathJax en el sistema: en las capturas las fórmulas salen como texto LaTeX ($...$). "
    "Instálalo con `sudo apt-get install libjs-mathjax` (Debian/Ubuntu); el HTML, abierto con internet, "
    "las dibuja igual."
)
NO_EMOJI = ("Sin una fuente de emoji, los 🐢 🐕 🦁 salen como cuadrados en las capturas: instala "
            "`fonts-noto-color-emoji` (no es un defecto del cuaderno).")


class RenderError(Exception):
    """Algo impidió dibujar un documento; el mensaje dice qué en español."""


# ---------------- documentos y HTML ----------------


def sources(names: list[str], root: Path = COURSE_ROOT) -> list[Path]:
    """Los documentos a dibujar: los cuadernos resueltos, o los nombrados (un cuaderno resuelto por su
    nombre, o la ruta de un ``.ipynb`` o un ``.md``)."""
    solutions = sorted((root / "solutions").glob("*.ipynb"))
    if not names and not solutions:  # p. ej. en la copia para el alumnado (make release)
        raise RenderError("No hay cuadernos resueltos en solutions/: di qué dibujar, p. ej. "
                          "`python curso.py render notebooks/lora_finetuning.ipynb` o `... render README.md`.")
    if not names:
        return solutions
    by_name = {nb.stem: nb for nb in solutions}
    found, unknown = [], []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else root / name
        if name in by_name:
            found.append(by_name[name])
        elif path.suffix in (".ipynb", ".md") and path.is_file():
            found.append(path)
        else:
            unknown.append(name)
    if unknown:
        raise RenderError(f"No encuentro {', '.join(unknown)}. Di el nombre de un cuaderno resuelto "
                          f"({', '.join(by_name) or 'no hay ninguno'}) o la ruta de un .ipynb o un .md.")
    return found


def local_mathjax(candidates=MATHJAX_FILES) -> str | None:
    """La dirección del MathJax de la distribución, si está instalado."""
    for path in candidates:
        if Path(path).is_file():
            return Path(path).as_uri() + MATHJAX_CONFIG
    return None


def read_document(path: Path):
    """El cuaderno; un ``.md`` se lee como un cuaderno de una sola celda de texto."""
    import nbformat

    if path.suffix == ".md":
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(path.read_text("utf-8"))])
    return nbformat.read(path, as_version=4)


def page_name(path: Path, root: Path = COURSE_ROOT) -> str:
    """La carpeta (y el nombre) de las páginas de ``path``: un cuaderno resuelto, su nombre
    (``lora_finetuning``); cualquier otro documento, su ruta (``notebooks-lora_finetuning``), para que el
    cuaderno de ejercicios no pise las páginas de su solución."""
    path = Path(path).resolve()
    try:
        relative = path.relative_to(Path(root).resolve())
    except ValueError:
        return path.stem
    if relative.parent in (Path("."), Path("solutions")):
        return path.stem
    return "-".join(relative.with_suffix("").parts)


# El código se lee entero: en las páginas no se corta al ancho ni se pierde la sangría. Cada bloque de
# código lleva fondo y aire; uno que no cabe se reduce un poco y, si aún no cabe, parte sus líneas con la
# continuación más sangrada que la línea (``use_rslora=True)`` no sale fuera de su ``for``).
CODE_CSS = """<style>
.jp-RenderedHTMLCommon pre, .jp-RenderedMarkdown pre {
  background: #f5f5f5; border: 1px solid #e0e0e0; border-radius: 4px; padding: 8px 12px; margin: 0.8em 0;
}
.jp-RenderedHTMLCommon pre code { background: none; padding: 0; }
pre .curso-line { display: block; }
</style>"""
CODE_JS = r"""<script>
(() => {
  const fits = pre => pre.scrollWidth <= pre.clientWidth + 1;
  for (const pre of document.querySelectorAll('pre')) {
    pre.style.whiteSpace = 'pre';  // las plantillas parten a la columna 0 (pre-wrap) o cortan (auto)
    if (fits(pre)) continue;
    const size = parseFloat(getComputedStyle(pre).fontSize);
    pre.style.fontSize = Math.max(0.8, pre.clientWidth / pre.scrollWidth) * size + 'px';
    if (fits(pre)) continue;
    const host = pre.querySelector(':scope > code') || pre;
    const lines = host.innerHTML.replace(/\n$/, '').split('\n');
    const balanced = line => (line.match(/<span\b/g) || []).length === (line.match(/<\/span>/g) || []).length;
    if (lines.every(balanced)) {
      host.innerHTML = lines.map(line => {
        const text = line.replace(/<[^>]*>/g, '');
        const hang = text.length - text.trimStart().length + 4;
        return `<span class="curso-line" style="padding-left:${hang}ch;text-indent:-${hang}ch">${line || ' '}</span>`;
      }).join('');
    }
    pre.style.whiteSpace = 'pre-wrap';
    pre.style.overflowWrap = 'anywhere';
  }
})();
</script>"""


def to_html(path: Path, mathjax_url: str | None = None) -> str:
    """El documento en HTML con la plantilla de JupyterLab, sus imágenes dentro y el código sin cortar."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True)
    if mathjax_url:
        exporter.mathjax_url = mathjax_url
    html, _ = exporter.from_notebook_node(read_document(path),
                                          resources={"metadata": {"path": str(path.parent), "name": path.stem}})
    return html.replace("</head>", CODE_CSS + "\n</head>", 1).replace("</body>", CODE_JS + "\n</body>", 1)


# ---------------- páginas ----------------


def page_breaks(height: float, candidates: list[float], page: float = PAGE_HEIGHT,
                min_page: float = MIN_PAGE) -> list[tuple[int, int]]:
    """Corta ``[0, height)`` en páginas de alto ≤ ``page``, cada una en el último corte bueno que quepa.

    ``candidates`` son alturas donde empieza un bloque (celda, párrafo, fila de tabla, línea de texto):
    cortar ahí no parte una línea. Si no hay ninguno después de ``min_page`` de la página, se corta a
    página entera.
    """
    height = round(height)
    cuts = sorted({round(c) for c in candidates if 0 < c < height})
    pages, top = [], 0
    while top < height:
        if height - top <= page:
            pages.append((top, height))
            break
        fitting = [c for c in cuts if top + min_page * page <= c <= top + page]
        bottom = fitting[-1] if fitting else top + page
        pages.append((top, bottom))
        top = bottom
    return pages


# Alturas donde se puede cortar sin partir una línea: el principio de cada bloque y de cada línea de texto
# preformateado (salidas de texto, código).
CUTS_JS = """(() => {
  const cuts = [];
  const blocks = 'h1,h2,h3,h4,h5,h6,p,li,tr,pre,img,svg,table,blockquote,hr,.jp-Cell,.jp-OutputArea-child';
  for (const el of document.querySelectorAll(blocks)) {
    const r = el.getBoundingClientRect();
    if (r.height > 0) cuts.push(r.top + window.scrollY, r.bottom + window.scrollY);
  }
  for (const pre of document.querySelectorAll('pre')) {
    const r = pre.getBoundingClientRect();
    const line = parseFloat(getComputedStyle(pre).lineHeight) || 17;
    const top = r.top + window.scrollY + (parseFloat(getComputedStyle(pre).paddingTop) || 0);
    for (let y = top; y < r.bottom + window.scrollY; y += line) cuts.push(y);
  }
  const height = Math.ceil(document.documentElement.scrollHeight);
  return JSON.stringify({height, cuts});
})()"""

# Espera a que MathJax (si lo hay) termine de dibujar y a que estén las fuentes.
READY_JS = """new Promise(done => {
  const fonts = () => document.fonts.ready.then(() => done(window.MathJax ? 'mathjax' : 'sin mathjax'));
  if (window.MathJax && window.MathJax.Hub) window.MathJax.Hub.Queue(fonts); else fonts();
})"""


def find_chromium(environ=None) -> str | None:
    """El navegador: el de ``CURSO_LORA_CHROMIUM`` o el primero de ``BROWSERS`` que haya."""
    environ = os.environ if environ is None else environ
    if environ.get(CHROMIUM_ENV):
        return environ[CHROMIUM_ENV]
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def has_emoji_font() -> bool | None:
    """True/False si ``fc-list`` dice si hay una fuente de emoji; None si no se puede saber."""
    if not shutil.which("fc-list"):
        return None
    listed = subprocess.run(["fc-list", ":charset=1f422"], capture_output=True, text=True, check=False).stdout
    return bool(listed.strip())


class Browser:
    """Chromium sin ventana, manejado por su protocolo de depuración (DevTools) con el cliente de tornado."""

    def __init__(self, executable: str):
        self.executable = executable
        self.profile = tempfile.mkdtemp(prefix="curso-lora-chromium-")
        try:
            port = self._start()
        except RenderError:  # como root (p. ej. en un contenedor) Chromium solo arranca sin su sandbox
            port = self._start("--no-sandbox")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            self.page_url = next(t for t in json.load(answer) if t["type"] == "page")["webSocketDebuggerUrl"]
        self.socket = None
        self.next_id = 0

    def _start(self, *extra: str) -> int:
        """Arranca Chromium y devuelve su puerto de depuración."""
        self.process = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, *extra, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return self._port()
        except RenderError:
            self._stop()
            raise

    def _port(self) -> int:
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RenderError(f"{self.executable} se cerró al arrancar (código {self.process.returncode}).")
            if active.is_file() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise RenderError(f"{self.executable} no abrió su puerto de depuración en 30 s.")

    async def connect(self):
        from tornado.websocket import websocket_connect

        self.socket = await websocket_connect(self.page_url, max_message_size=1 << 30)

    async def call(self, method: str, timeout: float = LOAD_TIMEOUT, **params):
        """Una orden del protocolo; devuelve su resultado (los eventos que llegan entre medias se guardan)."""
        self.next_id += 1
        await self.socket.write_message(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return await self.wait(lambda message: message.get("id") == self.next_id, timeout, method)

    async def wait(self, match, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RenderError(f"Chromium no respondió a {what} en {timeout:.0f} s.")
            raw = await asyncio.wait_for(self.socket.read_message(), left)
            if raw is None:
                raise RenderError("Chromium cerró la conexión.")
            message = json.loads(raw)
            if match(message):
                if "error" in message:
                    raise RenderError(f"Chromium: {what}: {message['error'].get('message')}")
                return message.get("result", message.get("params"))

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        if "exceptionDetails" in result:
            raise RenderError(f"Error de JavaScript en la página: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def pages(self, html: Path, width: int, page: int) -> list[bytes]:
        """Las páginas PNG de ``html`` a ``width`` px de ancho."""
        await self.call("Page.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=page, deviceScaleFactor=1,
                        mobile=False)
        await self.call("Page.navigate", url=html.resolve().as_uri())
        await self.wait(lambda m: m.get("method") == "Page.loadEventFired", LOAD_TIMEOUT, "cargar la página")
        await self.evaluate(READY_JS)
        layout = json.loads(await self.evaluate(CUTS_JS))
        shots = []
        for top, bottom in page_breaks(layout["height"], layout["cuts"], page):
            clip = {"x": 0, "y": top, "width": width, "height": bottom - top, "scale": 1}
            shot = await self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
            shots.append(base64.b64decode(shot["data"]))
        return shots

    def close(self):
        if self.socket is not None:
            self.socket.close()
        self._stop()
        for _ in range(50):  # un hijo rezagado (crashpad, zygoto) aún puede escribir en el perfil un instante
            try:
                shutil.rmtree(self.profile)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            shutil.rmtree(self.profile, ignore_errors=True)

    def _stop(self):
        """Cierra Chromium con todos sus hijos (con psutil: igual en Linux, macOS y Windows)."""
        import psutil

        family = []
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(self.process.pid)
            family = [parent, *parent.children(recursive=True)]
        for process in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(family, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
        self.process.wait()


def screenshots(browser: Browser, html: Path, width: int = WIDTH, page: int = PAGE_HEIGHT) -> list[Path]:
    """Escribe ``<nombre>-01.png``... junto a ``html`` (borrando las de antes) y devuelve sus rutas."""
    for old in html.parent.glob(f"{html.stem}-*.png"):
        old.unlink()

    async def take():  # una conexión por documento: cada asyncio.run tiene su propio bucle
        await browser.connect()
        try:
            return await browser.pages(html, width, page)
        finally:
            browser.socket.close()
            browser.socket = None

    written = []
    for number, png in enumerate(asyncio.run(take()), start=1):
        target = html.parent / f"{html.stem}-{number:02d}.png"
        target.write_bytes(png)
        written.append(target)
    return written


# ---------------- orden ----------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.authoring.render", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NOMBRE",
                        help="cuaderno resuelto (p. ej. lora_finetuning) o ruta de un .ipynb o .md; "
                             "por defecto, todos los resueltos")
    parser.add_argument("--ancho", type=int, default=WIDTH, help=f"ancho de la página en px ({WIDTH})")
    parser.add_argument("--alto", type=int, default=PAGE_HEIGHT, help=f"alto máximo de página ({PAGE_HEIGHT})")
    parser.add_argument("--salida", type=Path, default=None, help="carpeta (por defecto salidas/render/)")
    args = parser.parse_args(argv)
    try:
        documents = sources(args.names)
    except RenderError as error:
        print(error, file=sys.stderr)
        return 2
    out = args.salida or output_dir("render")
    mathjax = local_mathjax()
    chromium = find_chromium()
    notes = [] if mathjax else [NO_MATHJAX]
    if chromium and has_emoji_font() is False:
        notes.append(NO_EMOJI)
    browser = Browser(chromium) if chromium else None
    try:
        for document in documents:
            name = page_name(document)
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            html = folder / f"{name}.html"
            html.write_text(to_html(document, mathjax), "utf-8")
            if browser is None:
                print(f"{shown(document)}: {shown(html)}")
                continue
            pages = screenshots(browser, html, args.ancho, args.alto)
            print(f"{shown(document)}: {shown(html)} y {len(pages)} páginas ({shown(folder)}/"
                  f"{name}-01.png...)")
    except RenderError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    finally:
        if browser is not None:
            browser.close()
    for note in notes:
        print(f"Aviso: {note}", file=sys.stderr)
    if browser is None:
        print(f"Aviso: {INSTALL_CHROMIUM}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
