"""Lo que ejecutan los alumnos funciona en Linux, macOS y Windows: nada solo-POSIX en helpers/.

Quedan fuera solo los módulos de los profesores que corrigen en Linux (su sandbox lo necesita).
"""

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
INSTRUCTOR_ONLY = "grading"  # el paquete de la corrección: corre en Linux
POSIX_MODULES = {"resource", "fcntl", "termios", "pwd", "grp", "posix", "pty", "tty", "crypt", "spwd",
                 "nis", "syslog", "readline"}
POSIX_CALLS = {("os", name) for name in ("uname", "sysconf", "fork", "forkpty", "getuid", "geteuid",
                                         "getgid", "getpgid", "setsid", "setpgrp", "killpg", "wait3",
                                         "wait4", "statvfs")}
POSIX_CALLS |= {("signal", name) for name in ("SIGKILL", "SIGALRM", "SIGHUP", "SIGCHLD", "alarm",
                                             "setitimer")}
POSIX_PATHS = ("/proc", "/sys/", "/dev/shm", "/tmp/")


def posix_only(source: str) -> list[str]:
    """Qué hay de solo-POSIX en un módulo, por orden de línea: ``'línea N: qué'``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] in POSIX_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] in POSIX_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
            found += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names
                      if (node.module, a.name) in POSIX_CALLS]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in POSIX_CALLS:
                found.append((node.lineno, f"{node.value.id}.{node.attr}"))
        elif isinstance(node, ast.Constant) and str(node.value).startswith(POSIX_PATHS):
            found.append((node.lineno, f"ruta {node.value!r}"))
    return [f"línea {line}: {what}" for line, what in sorted(found)]


def learner_modules() -> list[Path]:
    """Los módulos de helpers/ que usan los alumnos: todos menos los de corrección."""
    return sorted(path for path in HELPERS.rglob("*.py") if INSTRUCTOR_ONLY not in path.relative_to(HELPERS).parts)


def test_learner_modules_are_portable():
    modules = learner_modules()
    assert HELPERS / "training.py" in modules and HELPERS / "checks" / "core.py" in modules
    assert HELPERS / "grading" / "sandbox.py" not in modules and HELPERS / "authoring" / "render.py" in modules
    problems = {str(p.relative_to(HELPERS)): posix_only(p.read_text("utf-8")) for p in modules}
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_scan_finds_what_windows_lacks():
    source = '''
import os, resource
from fcntl import flock
from os import uname
import signal

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

pid = os.fork()
signal.alarm(3)
'''
    assert posix_only(source) == [
        "línea 2: import resource", "línea 3: from fcntl import ...", "línea 4: from os import uname",
        "línea 8: ruta '/proc/self/statm'", "línea 9: os.sysconf", "línea 11: os.fork",
        "línea 12: signal.alarm",
    ]


def test_portable_code_passes_the_scan():
    source = "import os, pathlib, psutil\nos.environ.get('X')\npathlib.Path.home() / 'x'\nos.cpu_count()\n"
    assert posix_only(source) == []
