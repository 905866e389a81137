"""Lo que el juez lee de una entrega, y cómo se lanza: cada prueba es un archivo o un juez que miente.

Sin kernels ni modelos (salvo la arquitectura en «meta», sin pesos): leer sin seguir enlaces ni esperar a
tuberías, recoger con topes y manifiesto, la lista blanca de configuraciones y cabeceras de safetensors, y
el intérprete aislado del juez con sus fallos (tiempo, error, basura). Lo mismo, de punta a punta y con la
orden de línea, está en ``tests/grading/test_chain.py`` (la clase que hace trampas).
"""

import json
import os
import re
import shutil
import struct
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from helpers.checks import handover, whitelist
from helpers.checks.safe_files import Budget, Refused, copy_tree, open_folder, read_regular
from helpers.grading.collect import collect
from helpers.grading.judge import JudgeFailed, JudgeLimits, judge_command, run_judge
from helpers.grading.run import write_own
from helpers.grading.sandbox import sandbox_available
from helpers.paths import COURSE_ROOT

ISO = COURSE_ROOT / "adapters" / "iso"
ISO_CONFIG = json.loads((ISO / "adapter_config.json").read_text())
needs_bwrap = pytest.mark.skipif(not sandbox_available()[0], reason=f"sin bubblewrap: {sandbox_available()[1]}")


# --- leer un archivo de otro ---------------------------------------------------------------------------

def test_reading_refuses_links_fifos_and_big_files_without_blocking(tmp_path):
    (tmp_path / "bien.json").write_text("{}")
    (tmp_path / "enlace.json").symlink_to(tmp_path / "bien.json")
    os.mkfifo(tmp_path / "tuberia.json")  # sin nadie que escriba: un open() normal esperaría para siempre
    (tmp_path / "grande.json").write_bytes(b" " * 101)
    assert read_regular(tmp_path / "bien.json", cap=100) == b"{}"
    start = time.monotonic()
    for name, says in [("enlace.json", "enlace.json es un enlace simbólico, no un archivo normal"),
                       ("tuberia.json", "tuberia.json es una tubería (FIFO), no un archivo normal"),
                       ("grande.json", "grande.json pesa 101 bytes, más del máximo (100 bytes)"),
                       ("no_existe.json", "no encuentro no_existe.json")]:
        with pytest.raises(Refused) as refused:
            read_regular(tmp_path / name, cap=100, label=name)
        assert str(refused.value) == says
    assert time.monotonic() - start < 1


def test_the_runner_never_writes_through_a_link_or_into_a_fifo(tmp_path):
    secret = tmp_path / "soluciones.ipynb"
    secret.write_text("soluciones")
    (tmp_path / "ejecutado.ipynb").symlink_to(secret)
    os.mkfifo(tmp_path / "estado.json")
    for name in ("ejecutado.ipynb", "estado.json"):
        with pytest.raises(OSError):
            write_own(tmp_path, name, b"{}")
    assert secret.read_text() == "soluciones"
    write_own(tmp_path, "nuevo.json", b"{}")
    assert (tmp_path / "nuevo.json").read_text() == "{}"


def test_a_copy_refuses_anything_odd_and_respects_every_cap(tmp_path):
    def copy(source, **caps):
        fd = open_folder(str(source))
        try:
            return copy_tree(fd, tmp_path / f"copia_{len(list(tmp_path.iterdir()))}",
                             Budget(**{"file_bytes": 100, "total_bytes": 300, "entry_bytes": 0, **caps}), "entregado")
        finally:
            os.close(fd)

    good = tmp_path / "bien"
    (good / "a" / "b").mkdir(parents=True)
    (good / "a" / "b" / "x.json").write_text("[1]")
    (good / "y.txt").write_text("hola")
    digests = copy(good)
    assert sorted(digests) == ["a/b/x.json", "y.txt"]
    assert digests["y.txt"] == handover._sha256(good / "y.txt")
    cases = {"enlace": lambda f: (f / "x").symlink_to("/etc/passwd"),
             "carpeta_enlazada": lambda f: (f / "x").symlink_to(COURSE_ROOT / "solutions"),
             "tuberia": lambda f: os.mkfifo(f / "x"),
             "grande": lambda f: (f / "x").write_bytes(bytes(101)),
             "muchos": lambda f: [(f / str(n)).write_text("") for n in range(6)],
             "total": lambda f: [(f / str(n)).write_bytes(bytes(90)) for n in range(4)],
             "hondo": lambda f: (f / "1" / "2" / "3" / "4").mkdir(parents=True)}
    messages = {"enlace": "entregado/x es un enlace simbólico", "carpeta_enlazada": "entregado/x es un enlace",
                "tuberia": "entregado/x es una tubería (FIFO)", "grande": "pesa 101 bytes, más del máximo",
                "muchos": "más de 5", "total": "pasa de 300 bytes", "hondo": "más de 2 carpetas de profundidad"}
    for name, make in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        make(folder)
        with pytest.raises(Refused, match=re.escape(messages[name])):
            copy(folder, files=5, depth=2)


