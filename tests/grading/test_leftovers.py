"""Issue 25, clase 1: nada de lo que deja una entrega sobrevive a su fila ni crece más allá de ella.

- Borrar lo que dejó (``safe_files.remove_tree``) no recurre ni sigue enlaces: 3.000 carpetas de hondo, una
  carpeta sin permisos, un enlace a algo de fuera (que queda intacto).
- Lo que quien corrige analiza de una entrega tiene tope: el manifiesto se lee con un tope a su medida
  honrada antes de analizarlo; la copia ejecutada se guarda como bytes, sin convertirla en cuaderno.
- Si la ejecución no terminó bien, ni su estado.json ni su copia ejecutada se creen: los escribió ella.
- Las carpetas cuentan en el presupuesto de la recogida, y un archivo disperso cuesta su tamaño aparente.
- De punta a punta (``grade_file``): una entrega que deja 1.200 carpetas de hondo, procesos parados y un
  estado falsificado, y mata a su padre, cuesta solo su fila: sin procesos vivos ni carpetas de corrección.
"""

import json
import os
import tempfile
import tracemalloc
import uuid

import psutil
import pytest

from helpers.checks import handover, safe_files
from helpers.checks.safe_files import Budget, Refused, copy_tree, open_folder
from helpers.grading.collect import collect
from helpers.paths import COURSE_ROOT


def deep(folder, depth, name="d"):
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    return fd


def test_removing_what_a_submission_left_needs_no_recursion_and_follows_no_link(tmp_path):
    outside = tmp_path / "fuera"
    outside.mkdir()
    (outside / "nota.txt").write_text("intacta")
    left = tmp_path / "entrega"
    left.mkdir()
    fd = deep(left, 3000)
    os.symlink(str(outside), "enlace", dir_fd=fd)
    os.mkfifo("tuberia", dir_fd=fd)
    os.close(fd)
    (left / "cerrada" / "dentro").mkdir(parents=True)
    (left / "cerrada" / "dentro" / "x").write_text("x")
    os.chmod(left / "cerrada" / "dentro", 0)
    os.chmod(left / "cerrada", 0)
    (left / "enlace_arriba").symlink_to(outside)
    safe_files.remove_tree(left)
    assert not left.exists() and (outside / "nota.txt").read_text() == "intacta"
    safe_files.remove_tree(left)  # lo que ya no existe no es un error


def test_empty_folders_and_sparse_files_pay_in_the_collect_budget(tmp_path):
    for n in range(300):
        (tmp_path / "vacias" / str(n)).mkdir(parents=True)
    with open(tmp_path / "disperso.bin", "wb") as sparse:
        sparse.truncate(50 << 20)
    (tmp_path / "dispersa").mkdir()
    os.replace(tmp_path / "disperso.bin", tmp_path / "dispersa" / "disperso.bin")
    for name, says in (("vacias", "pasa de 1 MiB"), ("dispersa", "pasa de 1 MiB")):
        fd = open_folder(str(tmp_path / name))
        try:
            with pytest.raises(Refused, match=says):
                copy_tree(fd, tmp_path / f"copia_{name}", Budget(file_bytes=64 << 20, total_bytes=1 << 20), name)
        finally:
            os.close(fd)


def handed_over(run, manifest: bytes):
    handover.write("ejercicio", {"a": [1]}, {"a": handover.Value()}, run / "entregado")
    (run / "entregado" / "ejercicio" / "manifiesto.json").write_bytes(manifest)


