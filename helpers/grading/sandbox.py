"""Ejecuta un comando aislado con bubblewrap (`bwrap`): la caja de arena de cada entrega al corregir.

Dentro de la caja solo se ve, de solo lectura, lo necesario para ejecutar Python (el sistema, el entorno
virtual y su Python base, las carpetas de `read_only`) y la copia del curso (`course`), cada cosa en su
misma ruta; se escribe solo en la carpeta de la entrega (`workdir`) y en un /tmp privado. Sin red, sin
ver otros procesos, con un entorno limpio y límites de tiempo, memoria, procesos, salida y disco. Al
volver, todo proceso que lanzó ha terminado: al morir el init de su espacio de PIDs, el núcleo mata a
todos los de dentro, también a los que se separaron con un fork doble o setsid.

Donde `bwrap` no existe o no funciona (macOS, sin el paquete), el comando se ejecuta sin aislamiento,
con los mismos límites, y el resultado lo dice (`isolated=False`, `warning`).

Memoria, procesos y disco los vigila este proceso (psutil, cada `POLL_S` s): como root RLIMIT_NPROC no
se aplica y la memoria virtual de PyTorch hace inútil RLIMIT_AS. Entre dos vueltas se puede pasar algo.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..checks.safe_files import DIR_FLAGS, ENTRY_BYTES, remove_tree

POLL_S = 0.2
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_FILES = ("ld.so.cache", "localtime", "passwd", "group", "nsswitch.conf", "hosts", "fonts", "mime.types")
# Como root, sin esto la caja podría cambiar ajustes del núcleo de toda la máquina (vm.*, kernel.*).
PROC_READ_ONLY = ("--ro-bind", "/proc/sys", "/proc/sys",
                  "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger")
INSTALL_HINT = ("Instala bubblewrap: `sudo apt-get install bubblewrap` (Debian/Ubuntu) o "
                "`sudo dnf install bubblewrap` (Fedora).")
NOT_ISOLATED = ("SIN AISLAMIENTO: la entrega se ejecutó fuera de la caja de arena (bubblewrap); pudo leer "
                "y escribir tus archivos y usar la red.")
REASONS = {
    "timeout": "superó el tiempo límite ({timeout} s)",
    "memory": "superó el límite de memoria ({memory_bytes})",
    "processes": "lanzó demasiados procesos (más de {max_processes})",
    "output": "escribió demasiada salida (más de {output_bytes})",
    "disk": "escribió demasiados datos en disco (más de {disk_bytes} entre su carpeta y /tmp)",
    "files": ("creó demasiadas carpetas o archivos (más de {max_entries}, o carpetas a más de {max_depth} "
              "niveles)"),
    "supervisor": "falló la vigilancia de la caja ({failure}); se paró todo",
}


@dataclass(frozen=True)
class Limits:
    """Límites de una ejecución. Memoria: suma del RSS de sus procesos; disco: `workdir` más su /tmp."""

    timeout: float = 1800.0
    memory_bytes: int = 6 << 30
    max_processes: int = 32
    output_bytes: int = 10 << 20
    disk_bytes: int = 1 << 30
    max_entries: int = 50_000  # archivos y carpetas entre su carpeta y /tmp
    max_depth: int = 64


@dataclass(frozen=True)
class SandboxResult:
    """Cómo terminó: `status` es finished, timeout, memory, processes, output, disk, files o supervisor."""

    status: str
    returncode: int | None  # solo si terminó solo; como en la shell: 128 + señal si murió por una señal
    reason: str  # en español, para la columna `motivo`; vacío si terminó bien
    isolated: bool
    warning: str  # vacío si estuvo aislado
    seconds: float
    peak_memory: int
    peak_processes: int

    @property
    def ok(self) -> bool:
        return self.status == "finished" and self.returncode == 0


@functools.cache
def sandbox_available() -> tuple[bool, str]:
    """(True, "") si `bwrap` funciona aquí; si no, (False, por qué y cómo instalar bubblewrap)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, f"No encuentro `bwrap`. {INSTALL_HINT}"
    trial = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
             *_system_binds(), "--proc", "/proc", *PROC_READ_ONLY, "--dev", "/dev", "--remount-ro", "/dev",
             "true"]
    try:
        done = subprocess.run(trial, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"`bwrap` no funciona aquí ({error}). {INSTALL_HINT}"
    if done.returncode != 0:
        return False, f"`bwrap` no puede crear una caja aquí: {done.stderr.strip()}"
    return True, ""


def run_sandboxed(argv: list[str], *, course: Path, workdir: Path, log: Path, limits: Limits = Limits(),
                  env: dict[str, str] | None = None, read_only: tuple[Path, ...] = (),
                  cpus: int | None = None, isolate: bool = True) -> SandboxResult:
    """Ejecuta `argv` en `workdir` dentro de la caja; su stdout+stderr van a `log` (hasta el límite).

    `course` se ve de solo lectura y va en PYTHONPATH (así `import helpers` carga esa copia); `read_only`
    son otras carpetas visibles de solo lectura (la caché del modelo, `helpers.model.cache_dir()`, con
    CURSO_LORA_CACHE en `env`); `env` se añade al entorno mínimo; `cpus` fija los hilos de OpenMP, MKL…;
    `isolate=False` ejecuta sin caja, como donde `bwrap` falta.
    """
    course, workdir = Path(course).resolve(), Path(workdir).resolve()
    isolated = isolate and sandbox_available()[0]
    scratch = Path(tempfile.mkdtemp(prefix="curso-lora-caja-"))  # su /tmp (con HOME) y su /dev/shm, vigilados
    try:
        with open(log, "wb") as sink:
            (scratch / "tmp" / "home").mkdir(parents=True)
            (scratch / "shm").mkdir()
            if isolated:
                options = _bwrap_options(course, workdir, scratch, [Path(path).resolve() for path in read_only])
                environment = _environment(course, "/tmp", cpus, env or {})
                return _supervise(argv, options + _setenv(environment), {}, workdir, scratch, sink, limits)
            environment = _environment(course, str(scratch / "tmp"), cpus, env or {})
            return _supervise(argv, None, environment, workdir, scratch, sink, limits)
    finally:
        with contextlib.suppress(OSError):  # lo escribió la entrega: sin recursión ni seguir enlaces
            remove_tree(scratch)


def _environment(course: Path, tmp: str, cpus: int | None, extra: dict[str, str]) -> dict[str, str]:
    environment = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": f"{tmp}/home",  # las cachés de matplotlib, IPython, Hugging Face… fuera de `workdir`
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(course),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if cpus:
        environment.update(dict.fromkeys(THREAD_VARS, str(cpus)))
    return environment | extra


def _system_binds() -> list[str]:
    """El sistema de solo lectura, con sus enlaces simbólicos (/bin -> usr/bin) tal como son."""
    options = []
    for name in SYSTEM_DIRS:
        path = Path("/", name)
        if path.is_symlink():
            options += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            options += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        options += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return options


def _bwrap_options(course: Path, workdir: Path, scratch: Path, read_only: list[Path]) -> list[str]:
    """Opciones de `bwrap`. Todo lo escribible (`workdir`, /tmp, /dev/shm) está en disco y se vigila."""
    python = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}  # el venv y su Python base
    mounts = [("--bind", scratch / "tmp", Path("/tmp")), ("--bind", workdir, workdir)]
    mounts += [("--ro-bind", path, path) for path in [*python, *read_only, course]]
    options = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--hostname", "curso-lora", *_system_binds(), "--proc", "/proc", *PROC_READ_ONLY,
               "--dev", "/dev", "--bind", scratch / "shm", "/dev/shm", "--remount-ro", "/dev"]
    for mount in sorted(mounts, key=lambda mount: len(mount[2].parts)):  # de fuera hacia dentro
        options += mount
    options += ["--remount-ro", "/", "--chdir", workdir, "--clearenv"]
    return [str(option) for option in options]