# --- recoger lo que dejó una ejecución -----------------------------------------------------------------

def test_collect_copies_what_is_judged_and_gives_a_reason_for_anything_odd(tmp_path):
    run = tmp_path / "entrega"
    handed = run / "entregado"
    value = {"a": handover.Value()}
    for name in ("bien", "manifiesto_roto", "con_tuberia", "con_enlace"):
        handover.write(name, {"a": [1, 2]}, value, handed)
    (handed / "manifiesto_roto" / "a" / "valor.json").write_text("[3]")
    os.mkfifo(handed / "con_tuberia" / "a" / "extra")
    (handed / "con_enlace" / "a" / "valor.json").unlink()
    (handed / "con_enlace" / "a" / "valor.json").symlink_to(COURSE_ROOT / "solutions" / "lora_finetuning.ipynb")
    (handed / "helpers").mkdir()  # no es un ejercicio: no se recoge
    (handed / "helpers" / "judge.py").write_text("print('hola')")
    (run / "ejecutado.ipynb").symlink_to(COURSE_ROOT / "solutions" / "lora_finetuning.ipynb")
    os.mkfifo(run / "estado.json")
    start = time.monotonic()
    result = collect(run, tmp_path / "recogido", ["bien", "manifiesto_roto", "con_tuberia", "con_enlace", "falta"],
                     total_bytes=1 << 20)
    assert time.monotonic() - start < 5
    assert result.executed is None and result.stop is None
    assert sorted(p.name for p in result.handed_over.iterdir()) == ["bien"]
    assert handover.read("bien", value, result.handed_over) == {"a": [1, 2]}
    assert result.reasons == [
        "estado.json es una tubería (FIFO), no un archivo normal; no se lee",
        "la copia ejecutada no se guarda: ejecutado.ipynb es un enlace simbólico, no un archivo normal",
        ("manifiesto_roto: no se recoge lo entregado (a/valor.json cambió después de escribirse (no cuadra con el "
        "manifiesto))"),
        ("con_tuberia: no se recoge lo entregado (entregado/con_tuberia/a/extra es una tubería (FIFO), no un "
        "archivo normal)"),
        ("con_enlace: no se recoge lo entregado (entregado/con_enlace/a/valor.json es un enlace simbólico, no un "
        "archivo normal)")]


def test_collect_keeps_the_executed_notebook_as_its_bytes(tmp_path):
    import nbformat

    run = tmp_path / "entrega"
    run.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), run / "ejecutado.ipynb")
    (run / "estado.json").write_text(json.dumps({"motivo": "se agotó el tiempo"}))
    result = collect(run, tmp_path / "recogido", [], total_bytes=1 << 20)
    assert result.executed == (run / "ejecutado.ipynb").read_bytes() and result.stop == "se agotó el tiempo"
    assert result.reasons == []
    (run / "ejecutado.ipynb").write_text("{no es json")  # se guarda tal cual: quien corrige no lo analiza
    result = collect(run, tmp_path / "otra", [], total_bytes=1 << 20)
    assert result.executed == b"{no es json" and result.reasons == []
    (run / "entregado").symlink_to(COURSE_ROOT / "adapters")
    result = collect(run, tmp_path / "tercera", ["iso"], total_bytes=1 << 20)
    assert result.reasons[-1] == "no se recoge nada entregado: entregado es un enlace simbólico, no una carpeta"
    assert list(result.handed_over.iterdir()) == []


