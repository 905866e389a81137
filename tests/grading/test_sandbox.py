"""La caja de arena de la corrección: cada prueba es un ataque de una entrega con un script diminuto."""

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from helpers.checks.safe_files import remove_tree
from helpers.grading import sandbox
from helpers.grading.sandbox import Limits, run_sandboxed, sandbox_available
from helpers.paths import COURSE_ROOT

AVAILABLE, WHY = sandbox_available()
needs_bwrap = pytest.mark.skipif(not AVAILABLE, reason=f"sin bubblewrap: {WHY}")


@pytest.fixture
def box(tmp_path):
    """Ejecuta un script en la caja: la copia del curso y la carpeta de la entrega viven en `tmp_path`."""
    course, workdir = tmp_path / "curso", tmp_path / "entregas" / "eva"
    (course / "helpers").mkdir(parents=True)
    (course / "helpers" / "__init__.py").write_text("COPIA = 'release'\n")
    workdir.mkdir(parents=True)

    def run(code, *, limits=None, **options):
        script = course / f"ataque_{uuid.uuid4().hex}.py"
        script.write_text(textwrap.dedent(code))
        result = run_sandboxed([sys.executable, str(script)], course=course, workdir=workdir,
                               log=tmp_path / "salida.log", limits=limits or Limits(timeout=60), **options)
        return result, (tmp_path / "salida.log").read_text(errors="replace")

    run.course, run.workdir, run.root = course, workdir, tmp_path
    return run


def running(marker):
    """Procesos del sistema cuya línea de órdenes contiene `marker`."""
    return [process for process in psutil.process_iter(["cmdline"])
            if marker in " ".join(process.info["cmdline"] or [])]


@needs_bwrap
def test_import_helpers_loads_the_course_copy(box):
    result, output = box("import helpers; print(helpers.__file__, helpers.COPIA)")
    assert result.ok and result.isolated, output
    assert output.split() == [str(box.course / "helpers" / "__init__.py"), "release"]


@needs_bwrap
def test_a_classmates_file_and_the_course_stay_untouched(box):
    classmate = box.root / "entregas" / "ana.ipynb"
    classmate.write_text("el cuaderno de Ana")
    result, output = box(f"""
        import os
        for path in [{str(classmate)!r}, "../ana.ipynb", {str(box.course / "helpers" / "__init__.py")!r}]:
            for attack in (lambda: print(open(path).read()), lambda: open(path, "w").write("0/6"),
                           lambda: os.remove(path)):
                try:
                    attack()
                except OSError as error:
                    print("no", type(error).__name__)
        """)
    assert result.ok, output
    assert "Ana" not in output  # ni la lee (lo que escriba ahí cae en su /tmp privado)
    assert classmate.read_text() == "el cuaderno de Ana"
    assert (box.course / "helpers" / "__init__.py").read_text() == "COPIA = 'release'\n"


@needs_bwrap
def test_the_original_repo_is_invisible(box):
    secrets = [COURSE_ROOT / "solutions", COURSE_ROOT / "helpers" / "grading" / "chain.py"]
    assert all(path.exists() for path in secrets)
    result, output = box(f"import os; print([os.path.exists(p) for p in {[str(p) for p in secrets]}])")
    assert result.ok, output
    assert output.strip() == "[False, False]"


@needs_bwrap
def test_no_network_not_even_the_hosts_loopback(box):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    result, output = box(f"""
        import socket
        for address in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
            try:
                socket.create_connection(address, timeout=3).close()
                print("CONECTADO", address)
            except OSError as error:
                print("no", address, type(error).__name__)
        """)
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert result.ok, output
    assert "CONECTADO" not in output and output.count("no ") == 3


@needs_bwrap
def test_a_detached_double_forked_process_is_gone_on_return(box):
    marker = f"rezagado_{uuid.uuid4().hex}"
    result, output = box(f"""
        import os, subprocess, sys
        late = "import time; time.sleep(1); open('tarde.txt', 'w').write('{marker}')"
        if os.fork() == 0:
            os.setsid()
            subprocess.Popen([sys.executable, "-c", late], start_new_session=True)
            os._exit(0)
        os.wait()
        """)
    assert result.ok, output
    assert running(marker) == []
    time.sleep(1.5)
    assert not (box.workdir / "tarde.txt").exists()