def _setenv(environment: dict[str, str]) -> list[str]:
    return [item for name, value in environment.items() for item in ("--setenv", name, value)]


def _supervise(argv: list[str], options: list[str] | None, environment: dict[str, str], workdir: Path,
               scratch: Path, sink, limits: Limits) -> SandboxResult:
    """Lanza (dentro de `bwrap` si hay `options`), vigila los límites cada `POLL_S` s y al final mata todo.

    Todo camino de salida mata la ejecución entera, también si la vigilancia misma falla (status
    «supervisor»): el `finally` no depende de nada de lo que la entrega dejó. Las opciones de `bwrap` van
    por un archivo (`--args`), no en la línea de órdenes: así no asoman en /proc/1/cmdline dentro de la caja.
    """
    isolated = options is not None
    start = time.monotonic()
    with tempfile.TemporaryFile() as args:
        if isolated:
            args.write(b"".join(option.encode() + b"\0" for option in options))
            args.seek(0)
            argv = [shutil.which("bwrap"), "--args", str(args.fileno()), *argv]
        proc = subprocess.Popen(argv, cwd=workdir, env=environment, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(args.fileno(),) if isolated else ())
    flooded = threading.Event()
    reader = threading.Thread(target=_copy_capped, args=(proc.stdout, sink, limits.output_bytes, flooded),
                              daemon=True)
    reader.start()
    seen = {"memory": 0, "processes": 0, "tree": []}
    failure = ""
    try:
        root = psutil.Process(proc.pid)
        status = _watch(proc, root, isolated, workdir, scratch, limits, flooded, start, seen)
    except Exception as error:  # noqa: BLE001 - la vigilancia falló: se para todo igual
        status, failure = "supervisor", f"{type(error).__name__}: {str(error)[:120]}"
    finally:
        _kill_all(proc, seen["tree"], (workdir, scratch))
    reader.join(timeout=5)  # sin caja, un proceso escapado puede tener aún la salida abierta
    if not reader.is_alive():
        proc.stdout.close()
    if status == "finished":  # lo que pasó entre la última vuelta y el final
        try:
            status = "output" if flooded.is_set() else _over_disk(workdir, scratch, limits) or status
        except Exception as error:  # noqa: BLE001
            status, failure = "supervisor", f"{type(error).__name__}: {str(error)[:120]}"
    returncode = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return SandboxResult(
        status=status, returncode=returncode if status == "finished" else None,
        reason=_reason(status, returncode, limits, failure), isolated=isolated,
        warning="" if isolated else f"{NOT_ISOLATED} {sandbox_available()[1]}".strip(),
        seconds=time.monotonic() - start, peak_memory=seen["memory"], peak_processes=seen["processes"])