# --- la lista blanca de configuraciones ----------------------------------------------------------------

def test_the_course_adapters_and_usual_configs_pass():
    for fmt in ("iso", "us", "en"):
        clean = whitelist.check_adapter_folder(COURSE_ROOT / "adapters" / fmt, label=fmt)
        assert clean["r"] == 8 and clean["target_modules"] == ["q_proj", "v_proj"]
    clean = whitelist.lora_config({**ISO_CONFIG, "target_modules": "all-linear", "use_rslora": True,
                                   "init_lora_weights": "olora", "r": 16, "lora_alpha": 32})
    assert len(whitelist.lora_shapes(clean)) == 2 * 7 * 30
    clean = whitelist.lora_config({**ISO_CONFIG, "layers_to_transform": [0, 29]})
    assert len(whitelist.lora_shapes(clean)) == 2 * 2 * 2
    loose = whitelist.lora_config({"peft_type": "LORA", "target_modules": ["c_attn"]}, strict=False)
    assert loose["target_modules"] == ["c_attn"]  # una LoraConfig suelta: la comprobación dirá que no existe


REFUSED = [
    ({"r": 12000}, "r=12000 fuera de lo admitido (un entero de 1 a 512)"),
    ({"r": 0}, "r=0 fuera de lo admitido"),
    ({"r": 8.0}, "r=8.0 fuera de lo admitido"),
    ({"lora_alpha": float("nan")}, "lora_alpha=nan no es un número razonable"),
    ({"lora_dropout": 2}, "lora_dropout=2 no es una probabilidad"),
    ({"bias": "todo"}, "bias='todo' no es uno de"),
    ({"task_type": "NO"}, "task_type='NO' no es una tarea de PEFT"),
    ({"init_lora_weights": "eva"}, "init_lora_weights='eva' no se admite"),
    ({"megatron_config": {"tensor_model_parallel_size": 1}, "megatron_core": "megatron.mio"},
     "el campo megatron_config = {'tensor_model_parallel_size': 1} no se admite"),
    ({"megatron_core": "mi_modulo"}, ("el campo megatron_core = 'mi_modulo' no se admite (solo su valor por defecto, "
                                     "'megatron.core')")),
    ({"auto_mapping": {"base_model_class": "X", "parent_library": "mi_modulo"}}, "el campo auto_mapping"),
    ({"modules_to_save": ["lm_head"]}, "el campo modules_to_save"),
    ({"rank_pattern": {"q_proj": 64}}, "el campo rank_pattern"),
    ({"alpha_pattern": {"q_proj": 64}}, "el campo alpha_pattern"),
    ({"use_dora": True}, "el campo use_dora"),
    ({"exclude_modules": ".*"}, "el campo exclude_modules"),
    ({"layer_replication": [[0, 30]] * 100}, "el campo layer_replication"),
    ({"trust_remote_code": True}, "campos que LoraConfig no tiene: 'trust_remote_code'"),
    ({"peft_type": "PROMPT_TUNING"}, "peft_type 'PROMPT_TUNING': solo se admite LORA"),
    ({"target_modules": r"(\w+)+X"}, "nunca una expresión regular"),
    ({"target_modules": ["q_proj", "model.layers.0.self_attn.v_proj"]}, "no es un nombre de capa simple"),
    ({"target_modules": ["lm_head"]}, "'lm_head' no es una capa lineal de este modelo"),
    ({"target_modules": None}, "faltan target_modules"),
    ({"layers_to_transform": [0, 30]}, "30 no es un bloque del modelo (de 0 a 29)"),
    ({"base_model_name_or_path": ["x"]}, "base_model_name_or_path no es un texto corto"),
]


@pytest.mark.parametrize("change, says", REFUSED, ids=[str(next(iter(c))) for c, _ in REFUSED])
def test_every_field_outside_the_whitelist_is_refused_with_its_reason(change, says):
    with pytest.raises(Refused) as refused:
        whitelist.lora_config({**ISO_CONFIG, **change})
    assert says in str(refused.value)


