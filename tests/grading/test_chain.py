"""Corrección de entregas: los puntos los decide quien corrige, en su proceso, con lo entregado como datos.

Casi todo se prueba con cuadernos pequeños del cuaderno de carga (un kernel cada uno, unos segundos), que
usan las comprobaciones reales: una entrega honrada y una por cada forma de hacer trampa, también contra el
juez (issue 19: su propio juez, configuraciones falsificadas, enlaces y tuberías donde se lee). Se corrigen
juntas, una sola vez, con la orden de línea (``python -m helpers.grading``), en paralelo. Al final, los
cuadernos reales del curso.
"""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from helpers.checks.cells import checks_called
from helpers.checks.registry import EXERCISES, NOTEBOOKS, exercises_for
from helpers.grading.chain import grade_file
from helpers.grading.cli import main
from helpers.grading.prepare import prepare
from helpers.grading.read import SubmissionError, expand_paths, identify, shard
from helpers.grading.release import build_release, course_copy
from helpers.grading.report import Grade, csv_header, merge_csvs, table, write_csv
from helpers.grading.sandbox import sandbox_available
from helpers.paths import COURSE_ROOT, NOTEBOOKS_DIR, SOLUTIONS_DIR
from tests.budgets import with_tiny_budget

NOTEBOOK = "load_lora_adapter_example"
MAXIMUM = sum(e.points for e in exercises_for(NOTEBOOK))
needs_sandbox = pytest.mark.skipif(not sandbox_available()[0], reason=f"sin caja de arena: {sandbox_available()[1]}")

SETUP = """from peft import PeftModel
from transformers import AutoModelForCausalLM
from helpers.checks import adapters as checks
from helpers.model import base_model_path
from helpers.paths import COURSE_ROOT
ADAPTER_DIRS = {f: str(COURSE_ROOT / "adapters" / f) for f in ("iso", "us", "en")}
base = AutoModelForCausalLM.from_pretrained(base_model_path())"""
HONEST = 'model = PeftModel.from_pretrained(base, ADAPTER_DIRS["iso"], adapter_name="iso")'
LAZY = "model = base  # sin adaptador: una respuesta equivocada"
CHECK = "checks.load_adapter(model);"


def notebook(*sources, meta=NOTEBOOK):
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if meta:
        metadata["curso_lora"] = {"notebook": meta}
    return new_notebook(cells=[new_markdown_cell("# Entrega"), *map(new_code_cell, sources)], metadata=metadata)


def fingerprint(path):
    return path.read_bytes(), os.stat(path).st_mtime_ns


# --- cada paso por separado, sin kernel -----------------------------------------------------------