def _watch(proc, root, isolated: bool, workdir: Path, scratch: Path, limits: Limits, flooded, start: float,
           seen: dict) -> str:
    """Vigila hasta que termine o pase un límite; devuelve el status. ``seen`` lleva los picos y el árbol."""
    while proc.poll() is None:
        tree = _tree(root)
        seen["tree"] = tree
        memory = sum(_rss(process) for process in tree)
        processes = len(tree) - (2 if isolated else 0)  # sin el monitor ni el init de bwrap
        seen["memory"], seen["processes"] = max(seen["memory"], memory), max(seen["processes"], processes)
        status = ("timeout" if time.monotonic() - start > limits.timeout
                  else "memory" if memory > limits.memory_bytes
                  else "processes" if processes > limits.max_processes
                  else "output" if flooded.is_set()
                  else _over_disk(workdir, scratch, limits) or "finished")
        if status != "finished":
            return status
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(POLL_S)
    return "finished"


def _over_disk(workdir: Path, scratch: Path, limits: Limits) -> str | None:
    """«disk» o «files» si la carpeta y su /tmp pasan de sus límites; None si no."""
    used, entries, too_deep = _usage((workdir, scratch), limits.max_entries, limits.max_depth)
    if too_deep or entries > limits.max_entries:
        return "files"
    return "disk" if used > limits.disk_bytes else None