def test_refusing_a_huge_rank_or_a_catastrophic_regex_costs_nothing():
    whitelist.architecture()  # ya construida (una vez por proceso, sin pesos)
    tracemalloc.start()
    start = time.perf_counter()
    for change in ({"r": 10**9}, {"target_modules": r"([\w.]+)+X"}, {"target_modules": "(a|aa)*" * 50}):
        with pytest.raises(Refused):
            whitelist.lora_config({**ISO_CONFIG, **change})
    seconds, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 1 << 20, (seconds, peak)


# --- cabeceras de safetensors, antes de reservar memoria ------------------------------------------------

def safetensors(path, header, data=b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_tensor_headers_are_checked_before_anything_is_allocated(tmp_path):
    clean = whitelist.lora_config(ISO_CONFIG)
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    lying = safetensors(tmp_path / "grande.safetensors",  # dice 12000×576 floats (26 MB) y trae 8 bytes
                        {key: {"dtype": "F32", "shape": [12000, 576], "data_offsets": [0, 12000 * 576 * 4]}}, bytes(8))
    with pytest.raises(Refused, match="los datos no ocupan el archivo entero"):
        whitelist.safetensors_header(lying)
    honest_size = safetensors(tmp_path / "r16.safetensors",
                              {key: {"dtype": "F32", "shape": [16, 576], "data_offsets": [0, 16 * 576 * 4]}},
                              bytes(16 * 576 * 4))
    with pytest.raises(Refused, match=r"tiene forma \(16, 576\), se espera \(8, 576\) \(r=8\)"):
        whitelist.check_lora_file(honest_size, clean)
    cases = [
        ({key: {"dtype": "I64", "shape": [8, 576], "data_offsets": [0, 8 * 576 * 8]}}, "de tipo 'I64'"),
        ({"base_model.model.lm_head.lora_A.weight": {"dtype": "F32", "shape": [8, 576], "data_offsets": [0, 18432]}},
         "no es una matriz LoRA de esta configuración"),
        ({key: {"dtype": "F32", "shape": [8, 576], "data_offsets": [0, 4]}}, "no ocupa lo que dice su forma"),
        ({key: {"dtype": "F32", "shape": [8, -576], "data_offsets": [0, 0]}}, "forma no válida"),
        ({key: {"dtype": "F32", "shape": [8, 576], "data_offsets": [0, 18432], "x": 1}}, "no tiene la forma"),
    ]
    for header, says in cases:
        with pytest.raises(Refused, match=says):
            whitelist.check_lora_file(safetensors(tmp_path / "x.safetensors", header, bytes(18432)), clean)
    (tmp_path / "cabecera_enorme.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(Refused, match="cabecera de 1099511627776 bytes"):
        whitelist.safetensors_header(tmp_path / "cabecera_enorme.safetensors")


def test_changed_base_weights_must_be_base_weights_with_their_shape(tmp_path):
    empty = safetensors(tmp_path / "vacio.safetensors", {})
    assert whitelist.check_base_file(empty) == {}
    norm = {"model.norm.weight": {"dtype": "F32", "shape": [576], "data_offsets": [0, 2304]}}
    assert whitelist.check_base_file(safetensors(tmp_path / "n.safetensors", norm, bytes(2304)))
    for header, says in [({"model.otra.weight": norm["model.norm.weight"]}, "no es un peso del modelo base"),
                         ({"model.norm.weight": {"dtype": "F32", "shape": [2, 288], "data_offsets": [0, 2304]}},
                          r"tiene forma \(2, 288\), se espera \(576,\)")]:
        with pytest.raises(Refused, match=says):
            whitelist.check_base_file(safetensors(tmp_path / "x.safetensors", header, bytes(2304)))


def test_a_saved_folder_is_checked_file_by_file(tmp_path):
    from helpers.model import base_model_path

    base = Path(base_model_path())
    folder = tmp_path / "fusionado"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        shutil.copyfile(base / name, folder / name)
    safetensors(folder / "model.safetensors", {})
    whitelist.check_folder(folder)
    config = json.loads((base / "config.json").read_text())
    for change, says in [({"vocab_size": 10**9}, "config.json: vocab_size = 1000000000 no es el del modelo base"),
                         ({"auto_map": {"AutoModelForCausalLM": "mio.Modelo"}}, "pide código propio (auto_map)"),
                         ({"quantization_config": {"quant_method": "bitsandbytes"}}, "quantization_config")]:
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(Refused, match=re.escape(says)):
            whitelist.check_folder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(Refused, match=r"pytorch_model.bin no es un archivo que la corrección admita"):
        whitelist.check_folder(folder)
    shutil.copytree(ISO, tmp_path / "adaptador")
    config = dict(ISO_CONFIG, megatron_config={"x": 1}, megatron_core="megatron.mio")
    (tmp_path / "adaptador" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(Refused, match="adapter_config.json: el campo megatron_config"):
        whitelist.check_folder(tmp_path / "adaptador")


def test_the_judge_refuses_a_forged_model_without_loading_it(tmp_path):
    """handover.refusals: lo que el juez mira antes de cargar; en el proceso de pruebas llega como Unexpected."""
    from helpers.checks import adapters

    root = tmp_path / "entregado"
    model = root / "load_adapter" / "model"
    shutil.copytree(ISO, model / "adaptadores" / "iso")
    (model / "adaptadores" / "iso" / "adapter_config.json").write_text(json.dumps({**ISO_CONFIG, "r": 12000}))
    safetensors(model / "pesos.safetensors", {})
    (model / "modelo.json").write_text(json.dumps({"peft": True, "adapters": ["iso"], "active": "iso"}))
    (model / "objeto.json").write_text(json.dumps({"formato": "modelo", "tipo": "PeftModel", "none": False}))
    files = sorted(p for p in root.joinpath("load_adapter").rglob("*") if p.is_file())
    (root / "load_adapter" / handover.MANIFEST).write_text(json.dumps(
        {str(p.relative_to(root / "load_adapter")): handover._sha256(p) for p in files}))
    reasons = handover.refusals("load_adapter", adapters.load_adapter.handover, root)
    assert reasons == [("model: el adaptador 'iso'/adapter_config.json: r=12000 fuera de lo admitido (un entero "
                       "de 1 a 512)")]
    start = time.perf_counter()
    loaded = handover.read("load_adapter", adapters.load_adapter.handover, root)["model"]
    assert isinstance(loaded, handover.Unexpected) and "r=12000" in repr(loaded)
    assert time.perf_counter() - start < 30  # lo que cuesta cargar el modelo base; nada de 3 GiB
    (model / "modelo.json").write_text(json.dumps({"peft": True, "adapters": ["../../../.."], "active": "x"}))
    files = sorted(p for p in root.joinpath("load_adapter").rglob("*") if p.is_file() and p.name != handover.MANIFEST)
    (root / "load_adapter" / handover.MANIFEST).write_text(json.dumps(
        {str(p.relative_to(root / "load_adapter")): handover._sha256(p) for p in files}))
    assert handover.refusals("load_adapter", adapters.load_adapter.handover, root) == [
        "model: modelo.json: '../../../..' no es un nombre de adaptador simple"]


# --- el juez: un Python aislado que importa solo la copia del curso -------------------------------------

@pytest.fixture
def fake_course(tmp_path):
    """Una copia del curso cuyo helpers/grading/judge.py se sustituye por el de cada prueba."""
    course = tmp_path / "curso"
    (course / "helpers" / "grading").mkdir(parents=True)
    (course / "helpers" / "__init__.py").write_text("")
    (course / "helpers" / "grading" / "__init__.py").write_text("")

    def with_judge(code):
        (course / "helpers" / "grading" / "judge.py").write_text(code)
        return course

    return with_judge


GOOD_VERDICTS = textwrap.dedent("""
    import json, os, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    names = ("load_adapter", "switch_adapters", "unload_adapters", "merge_adapter")
    verdicts = {n: {"estado": "incorrecto", "puntos": 0, "mensaje": "no"} for n in names}
""")


def judged(tmp_path, course, isolate=True, timeout=60, memory=1 << 30):
    collected = tmp_path / "recogido"
    (collected / "entregado").mkdir(parents=True, exist_ok=True)
    return run_judge(collected, "load_lora_adapter_example", 123456789, course=course, workdir=tmp_path / "juez",
                     limits=JudgeLimits(timeout=timeout, memory_bytes=memory), isolate=isolate)


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_bwrap), False], ids=["caja", "sin_caja"])
def test_the_judge_imports_only_the_course_copy_and_never_sees_the_seed_on_its_command_line(
        tmp_path, fake_course, monkeypatch, isolate):
    course = fake_course(GOOD_VERDICTS + textwrap.dedent("""
    import helpers
    request = json.load(open(args["--pedido"]))
    info = {"sys_path": sys.path, "helpers": helpers.__file__, "cwd": os.getcwd(), "argv": sys.argv,
            "cmdline": open("/proc/self/cmdline", "rb").read().decode(), "flags": [sys.flags.isolated,
            sys.flags.no_user_site, sys.flags.ignore_environment, sys.flags.safe_path], "request": request,
            "environ": sorted(k for k in os.environ if k.startswith("PYTHON"))}
    open("info.json", "w").write(json.dumps(info))
    open(args["--salida"], "w").write(json.dumps(verdicts))
    """))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "entrega"))  # lo que quien corrige tenga puesto no cuenta
    rogue = tmp_path / "recogido" / "entregado" / "helpers"  # lo entregado nunca está en sys.path
    rogue.mkdir(parents=True)
    (rogue / "__init__.py").write_text("raise SystemExit('importado de lo entregado')")
    verdicts = judged(tmp_path, course, isolate)
    assert set(verdicts) == {"load_adapter", "switch_adapters", "unload_adapters", "merge_adapter"}
    info = json.loads((tmp_path / "juez" / "info.json").read_text())
    assert info["helpers"] == str(course.resolve() / "helpers" / "__init__.py")
    assert info["sys_path"][0] == str(course.resolve()) and "" not in info["sys_path"]
    assert not [p for p in info["sys_path"] if str(tmp_path / "juez") in p or "entregado" in p]
    assert info["cwd"] == str((tmp_path / "juez").resolve()) and info["flags"] == [1, 1, 1, True]
    assert "123456789" not in info["cmdline"] and info["request"]["semilla"] == 123456789
    assert judge_command(course, Path("p"), Path("s"))[1:2] == ["-I"]


