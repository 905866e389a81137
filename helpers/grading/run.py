"""Paso «ejecutar» de la corrección: la entrega ya preparada, dentro de la caja y sin dar puntos.

Dos lados en un módulo:

- **Fuera** (``run``): escribe la entrega preparada en su carpeta y lanza este mismo módulo dentro de la
  caja de arena (``helpers.grading.sandbox``), con los límites de ``RunLimits``.
- **Dentro** (``main``)::

      python -m helpers.grading.run CARPETA --timeout SEGUNDOS --max-salida BYTES

  Lee ``CARPETA/entrega.ipynb``, lo ejecuta con nbclient y un kernel de este mismo Python (una celda que
  falla no detiene nada) y deja ``CARPETA/ejecutado.ipynb`` (para que el profesor vea los ✅/❌) y
  ``CARPETA/estado.json`` (por qué se detuvo, si se detuvo), sin escribir nunca a través de un enlace ni en
  una tubería que la entrega haya dejado con esos nombres. Los objetos de cada ``checks.X(...)`` quedan en
  ``CARPETA/entregado/`` (``CURSO_LORA_HANDOVER``).

Nada de lo que escribe este paso da puntos: la carpeta es de la entrega; quien corrige saca de ella lo que
necesita como datos (``helpers.grading.collect``) y lo juzga después el juez (``helpers.grading.judge``),
en otro proceso.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..checks.core import STRICT_ENV
from ..checks.handover import HANDOVER_ENV
from ..paths import OUTPUT_ENV
from .judge import JUDGE_TIMEOUT, JudgeLimits
from .sandbox import NOT_ISOLATED, Limits, run_sandboxed

DEFAULT_TIMEOUT = 1800  # segundos por cuaderno (todas sus celdas juntas)
STARTUP_TIMEOUT = 120  # segundos para que arranque el kernel (con la máquina cargada tarda más)
SUBMISSION, EXECUTED, STATE, HANDED_OVER = "entrega.ipynb", "ejecutado.ipynb", "estado.json", "entregado"


class OutputFlood(Exception):
    """La entrega escribió más salida de la permitida."""


# --- fuera de la caja ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunLimits:
    """Los límites de cada entrega: tiempo, memoria, procesos, salida y datos entregados."""

    timeout: float = DEFAULT_TIMEOUT
    memory_bytes: int = 8 * 2**30
    max_processes: int = 64
    output_bytes: int = 20 * 2**20
    disk_bytes: int = 4 * 2**30
    judge_timeout: float = JUDGE_TIMEOUT

    def for_judge(self) -> JudgeLimits:
        """Los del juez: los mismos de memoria, procesos y disco, con su propio tiempo."""
        return JudgeLimits(timeout=self.judge_timeout, memory_bytes=self.memory_bytes,
                           max_processes=self.max_processes, disk_bytes=self.disk_bytes)


DEFAULT_LIMITS = RunLimits()


def run(nb, folder: Path, course: Path, limits: RunLimits = DEFAULT_LIMITS, cpus: int | None = None,
        isolate: bool = True, variant: str | None = None) -> tuple[str, str]:
    """Ejecuta ``nb`` en ``folder`` dentro de la caja: (motivo si se detuvo o "", aislamiento).

    Lo que deja en ``folder`` es de la entrega: no se lee aquí, lo saca ``helpers.grading.collect``.
    ``variant``: la ficha de variante de la entrega, que su kernel ve en ``CURSO_LORA_VARIANTE``.
    """
    from ..model import CACHE_ENV, cache_dir
    from ..shipped import VARIANT_ENV

    nbformat.write(nb, folder / SUBMISSION)
    argv = [sys.executable, "-m", "helpers.grading.run", str(folder), "--timeout", str(limits.timeout),
            "--max-salida", str(limits.output_bytes)]
    result = run_sandboxed(
        argv, course=course, workdir=folder, log=folder.parent / f"{folder.name}.log",
        limits=Limits(timeout=limits.timeout + 120, memory_bytes=limits.memory_bytes,
                      max_processes=limits.max_processes, output_bytes=limits.output_bytes,
                      disk_bytes=limits.disk_bytes),
        env={CACHE_ENV: str(cache_dir()), **({VARIANT_ENV: variant} if variant else {})}, read_only=(cache_dir(),),
        cpus=cpus, isolate=isolate)
    reason = "" if result.ok else (f"la ejecución se detuvo: {result.reason or 'terminó con un error'}; cuentan "
                                   "las comprobaciones hechas hasta entonces")
    return reason, "bwrap" if result.isolated else result.warning or NOT_ISOLATED


# --- dentro de la caja -----------------------------------------------------------------------------

def _kernel_manager_class():
    """Un gestor de kernels que arranca SIEMPRE el Python de este entorno (``sys.executable``)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class CourseKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    name="python3", display_name="Python 3 (curso-lora)", language="python")
            return self._kernel_spec

    return CourseKernelManager