def _copy_capped(pipe, sink, cap: int, flooded: threading.Event) -> None:
    """Copia la salida hasta `cap` bytes; más allá la descarta y avisa."""
    written = 0
    with contextlib.suppress(ValueError, OSError):  # `sink` cerrado: la ejecución ya volvió
        while chunk := pipe.read1(1 << 16):
            if written < cap:
                sink.write(chunk[:cap - written])
                sink.flush()
            written += len(chunk)
            if written > cap:
                flooded.set()


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _usage(folders, max_entries: int, max_depth: int) -> tuple[int, int, bool]:
    """(bytes, entradas, ¿demasiado hondo?) de ``folders``, sin recursión ni seguir enlaces.

    Cada entrada cuesta ``ENTRY_BYTES`` (una carpeta vacía ocupa un bloque) más su tamaño aparente o sus
    bloques, lo mayor: un archivo disperso paga lo que dice medir. Se para al pasar de ``max_entries``
    entradas o de ``max_depth`` niveles (con una carpeta abierta por nivel, nunca más).
    """
    total = entries = 0
    for folder in folders:
        try:
            stack = [_opened(folder, None)]
        except OSError:
            continue
        try:
            while stack:
                entry = next(stack[-1][1], None)
                if entry is None:
                    _close(stack.pop())
                    continue
                entries += 1
                if entries > max_entries:
                    return total, entries, False
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    total += ENTRY_BYTES + max(info.st_size, info.st_blocks * 512)
                    if stat.S_ISDIR(info.st_mode):
                        if len(stack) >= max_depth:
                            return total, entries, True
                        stack.append(_opened(entry.name, stack[-1][0]))
        finally:
            for opened in stack:
                _close(opened)
    return total, entries, False


def _opened(name, dir_fd: int | None):
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        return fd, os.scandir(fd)
    except OSError:
        os.close(fd)
        raise


def _close(opened) -> None:
    fd, iterator = opened
    iterator.close()
    os.close(fd)


def _kill_all(proc: subprocess.Popen, tree: list[psutil.Process], folders) -> None:
    """SIGKILL a todo lo de la ejecución (también a lo parado con SIGSTOP) y espera a que muera.

    El árbol de procesos (el último visto y el de ahora), su grupo y, sin caja, cualquier proceso cuyo
    directorio actual esté en sus carpetas (un fork doble sale del árbol y del grupo). El init de `bwrap`,
    al morir, se lleva a todos los de su espacio de PIDs. Ningún paso depende de que otro funcione.
    """
    with contextlib.suppress(psutil.Error):
        tree = [*tree, *_tree(psutil.Process(proc.pid))]
    with contextlib.suppress(Exception):
        tree += _strays(folders)
    for process in tree:
        with contextlib.suppress(psutil.Error, OSError):
            process.send_signal(signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    with contextlib.suppress(Exception):
        psutil.wait_procs(tree, timeout=5)


def _strays(folders) -> list[psutil.Process]:
    """Procesos (de otro árbol) que trabajan dentro de ``folders``: los que escaparon de la ejecución."""
    roots = [str(Path(folder).resolve()) for folder in folders]
    found = []
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info.get("cwd") or ""
        if process.pid != os.getpid() and any(cwd == root or cwd.startswith(root + os.sep) for root in roots):
            found.append(process)
    return found


def _reason(status: str, returncode: int, limits: Limits, failure: str = "") -> str:
    if status != "finished":
        values = {name: _human(value) for name, value in vars(limits).items()}
        return REASONS[status].format(**values, failure=failure)
    if returncode == 0:
        return ""
    signal_name = _signal_name(returncode - 128) if returncode > 128 else ""
    return f"terminó con el código {returncode}" + (f" (señal {signal_name})" if signal_name else "")


def _human(value: float) -> str:
    """1800 s, 32 procesos, 10 MiB, 1,5 GiB: para los motivos."""
    if isinstance(value, float) or value < 1 << 20:
        return f"{value:g}"
    unit, size = ("GiB", 1 << 30) if value >= 1 << 30 else ("MiB", 1 << 20)
    return f"{value / size:.3g} {unit}".replace(".", ",")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""