@pytest.mark.parametrize("isolate", [pytest.param(True, marks=needs_bwrap), False], ids=["caja", "sin_caja"])
def test_a_judge_that_hangs_crashes_or_lies_costs_only_its_row(tmp_path, fake_course, isolate):
    cases = {
        "se cuelga": ("import time; time.sleep(60)", "el juez se detuvo: superó el tiempo límite (2 s)"),
        "memoria": ("import time\nhog = [bytearray(20 << 20) for _ in range(20)]\ntime.sleep(60)",
                    "el juez se detuvo: superó el límite de memoria (200 MiB)"),
        "falla": ("raise RuntimeError('lo entregado rompió algo')", ("el juez falló (RuntimeError: lo entregado "
                                                                    "rompió algo)")),
        "basura": (GOOD_VERDICTS + "open(args['--salida'], 'w').write('[1, 2')",
                   "el juez devolvió veredictos que no son JSON"),
        "forma": (GOOD_VERDICTS + "verdicts['load_adapter']['puntos'] = '1'\n"
                                  "open(args['--salida'], 'w').write(json.dumps(verdicts))",
                  "el juez devolvió veredictos con una forma desconocida"),
        "enlace": (GOOD_VERDICTS + "os.symlink('/etc/passwd', args['--salida'])",
                   "el juez no devolvió veredictos (veredictos.json es un enlace simbólico"),
        "nada": ("pass", "el juez no devolvió veredictos (no encuentro veredictos.json)"),
    }
    for n, (name, (code, says)) in enumerate(cases.items()):
        folder = tmp_path / str(n)
        folder.mkdir()
        start = time.monotonic()
        with pytest.raises(JudgeFailed) as failed:
            judged(folder, fake_course(code), isolate, timeout=2 if name == "se cuelga" else 20, memory=200 << 20)
        assert says in str(failed.value) and time.monotonic() - start < 20