@needs_bwrap
def test_killing_its_parent_spares_the_grader(box):
    result, output = box("""
        import os, signal, time
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(0.3)
        print("sigo vivo")
        """)
    assert result.ok and output.strip() == "sigo vivo"


@needs_bwrap
def test_a_run_killed_from_inside_is_reported(box):
    result, _ = box("""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"])
        time.sleep(30)
        """)
    assert result.status == "finished" and result.returncode == 137
    assert "SIGKILL" in result.reason and result.seconds < 20


@needs_bwrap
def test_an_output_flood_stops_at_the_cap(box):
    result, output = box("""
        import sys, time
        for _ in range(50):
            sys.stdout.write("x" * (1 << 20))
        sys.stdout.flush()
        time.sleep(30)
        """, limits=Limits(timeout=20, output_bytes=1 << 20))
    assert result.status == "output" and "salida" in result.reason and result.returncode is None
    assert len(output) == 1 << 20 and result.seconds < 10


@needs_bwrap
def test_a_memory_hog_stops(box):
    result, output = box("""
        import time
        hog = []
        for _ in range(100):
            hog.append(bytearray(20 << 20))
            time.sleep(0.02)
        time.sleep(30)
        """, limits=Limits(timeout=20, memory_bytes=200 << 20))
    assert result.status == "memory" and "memoria" in result.reason, output
    assert 200 << 20 < result.peak_memory < 2 << 30 and result.seconds < 10


@needs_bwrap
def test_a_fork_bomb_stops_and_leaves_nothing(box):
    marker = f"bomba_{uuid.uuid4().hex}"
    result, output = box(f"""
        import subprocess, sys
        for _ in range(200):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # {marker}"])
        """, limits=Limits(timeout=30, max_processes=20))
    assert result.status == "processes" and "procesos" in result.reason, output
    assert running(marker) == []


@needs_bwrap
def test_the_hosts_processes_are_invisible(box):
    marker = f"kernel_de_ana_{uuid.uuid4().hex}"
    classmate = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        result, output = box("""
            import os, subprocess
            print(sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit()))
            print(subprocess.run(["ps", "-e", "-o", "pid,args"], capture_output=True, text=True).stdout)
            print(open("/proc/1/cmdline").read().replace("\\0", " "))
            """)
    finally:
        classmate.kill()
        classmate.wait()
    assert result.ok, output
    assert marker not in output
    assert output.split("\n")[0] == "[1, 2]"  # el init de bwrap y el script
    assert output.split("\n")[-2].startswith(shutil.which("bwrap"))  # /proc/1 no es la prueba


@needs_bwrap
def test_kernel_settings_are_read_only(box):
    result, output = box("""
        try:
            open("/proc/sys/vm/swappiness", "w")
            print("ESCRIBIBLE")
        except OSError as error:
            print("no", type(error).__name__)
        """)
    assert result.ok and output.strip() == "no OSError", output


@needs_bwrap
def test_the_environment_is_whitelisted(box, monkeypatch):
    monkeypatch.setenv("SECRETO_DEL_PROFESOR", "notas.csv")
    result, output = box("import json, os; print(json.dumps(dict(os.environ)))",
                         env={"CURSO_LORA_SEMILLA": "7"}, cpus=1)
    assert result.ok, output
    environment = json.loads(output)
    assert set(environment) <= {*sandbox.THREAD_VARS, "PATH", "HOME", "TMPDIR", "LANG", "PWD", "PYTHONPATH",
                                "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE", "CURSO_LORA_SEMILLA"}
    assert environment["CURSO_LORA_SEMILLA"] == "7" and environment["OMP_NUM_THREADS"] == "1"
    assert environment["HOME"] == "/tmp/home" and environment["PYTHONPATH"] == str(box.course)


@needs_bwrap
def test_too_much_data_in_its_folder_stops(box):
    result, output = box("""
        import time
        for i in range(100):
            open(f"datos_{i}.bin", "wb").write(bytes(1 << 20))
            time.sleep(0.01)
        time.sleep(30)
        """, limits=Limits(timeout=20, disk_bytes=10 << 20))
    assert result.status == "disk" and "carpeta" in result.reason, output