def test_prepare_restores_every_check_cell_from_the_instructors_copy():
    submitted = notebook(SETUP, LAZY, "checks.load_adapter(PeftModel.from_pretrained(base, ADAPTER_DIRS['iso']))",
                         "print('hola')")
    submitted.cells[2].outputs = [nbformat.v4.new_output("stream", text="✅ 7/7")]
    prepared, reasons = prepare(submitted, NOTEBOOK)
    official = [c.source for c in nbformat.read(NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb", as_version=4).cells
                if c.cell_type == "code" and "load_adapter" in checks_called(c.source)]
    assert prepared.cells[3].source == official[0] and prepared.cells[4].source == "print('hola')"
    assert all(not c.get("outputs") for c in prepared.cells if c.cell_type == "code")
    assert reasons == [f"falta la comprobación de {name} (¿borraste o renombraste la llamada checks.{name}(...)?)"
                       for name in ("switch_adapters", "unload_adapters", "merge_adapter")]
    assert submitted.cells[2].outputs  # la entrega no se toca


def test_the_release_has_no_solutions_and_never_overwrites(tmp_path):
    release = build_release(tmp_path / "curso")
    assert not (release / "solutions").exists() and not (release / "tests").exists()
    assert (release / "notebooks" / f"{NOTEBOOK}.ipynb").is_file() and (release / "helpers" / "grading" / "judge.py").is_file()
    assert (release / "adapters" / "iso" / "adapter_model.safetensors").is_file()
    with pytest.raises(FileExistsError, match="no está vacía"):
        build_release(release)


def test_solution_says_it_is_not_available_without_the_solutions_folder(tmp_path):
    from helpers.checks.core import solution_code

    assert "no están disponibles" in solution_code(NOTEBOOK, "load_adapter", solutions_dir=tmp_path)


def test_shards_cover_every_file_once_and_merge_back(tmp_path):
    files = [Path(f"{n}.ipynb") for n in range(7)]
    parts = [shard(files, i, 3) for i in (1, 2, 3)]
    assert sorted(p for part in parts for p in part) == sorted(files) and all(parts)
    csvs = []
    for i, part in enumerate(parts, start=1):
        csvs.append(write_csv([Grade(str(p), None, {}, None, ["x"]) for p in part], tmp_path / f"p{i}.csv"))
    assert merge_csvs(csvs, tmp_path / "total.csv") == 7
    with (tmp_path / "total.csv").open(encoding="utf-8", newline="") as handle:
        assert [row[0] for row in list(csv.reader(handle))[1:]] == sorted(str(p) for p in files)


def test_csv_cells_cannot_be_spreadsheet_formulas(tmp_path):
    write_csv([Grade("=HYPERLINK(\"http://x\")", None, {}, None, ["+1", "@SUM(A1)"])], tmp_path / "notas.csv")
    with (tmp_path / "notas.csv").open(encoding="utf-8", newline="") as handle:
        row = dict(zip(csv_header(), list(csv.reader(handle))[1]))
    assert row["archivo"].startswith("'=") and row["motivo"].startswith("'+1")


def test_csv_has_one_column_per_registered_exercise_and_a_table_for_people(tmp_path):
    full = {e.name: e.points for e in exercises_for(NOTEBOOK)}
    grades = [Grade("entregas/ana.ipynb", NOTEBOOK, full, MAXIMUM, aislamiento="bwrap"),
              Grade("entregas/roto.ipynb", None, {}, None, ["el archivo está vacío"])]
    write_csv(grades, tmp_path / "notas.csv")
    with (tmp_path / "notas.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["archivo", "cuaderno", *[e.name for e in EXERCISES], "total", "maximo", "motivo",
                       "aislamiento"] == csv_header()
    ana = dict(zip(rows[0], rows[1]))
    assert (ana["total"], ana["maximo"], ana["lora_config"], ana["aislamiento"]) == (str(MAXIMUM), str(MAXIMUM),
                                                                                       "", "bwrap")
    text = table(grades)
    assert f"Cuaderno {NOTEBOOK} (máximo {MAXIMUM} puntos)" in text and "Entregas sin corregir" in text


def test_expand_paths_keeps_a_symlink_as_its_own_row(tmp_path):
    (tmp_path / "ana").mkdir()
    (tmp_path / "ana" / ".ipynb_checkpoints").mkdir()
    for rel in ["b.ipynb", "ana/a.IPYNB", "ana/.ipynb_checkpoints/a-checkpoint.ipynb", "ana/notas.txt"]:
        (tmp_path / rel).write_text("{}")
    (tmp_path / "enlace.ipynb").symlink_to(tmp_path / "b.ipynb")
    files, warnings = expand_paths([tmp_path, tmp_path / "b.ipynb"])
    assert files == [tmp_path / "ana" / "a.IPYNB", tmp_path / "b.ipynb", tmp_path / "enlace.ipynb"]
    assert warnings == []


# --- archivos que no se pueden corregir ------------------------------------------------------------

def _valid_text(meta=NOTEBOOK):
    return nbformat.writes(notebook(SETUP, HONEST, CHECK, meta=meta))


BAD_FILES = {
    "notas.txt": ("hola, profe", "no es un cuaderno de Jupyter: no es JSON"),
    "foto.ipynb": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "no es un archivo de texto"),
    "vacio.ipynb": ("", "el archivo está vacío"),
    "cortado.ipynb": (_valid_text()[:300], "el cuaderno está dañado o incompleto"),
    "viejo.ipynb": (json.dumps({"nbformat": 2, "nbformat_minor": 0, "worksheets": [], "metadata": {}}),
                    "formato de cuaderno no compatible (nbformat 2"),
    "lista.ipynb": ("[1, 2]", "es JSON, pero no tiene 'nbformat'"),
    "invalido.ipynb": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                   "cells": [{"cell_type": "code"}]}), "el cuaderno no es válido"),
    "tarea_de_otro_curso.ipynb": (_valid_text(meta=None), "no reconozco el cuaderno"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_cannot_be_graded_gets_a_row_with_its_reason(tmp_path, name):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = fingerprint(path)
    grade = grade_file(path, course=COURSE_ROOT)
    assert reason in grade.motivo
    assert (grade.cuaderno, grade.total, grade.maximo, grade.executed) == (None, 0, None, None)
    assert fingerprint(path) == before


def test_a_broken_file_whose_name_says_the_notebook_is_listed_with_it(tmp_path):
    path = tmp_path / "lora_finetuning.ipynb"
    path.write_text(_valid_text()[:200], encoding="utf-8")
    grade = grade_file(path, course=COURSE_ROOT)
    assert grade.cuaderno == "lora_finetuning" and grade.total == 0
    assert grade.maximo == sum(e.points for e in exercises_for("lora_finetuning"))
    assert "dañado o incompleto" in grade.motivo


def test_a_missing_file_gets_a_row():
    grade = grade_file("no/existe/entrega.ipynb", course=COURSE_ROOT)
    assert grade.motivo == "no encuentro el archivo" and grade.archivo == "no/existe/entrega.ipynb"


def test_identify_by_metadata_then_by_filename():
    assert identify(notebook(meta="lora_finetuning"), "cualquier_nombre.ipynb") == "lora_finetuning"
    bare = notebook(meta=None)
    assert identify(bare, "Ana-lora_finetuning (1).ipynb") == "lora_finetuning"
    with pytest.raises(SubmissionError, match="no reconozco el cuaderno .* debe ser uno de: "):
        identify(bare, "entrega.ipynb")


@pytest.fixture
def submission(tmp_path):
    path = tmp_path / "ana.ipynb"
    nbformat.write(notebook(SETUP, HONEST, CHECK), path)
    return path


@pytest.mark.parametrize("args, message", [
    ([], "indica al menos una entrega"),
    (["{sub}", "--csv", "{tmp}"], "es una carpeta"),
    (["{sub}", "--csv", "{sub}"], "parece un cuaderno"),
    (["{sub}", "--timeout", "0"], "--timeout debe ser"),
    (["{sub}", "--jobs", "0"], "--jobs debe ser"),
    (["{sub}", "--parte", "3/2", "--semilla", "1"], "--parte '3/2'"),
    (["{sub}", "--parte", "1/2"], "la misma --semilla"),
    (["{tmp}", "--ejecutados", "{tmp}/ejecutados"], "dentro de una carpeta de entregas"),
])
def test_cli_usage_errors_exit_2_and_touch_nothing(tmp_path, capsys, monkeypatch, submission, args, message):
    monkeypatch.chdir(tmp_path)
    before = fingerprint(submission)
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(sub=submission, tmp=tmp_path) for a in args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert fingerprint(submission) == before and not (tmp_path / "notas.csv").exists()


# --- una clase que hace trampas, corregida de verdad ------------------------------------------------

# lo entregado por load_adapter, escrito a mano (sin cargar el modelo): el adaptador iso del curso con su
# configuración cambiada, y el manifiesto rehecho
FORGED_ADAPTER = """import json, os, shutil
from pathlib import Path
from helpers.checks import handover
from helpers.paths import COURSE_ROOT
root = Path(os.environ["CURSO_LORA_HANDOVER"]) / "load_adapter"
adapter = root / "model" / "adaptadores" / "iso"
shutil.copytree(COURSE_ROOT / "adapters" / "iso", adapter)
config = json.loads((adapter / "adapter_config.json").read_text())
config.update(@CHANGE@)
(adapter / "adapter_config.json").write_text(json.dumps(config))
(root / "model" / "pesos.safetensors").write_bytes(bytes([8, 0, 0, 0, 0, 0, 0, 0]) + b"{}      ")
(root / "model" / "modelo.json").write_text(json.dumps({"peft": True, "adapters": ["iso"], "active": "iso"}))
(root / "model" / "objeto.json").write_text(json.dumps({"formato": "modelo", "tipo": "PeftModel", "none": False}))
files = sorted(p for p in root.rglob("*") if p.is_file())
(root / handover.MANIFEST).write_text(json.dumps({str(p.relative_to(root)): handover._sha256(p) for p in files}))"""
# lo entregado por lora_config (cuaderno lora_finetuning), escrito a mano, sin modelo
FORGED_CONFIG = """import json, os
from pathlib import Path
from helpers.checks import handover
root = Path(os.environ["CURSO_LORA_HANDOVER"]) / "lora_config"
(root / "config").mkdir(parents=True)
config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
          "bias": "none", "target_modules": @TARGETS@}
(root / "config" / "config.json").write_text(json.dumps(handover._encode(config)))
(root / "config" / "objeto.json").write_text(json.dumps({"formato": "configuración", "tipo": "LoraConfig",
                                                          "none": False}))
files = ["config/config.json", "config/objeto.json"]
(root / handover.MANIFEST).write_text(json.dumps({f: handover._sha256(root / f) for f in files}))"""
# su propio helpers/grading/judge.py en la carpeta de trabajo (el juez antiguo se lanzaba desde ahí con -m)
OWN_JUDGE = '''import os, textwrap
os.makedirs("helpers/grading", exist_ok=True)
open("helpers/__init__.py", "w").write("")
open("helpers/grading/__init__.py", "w").write("")
open("helpers/grading/judge.py", "w").write(textwrap.dedent("""
    import json
    open(@OUTSIDE@, "w").write("el juez de la entrega se ejecutó fuera de la caja")
    try:
        open(@CLASSMATE@, "w").write("{}")  # y pisa a una compañera
    except OSError:
        pass
    points = {"load_adapter": 1, "switch_adapters": 3, "unload_adapters": 1, "merge_adapter": 2}
    print(json.dumps({n: {"estado": "correcto", "puntos": p, "mensaje": "¡Correcto!"} for n, p in points.items()}))
    """))'''
OWN_MEGATRON = """import os
os.makedirs("megatron", exist_ok=True)
open("megatron/__init__.py", "w").write("")
open("megatron/evil.py", "w").write("open(@MEGATRON@, 'w').write('megatron.evil importado')")"""
# con cada letra más se dobla el tiempo: esta, unos 20 s con el juez antiguo; con [\w.] en vez de \w, horas
NESTED_REGEX = r"model\.layers\.\d+\.(?:\w+)+X"

ATTACKS = {
    # una entrega honrada: 1 punto (load_adapter); las otras tres comprobaciones faltan
    "honrada": [SETUP, HONEST, CHECK],
    "perezosa": [SETUP, LAZY, CHECK],
    # un registro de resultado falsificado, con el tipo MIME que usaba la corrección antigua
    "registro_falso": [SETUP, LAZY, CHECK, """from IPython.display import display
record = {"notebook": "load_lora_adapter_example", "passed": True, "points": 1, "max_points": 1}
for name in ("load_adapter", "switch_adapters", "unload_adapters", "merge_adapter"):
    display({"application/vnd.curso-lora.check+json": {**record, "exercise": name},
             "text/plain": "✅ " + name}, raw=True)"""],
    # la comprobación y su entrega, reemplazadas en el proceso de la entrega
    "parcheada": [SETUP, LAZY, """from helpers.checks import core, handover
core.Exercise.run = lambda self, *a, **k: core.Outcome(core.PASSED, "¡Correcto!")
checks.load_adapter._check = lambda *a, **k: "¡Correcto!"
real_write = handover.write
handover.write = lambda name, args, formats, root: real_write(name, {"model": None}, formats, root)""", CHECK],
    # la celda de comprobación cambiada para pasar otro objeto: se restaura la del profesor
    "celda_cambiada": [SETUP, LAZY, "checks.load_adapter(PeftModel.from_pretrained(base, ADAPTER_DIRS['iso']))"],
    # leer las soluciones del profesor y ejecutarlas
    "lee_soluciones": [SETUP, """import glob, json, helpers
from pathlib import Path
candidates = [Path(helpers.__file__).parents[1] / "solutions", Path(@ROOT@) / "solutions"]
found = [p for c in candidates for p in glob.glob(str(c / "load_lora_adapter_example.ipynb"))]
print("soluciones encontradas:", found)
code = json.load(open(found[0]))["cells"][8]["source"]
exec("".join(code))""", CHECK],
    # datos entregados escritos a mano: una tabla de respuestas con el modelo base
    "datos_falsos": [SETUP, LAZY, CHECK, """import os
from pathlib import Path
from helpers.checks import handover
from helpers.data import make_splits, answer
key = {n: [answer(r) for r in make_splits(f)["test"].select(range(6))] for n, f in zip("abc", ("iso", "us", "en"))}
handover.write("switch_adapters", {"mystery": base, "answers_by_adapter": key,
               "format_of": {"a": "iso", "b": "us", "c": "en"}}, checks.switch_adapters.handover,
               Path(os.environ["CURSO_LORA_HANDOVER"]))"""],
    # pisar la entrega de una compañera y el CSV
    "pisa_companera": [SETUP, HONEST, CHECK, """for target in (@CLASSMATE@, @CSV@):
    try:
        open(target, "w").write("{}")
        print("ESCRITO", target)
    except OSError as error:
        print("no pude:", type(error).__name__)"""],
    # un proceso que sobrevive a su ejecución y reescribe el CSV después
    "rezagado": [SETUP, HONEST, CHECK, """import subprocess, sys
code = "import os, time\\nif os.fork(): os._exit(0)\\nos.setsid()\\ntime.sleep(4)\\n" + \\
       "open(@CSV@, 'w').write('pirateado')\\nopen(@MARKER@, 'w').write('sigo vivo')"
subprocess.Popen([sys.executable, "-c", code], start_new_session=True)"""],
    # matar a su padre (el ejecutor) y espiar los procesos de la máquina
    "mata_padre": [SETUP, """import os, glob, signal
seen = []
for path in glob.glob("/proc/*/cmdline"):
    try:
        seen.append(open(path, "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
print("PROCESOS:", seen)
os.kill(os.getppid(), signal.SIGKILL)"""],
    # inundar la salida
    "inunda": [SETUP, "for _ in range(200_000):\n    print('x' * 100)"],
    # --- contra el juez (issue 19); ninguna carga el modelo: escriben a mano lo que el juez lee ---
    "juez_propio": [OWN_JUDGE],
    # megatron_core nombra un módulo suyo: PEFT lo importaría al cargar el adaptador
    "megatron": [OWN_MEGATRON, FORGED_ADAPTER.replace(
        "@CHANGE@", 'megatron_config={"tensor_model_parallel_size": 1}, megatron_core="megatron.evil"')],
    # un rango enorme: PEFT reservaría r·(d+k) por capa (3 GiB a r=12000) antes de ver que no encaja
    "rango_enorme": [FORGED_ADAPTER.replace("@CHANGE@", "r=12000, lora_alpha=24000")],
    # una expresión regular con repetición anidada en target_modules (lora_config de lora_finetuning)
    "regex": [FORGED_CONFIG.replace("@TARGETS@", repr(NESTED_REGEX))],
    # ejecutado.ipynb, un enlace al cuaderno de soluciones del profesor (que fuera de la caja existe)
    "enlace_soluciones": ["import os\nos.symlink(@SOLUTIONS@, 'ejecutado.ipynb')"],
    # tuberías (FIFO) donde la corrección lee: la copia ejecutada y un archivo de lo entregado
    "tuberias": ["""import os
from pathlib import Path
model = Path(os.environ["CURSO_LORA_HANDOVER"]) / "load_adapter" / "model"
model.mkdir(parents=True)
os.mkfifo(model / "modelo.json")
os.mkfifo("ejecutado.ipynb")"""],
}
NOTEBOOK_OF = {"regex": "lora_finetuning"}


@pytest.fixture(scope="module")
def class_graded(tmp_path_factory):
    """Una clase con una entrega honrada y una por cada trampa, corregida con la orden, 2 a la vez."""
    root = tmp_path_factory.mktemp("clase")
    entregas = root / "entregas"
    entregas.mkdir()
    csv_path, marker = root / "notas.csv", root / "sigo_vivo.txt"
    classmate = entregas / "honrada.ipynb"
    outside = {"@OUTSIDE@": root / "juez_fuera.txt", "@MEGATRON@": root / "megatron_importado.txt"}
    places = {"@ROOT@": repr(str(COURSE_ROOT)), "@CLASSMATE@": repr(str(classmate)), "@CSV@": repr(str(csv_path)),
              "@MARKER@": repr(str(marker)), "@SOLUTIONS@": repr(str(SOLUTIONS_DIR / f"{NOTEBOOK}.ipynb")),
              **{placeholder: repr(str(path)) for placeholder, path in outside.items()}}
    for name, sources in ATTACKS.items():
        cells = []
        for source in sources:
            for placeholder, value in places.items():
                source = source.replace(placeholder, value)
            cells.append(source)
        nbformat.write(notebook(*cells, meta=NOTEBOOK_OF.get(name, NOTEBOOK)), entregas / f"{name}.ipynb")
    (entregas / "enlace.ipynb").symlink_to(classmate)
    before = {p.name: fingerprint(p) for p in entregas.iterdir() if not p.is_symlink()}
    start = time.monotonic()
    # --memoria 2: una entrega honrada de este cuaderno y su juez usan ~1,1 GiB cada uno (medido); un juez
    # que reservara los 3 GiB de r=12000 se detendría por memoria, y su fila no diría «r=12000»
    run = subprocess.run([sys.executable, "-m", "helpers.grading", "entregas", "--csv", "notas.csv", "--jobs", "2",
                          "--timeout", "300", "--max-salida", "2", "--memoria", "2", "--semilla", "7",
                          "--ejecutados", "ejecutados"],
                         cwd=root, capture_output=True, text=True, timeout=1500, check=False)
    seconds = time.monotonic() - start
    final_csv = csv_path.read_text(encoding="utf-8")
    time.sleep(6)  # lo que el rezagado habría tardado en escribir
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = {Path(r["archivo"]).stem: r for r in (dict(zip(csv_header(), row)) for row in list(csv.reader(handle))[1:])}
    print(f"clase de {len(ATTACKS) + 1} entregas corregida en {seconds:.0f} s con --jobs 2")
    print("\n".join(line.split(" — ")[0] + " — " + line.split(" — ")[1].split(" (")[-1].rstrip(")")
                    for line in run.stdout.splitlines() if line.startswith("[") and " — " in line))
    return {"run": run, "rows": rows, "root": root, "before": before, "entregas": entregas, "outside": outside,
            "csv_after_exit": csv_path.read_text(encoding="utf-8"), "final_csv": final_csv, "marker": marker}


def executed_text(graded, name):
    """Lo que mostraron las celdas de la copia ejecutada de una entrega (solo salidas, no su código)."""
    path = graded["root"] / "ejecutados" / f"entregas_{name}.ejecutado.ipynb"
    if not path.exists():
        return ""
    outputs = [o for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    return "\n".join(json.dumps(o, ensure_ascii=False) for o in outputs)


@needs_sandbox
@pytest.mark.slow
def test_honest_work_keeps_its_point_and_every_row_is_written(class_graded):
    run, rows = class_graded["run"], class_graded["rows"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert set(rows) == {*ATTACKS, "enlace"}, run.stdout[-3000:]
    honest = rows["honrada"]
    assert (honest["load_adapter"], honest["total"], honest["maximo"]) == ("1", "1", str(MAXIMUM)), honest
    assert honest["aislamiento"] == "bwrap"


@needs_sandbox
@pytest.mark.slow
@pytest.mark.parametrize("name", ["perezosa", "registro_falso", "parcheada", "celda_cambiada", "lee_soluciones",
                                  "datos_falsos"])
def test_every_attack_on_the_points_earns_zero(class_graded, name):
    row = class_graded["rows"][name]
    assert row["total"] == "0", row


@needs_sandbox
@pytest.mark.slow
def test_the_patched_check_said_yes_to_the_student_but_the_grader_said_no(class_graded):
    assert "✅" in executed_text(class_graded, "parcheada")
    assert class_graded["rows"]["parcheada"]["total"] == "0"


@needs_sandbox
@pytest.mark.slow
def test_the_solutions_are_out_of_reach(class_graded):
    assert "soluciones encontradas: []" in executed_text(class_graded, "lee_soluciones")


@needs_sandbox
@pytest.mark.slow
def test_classmates_files_and_the_csv_are_out_of_reach(class_graded):
    entregas = class_graded["entregas"]
    assert {p.name: fingerprint(p) for p in entregas.iterdir() if not p.is_symlink()} == class_graded["before"]
    assert "ESCRITO" not in executed_text(class_graded, "pisa_companera")
    assert class_graded["rows"]["pisa_companera"]["total"] == "1"


@needs_sandbox
@pytest.mark.slow
def test_no_process_outlives_its_run_and_the_csv_is_untouched_after_exit(class_graded):
    assert class_graded["csv_after_exit"] == class_graded["final_csv"] and "pirateado" not in class_graded["final_csv"]
    assert not class_graded["marker"].exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if "sigo vivo" in " ".join(p.info["cmdline"] or [])]
    assert class_graded["rows"]["rezagado"]["total"] == "1"


@needs_sandbox
@pytest.mark.slow
def test_killing_its_parent_costs_only_its_own_row_and_it_sees_no_host_process(class_graded):
    row = class_graded["rows"]["mata_padre"]
    assert row["total"] == "0" and "se detuvo" in row["motivo"], row
    assert class_graded["rows"]["honrada"]["total"] == "1"
    spied = executed_text(class_graded, "mata_padre")
    assert "notas.csv" not in spied and "honrada" not in spied


@needs_sandbox
@pytest.mark.slow
def test_an_output_flood_stops_with_its_reason_and_a_small_copy(class_graded):
    row = class_graded["rows"]["inunda"]
    assert "salida" in row["motivo"], row
    copy = class_graded["root"] / "ejecutados" / "entregas_inunda.ejecutado.ipynb"
    assert copy.stat().st_size < 5 * 2**20


@needs_sandbox
@pytest.mark.slow
def test_a_symlink_to_a_classmate_is_refused_and_the_classmate_keeps_her_row(class_graded):
    assert "enlace simbólico" in class_graded["rows"]["enlace"]["motivo"]
    assert class_graded["rows"]["honrada"]["total"] == "1"


# --- contra el juez (issue 19) ---------------------------------------------------------------------------

@needs_sandbox
@pytest.mark.slow
def test_a_judge_written_by_the_submission_never_runs(class_graded):
    """Su helpers/grading/judge.py no se importa: el juez es un Python aislado que importa la copia del curso."""
    assert not class_graded["outside"]["@OUTSIDE@"].exists()
    row = class_graded["rows"]["juez_propio"]
    assert row["total"] == "0" and row["maximo"] == str(MAXIMUM), row


@needs_sandbox
@pytest.mark.slow
def test_a_config_naming_its_own_megatron_module_is_refused_and_never_imported(class_graded):
    assert not class_graded["outside"]["@MEGATRON@"].exists()
    row = class_graded["rows"]["megatron"]
    assert row["load_adapter"] == "0" and "load_adapter: rechazado sin cargarlo" in row["motivo"], row
    assert "el campo megatron_config" in row["motivo"], row


@needs_sandbox
@pytest.mark.slow
def test_a_huge_rank_is_refused_before_anything_is_allocated(class_graded):
    row = class_graded["rows"]["rango_enorme"]  # con --memoria 2, un juez que reservara 3 GiB no diría esto
    assert row["load_adapter"] == "0" and "r=12000 fuera de lo admitido" in row["motivo"], row


@needs_sandbox
@pytest.mark.slow
def test_a_regex_in_target_modules_is_refused_without_running_it(class_graded):
    row = class_graded["rows"]["regex"]
    assert row["cuaderno"] == "lora_finetuning" and row["lora_config"] == "0", row
    assert "lora_config: rechazado sin cargarlo" in row["motivo"], row
    assert "nunca una expresión regular" in row["motivo"], row


@needs_sandbox
@pytest.mark.slow
def test_an_executed_copy_linked_to_the_solutions_copies_nothing_of_them(class_graded):
    solutions = nbformat.read(SOLUTIONS_DIR / f"{NOTEBOOK}.ipynb", as_version=4)
    exercises = nbformat.read(NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb", as_version=4)
    only_there = {c.source for c in solutions.cells if c.cell_type == "code"} - {c.source for c in exercises.cells}
    assert only_there
    for path in (class_graded["root"] / "ejecutados").iterdir():
        sources = {c.source for c in nbformat.read(path, as_version=4).cells}
        assert not sources & only_there, path.name
    row = class_graded["rows"]["enlace_soluciones"]
    assert "la copia ejecutada no se guarda: ejecutado.ipynb es un enlace simbólico" in row["motivo"], row


@needs_sandbox
@pytest.mark.slow
def test_fifos_where_the_grader_reads_do_not_block_the_batch(class_graded):
    row = class_graded["rows"]["tuberias"]
    assert "la copia ejecutada no se guarda: ejecutado.ipynb es una tubería (FIFO)" in row["motivo"], row
    assert ("load_adapter: no se recoge lo entregado (entregado/load_adapter/model/modelo.json es una tubería "
            "(FIFO)") in row["motivo"], row
    assert class_graded["run"].returncode == 0
    assert not (class_graded["root"] / "ejecutados" / "entregas_tuberias.ejecutado.ipynb").exists()


@pytest.mark.slow
def test_without_a_sandbox_grading_works_and_says_so(submission):
    with course_copy() as course:
        grade = grade_file(submission, course=course, isolate=False, seed=3)
    assert grade.total == 1 and "SIN AISLAMIENTO" in grade.aislamiento, grade


# --- los cuadernos reales del curso --------------------------------------------------------------------

def _course_notebook(folder, name):
    path = folder / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"todavía no existe {path.relative_to(COURSE_ROOT)}")
    return path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_course_notebooks_are_recognised_and_keep_every_check_call(name):
    for folder in (SOLUTIONS_DIR, NOTEBOOKS_DIR):
        path = _course_notebook(folder, name)
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.get("curso_lora", {}).get("notebook") == name, f"{path.name}: faltan los metadatos"
        calls = {n for c in nb.cells if c.cell_type == "code" for n in checks_called(c.source)}
        assert {e.name for e in exercises_for(name)} <= calls, f"{path}: falta alguna llamada checks.X(...)"


@pytest.fixture(scope="module")
def course():
    with course_copy() as folder:
        yield folder


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_grading_an_untouched_exercise_notebook_gives_zero_without_crashing(course, name, tmp_path):
    path = tmp_path / f"{name}.ipynb"  # con el presupuesto diminuto: el mismo recorrido, en menos tiempo
    nbformat.write(with_tiny_budget(nbformat.read(_course_notebook(NOTEBOOKS_DIR, name), as_version=4), name), path)
    grade = grade_file(path, course=course, seed=11)
    assert grade.cuaderno == name and grade.total == 0 and grade.maximo > 0
    assert not [m for m in grade.motivos if m.startswith(("la ejecución", "error interno", "falta la comprobación"))]
    assert set(grade.mensajes) == {e.name for e in exercises_for(name)}, grade.mensajes  # juzgado cada uno
    assert not [m for m in grade.mensajes.values() if m.startswith("correcto")], grade.mensajes


HANDED_OVER_IN_CI = os.environ.get("CURSO_LORA_HANDOVER_CI")


@pytest.mark.skipif(not HANDED_OVER_IN_CI, reason="solo con `make test`: nbval ejecuta antes las soluciones y "
                                                  "entrega sus objetos en CURSO_LORA_HANDOVER_CI")
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_objects_the_solutions_hand_over_earn_full_marks(name, course, tmp_path):
    """Lo que entregan las soluciones al ejecutarse con nbval, recogido y juzgado como en la corrección.

    La misma ejecución de nbval sirve así a la corrección de punta a punta: recoger (copia sin enlaces, con
    topes y manifiestos) y el juez aislado en la caja, con fechas ocultas. (Que una entrega pase entera por
    el kernel en la caja lo prueban la entrega honrada de la clase y los cuadernos de ejercicios intactos.)
    """
    import shutil

    from helpers.grading.collect import collect
    from helpers.grading.judge import run_judge

    names = [e.name for e in exercises_for(name)]
    run_folder = tmp_path / "entrega"
    shutil.copytree(Path(HANDED_OVER_IN_CI), run_folder / "entregado",
                    ignore=lambda folder, found: [] if Path(folder) != Path(HANDED_OVER_IN_CI) else
                    [f for f in found if f not in names])
    collected = collect(run_folder, tmp_path / "recogido", names, total_bytes=4 * 2**30)
    assert not [r for r in collected.reasons if any(n in r for n in names)], collected.reasons
    verdicts = run_judge(tmp_path / "recogido", name, seed=11, course=course, workdir=tmp_path / "juez")
    assert {n: v["puntos"] for n, v in verdicts.items()} == {e.name: e.points for e in exercises_for(name)}, verdicts