def test_a_huge_manifest_is_refused_before_it_is_parsed(tmp_path):
    run = tmp_path / "entrega"
    nested = b"[" + b"[]," * ((8 << 20) // 3) + b"[]]"  # 8 MiB de listas vacías: cientos de MiB ya analizadas
    handed_over(run, nested)
    tracemalloc.start()
    result = collect(run, tmp_path / "recogido", ["ejercicio"], total_bytes=1 << 30)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.reasons and "manifiesto.json pesa" in result.reasons[0], result.reasons
    assert peak < 3 * len(nested), peak  # la copia pasa por bloques; nada se analiza


def test_the_executed_copy_is_kept_as_its_bytes(tmp_path):
    run = tmp_path / "entrega"
    run.mkdir()
    raw = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "x": "y" * 1000}).encode()
    (run / "ejecutado.ipynb").write_bytes(raw)
    (run / "estado.json").write_text(json.dumps({"motivo": "se agotó el tiempo"}))
    result = collect(run, tmp_path / "recogido", [], total_bytes=1 << 20)
    assert result.executed == raw and result.stop == "se agotó el tiempo"


def test_a_run_that_did_not_exit_cleanly_is_not_believed(tmp_path):
    run = tmp_path / "entrega"
    run.mkdir()
    (run / "ejecutado.ipynb").write_text('{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}')
    (run / "estado.json").write_text(json.dumps({"motivo": "terminó bien, ponme un 10"}))
    result = collect(run, tmp_path / "recogido", [], total_bytes=1 << 20, trusted=False)
    assert result.executed is None and result.stop is None


FORGER = """import os, signal, subprocess, sys, json
fd = os.open(".", os.O_RDONLY)
for _ in range(1200):
    os.mkdir("d", dir_fd=fd)
    fd = os.open("d", os.O_RDONLY, dir_fd=fd)
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{marker}"]) for _ in range(4)]
os.kill(children[0].pid, signal.SIGSTOP)
open("estado.json", "w").write(json.dumps({{"motivo": "FALSIFICADO"}}))
open("ejecutado.ipynb", "w").write("FALSIFICADO")
os.kill(os.getppid(), signal.SIGKILL)"""


@pytest.mark.slow
def test_a_submission_that_leaves_a_deep_tree_and_stopped_processes_costs_only_its_row(tmp_path, monkeypatch):
    from nbformat.v4 import new_code_cell, new_notebook

    from helpers.grading.chain import grade_file
    from helpers.grading.release import build_release
    from helpers.grading.run import RunLimits

    course = build_release(tmp_path / "curso", COURSE_ROOT)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # las carpetas de corrección, donde se ven
    marker = f"parado_{uuid.uuid4().hex}"
    nb = new_notebook(cells=[new_code_cell(FORGER.format(marker=marker))],
                      metadata={"curso_lora": {"notebook": "load_lora_adapter_example"}})
    path = tmp_path / "entregas" / "falsa.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps(nb))
    try:
        grade = grade_file(path, course=course, limits=RunLimits(timeout=120, judge_timeout=300))
        left = list(scratch.iterdir())
    finally:  # pytest borra sus carpetas con recursión: no le dejamos 1.200 niveles
        for folder in scratch.iterdir():
            safe_files.remove_tree(folder)
    assert grade.total == 0 and grade.executed is None, grade
    reasons = " ".join(grade.motivos)
    assert "FALSIFICADO" not in reasons and "se detuvo" in reasons and "error interno" not in reasons, reasons
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_a_submission_made_of_tiny_json_containers_is_refused_before_it_is_parsed(tmp_path):
    """23 veces su tamaño al analizarla: se cuentan los «[» y «{» antes (el tope honrado lo deja en < 100 MiB)."""
    from helpers.grading.chain import grade_file

    path = tmp_path / "load_lora_adapter_example.ipynb"
    path.write_bytes(b'{"nbformat": 4, "x": [' + b"[]," * 4_000_000 + b"[]]}")
    tracemalloc.start()
    grade = grade_file(path, course=tmp_path)  # no llega a ejecutarse: la copia del curso no hace falta
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert grade.total == 0 and "listas y diccionarios JSON" in " ".join(grade.motivos), grade.motivos
    assert peak < 3 * path.stat().st_size, peak  # analizado, serían ~23 veces