@needs_bwrap
def test_its_tmp_is_private_and_counted(box):
    name = f"relleno_{uuid.uuid4().hex}"
    result, output = box(f"""
        import time
        with open("/tmp/{name}", "wb") as junk:
            for _ in range(100):
                junk.write(bytes(1 << 20))
                time.sleep(0.01)
        time.sleep(30)
        """, limits=Limits(timeout=20, disk_bytes=10 << 20))
    assert result.status == "disk" and "disco" in result.reason, output
    assert not (Path("/tmp") / name).exists()


@needs_bwrap
def test_a_hang_stops_at_the_time_limit(box):
    result, _ = box("import time; time.sleep(60)", limits=Limits(timeout=1))
    assert result.status == "timeout" and "tiempo" in result.reason and 1 <= result.seconds < 5


def test_without_bwrap_it_still_runs_limited_and_says_so(box, monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: (False, "No encuentro `bwrap`."))
    result, output = box("import helpers; print(helpers.COPIA)")
    assert result.ok and output.strip() == "release"
    assert not result.isolated and "SIN AISLAMIENTO" in result.warning and "bwrap" in result.warning
    result, _ = box("import time; time.sleep(60)", limits=Limits(timeout=1))
    assert result.status == "timeout" and not result.isolated and result.seconds < 5


# --- issue 25: nada de una entrega sobrevive a su fila -------------------------------------------------------

DEEP_AND_STOPPED = """
    import os, signal, subprocess, sys, time
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
                for _ in range(8)]
    os.kill(children[0].pid, signal.SIGSTOP)
    print("LISTO", flush=True)
    os.makedirs("hondo", exist_ok=True)
    fd = os.open("hondo", os.O_RDONLY)
    for _ in range({depth}):  # 1.200 carpetas una dentro de otra: un recorrido recursivo no llega al fondo
        os.mkdir("d", dir_fd=fd)
        fd = os.open("d", os.O_RDONLY, dir_fd=fd)
    time.sleep(120)
"""


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_bwrap), False], ids=["caja", "sin_caja"])
def test_a_tree_too_deep_to_walk_stops_the_run_and_kills_every_process(box, isolate):
    """La revisión: RecursionError en el recuento del disco antes de matar; 80 procesos vivos, uno con SIGSTOP."""
    marker = f"hondo_{uuid.uuid4().hex}"
    try:
        result, output = box(DEEP_AND_STOPPED.format(depth=1200, marker=marker), limits=Limits(timeout=60),
                             isolate=isolate)
    finally:  # pytest borra sus carpetas con recursión: no le dejamos 1.200 niveles
        remove_tree(box.workdir / "hondo")
    assert "LISTO" in output and running(marker) == [], output
    assert result.status == "files" and "demasiadas" in result.reason and result.seconds < 30, result


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_bwrap), False], ids=["caja", "sin_caja"])
def test_any_failure_of_the_supervisor_still_kills_everything(box, monkeypatch, isolate):
    marker = f"vigilante_{uuid.uuid4().hex}"
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise MemoryError("el vigilante se quedó sin memoria")
        return 0, 0, False

    monkeypatch.setattr(sandbox, "_usage", broken)
    result, output = box(DEEP_AND_STOPPED.format(depth=3, marker=marker), limits=Limits(timeout=60),
                         isolate=isolate)
    assert running(marker) == [], output
    assert result.status == "supervisor" and "MemoryError" in result.reason and result.returncode is None


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_bwrap), False], ids=["caja", "sin_caja"])
def test_many_empty_entries_and_sparse_files_pay_for_what_they_claim(box, isolate):
    result, output = box("""
        import os, time
        for n in range(3000):
            os.mkdir(f"vacia_{n}")
        time.sleep(30)
        """, limits=Limits(timeout=20, max_entries=1000), isolate=isolate)
    assert result.status == "files" and "1000" in result.reason, output
    result, output = box("""
        import os, time
        with open("disperso.bin", "wb") as sparse:
            sparse.truncate(3 << 30)  # 0 bytes pagados en disco, 3 GiB para quien lo copie
        time.sleep(30)
        """, limits=Limits(timeout=20, disk_bytes=100 << 20), isolate=isolate)
    assert result.status == "disk", output
