"""`peak_memory()` sin CUDA: la RSS del proceso con psutil, en cualquier sistema."""

import builtins
import mmap
import os
import sys
import threading
import time
from types import SimpleNamespace

import psutil
import pytest
import torch

from helpers import training
from helpers.training import peak_memory

MiB = 2**20


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # también en una máquina con GPU


def test_works_without_proc_and_posix_modules(monkeypatch):
    """Como en Windows: sin /proc, sin `resource`, sin os.uname ni os.sysconf; solo psutil."""
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    for name in ("uname", "sysconf"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` falla

    rss = {"now": 100 * MiB}
    calls = []

    class FakeProcess:  # psutil de otro sistema: la RSS que le decimos
        def memory_info(self):
            calls.append(threading.current_thread().name)
            return SimpleNamespace(rss=rss["now"])

    monkeypatch.setattr(training.psutil, "Process", FakeProcess)
    with peak_memory(every=0.001) as mem:
        rss["now"] = 300 * MiB  # el bloque sube la memoria un momento...
        time.sleep(0.05)
        rss["now"] = 120 * MiB  # ...y la libera antes de acabar
    assert mem["peak_bytes"] == 300 * MiB
    assert len(calls) > 3  # la leyó el hilo mientras el bloque corría, no solo al principio y al final


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compara con /proc, que solo hay en Linux")
def test_matches_psutil_and_the_kernel_peak_on_linux():
    process = psutil.Process()
    kernel_peak = _reset_kernel_peak()
    with peak_memory() as mem:
        # 256 MiB escritos, pedidos al sistema y devueltos: con malloc (o torch.ones) una suite larga puede
        # reutilizar memoria que ya era del proceso, y la RSS no sube ni baja
        block = mmap.mmap(-1, 256 * MiB)
        torch.frombuffer(block, dtype=torch.uint8).fill_(1)
        inside = process.memory_info().rss
        time.sleep(0.1)  # varias lecturas del hilo con el bloque en memoria
        block.close()
    after = process.memory_info().rss
    assert inside - after > 200 * MiB  # la memoria se liberó: el pico no es la RSS del final
    assert inside <= mem["peak_bytes"]
    if kernel_peak:  # el pico que anota el kernel (VmHWM) acota lo que vio el muestreo; sus contadores
        assert mem["peak_bytes"] <= _kernel_peak() + MiB  # por hilo van unas páginas tarde: 1 MiB de margen
    else:  # sin él, una cota más floja: otros hilos del proceso (en una suite larga) también reservan
        assert mem["peak_bytes"] <= inside + 32 * MiB


def _reset_kernel_peak() -> bool:
    """Pone el pico del kernel (VmHWM) en la RSS de ahora; False si no se puede."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _kernel_peak() -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