def kernel_env(folder: Path) -> dict[str, str]:
    """El entorno del kernel: sin modo estricto, salidas y objetos entregados dentro de ``folder``."""
    env = dict(os.environ)
    env.pop(STRICT_ENV, None)
    env[OUTPUT_ENV] = str(folder / "salidas")
    env[HANDOVER_ENV] = str(folder / HANDED_OVER)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # calla un aviso del depurador al arrancar
    return env


def execute(nb, folder: Path, timeout: float, max_output: int) -> str | None:
    """Ejecuta ``nb`` (recibe las salidas) en ``folder``; ``None`` si llegó al final, si no el motivo."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    state: dict[str, Any] = {"deadline": None, "cell": None, "bytes": 0}

    def timeout_func(cell) -> int:
        now = time.monotonic()
        if state["deadline"] is None:
            state["deadline"] = now + timeout
        return max(1, math.ceil(state["deadline"] - now))

    def on_cell_start(cell=None, cell_index=None, **_):
        state["cell"] = cell_index

    class CappedClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            state["bytes"] += len(json.dumps(msg.get("content", {})))
            if state["bytes"] > max_output:
                raise OutputFlood()
            return super().output(outs, msg, display_id, cell_index)

    (folder / "salidas").mkdir(parents=True, exist_ok=True)
    client = CappedClient(
        nb, kernel_name="python3", kernel_manager_class=_kernel_manager_class(),
        allow_errors=True, timeout_func=timeout_func, startup_timeout=STARTUP_TIMEOUT,
        interrupt_on_timeout=False, shutdown_kernel="immediate", record_timing=False,
        on_cell_start=on_cell_start, resources={"metadata": {"path": str(folder)}})

    def where() -> str:
        return "antes de la primera celda" if state["cell"] is None else f"en la celda {state['cell'] + 1}"

    try:
        client.execute(env=kernel_env(folder), cwd=str(folder))
    except OutputFlood:
        return (f"la entrega escribió más de {max_output / 2**20:.0f} MiB de salida {where()}; "
                "se detuvo ahí")
    except CellTimeoutError:
        return f"se agotó el tiempo ({timeout:g} s por cuaderno) {where()}"
    except DeadKernelError:
        return f"el kernel se detuvo {where()} (¿memoria agotada, exit() o un fallo de una librería?)"
    except Exception as error:  # noqa: BLE001 - se informa y la corrección sigue
        if state["cell"] is None:
            return f"no pude arrancar el kernel de Python ({type(error).__name__})"
        return f"la ejecución se interrumpió {where()} ({type(error).__name__})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.grading.run")
    parser.add_argument("carpeta")
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--max-salida", type=int, required=True)
    args = parser.parse_args(argv)
    folder = Path(args.carpeta)
    nb = nbformat.read(folder / SUBMISSION, as_version=4)
    stop = execute(nb, folder, args.timeout, args.max_salida)
    for name, text in ((EXECUTED, nbformat.writes(nb)), (STATE, json.dumps({"motivo": stop}))):
        try:
            write_own(folder, name, text.encode("utf-8"))
        except OSError as error:  # lo que dejó la entrega en ese nombre se queda; la recogida lo rechaza
            print(f"no escribo {name}: {error}", file=sys.stderr)
    return 0


def write_own(folder: Path, name: str, data: bytes) -> None:
    """Escribe ``folder/name`` solo si es (o será) un archivo normal: sin seguir un enlace ni esperar a una tubería.

    La entrega pudo dejar en ese nombre un enlace o una tubería (FIFO): ``O_NOFOLLOW`` y ``O_NONBLOCK`` hacen
    que abrirlo falle (o no espere), y ``fstat`` descarta lo que no sea un archivo normal.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(folder / name, flags, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{name} no es un archivo normal")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
