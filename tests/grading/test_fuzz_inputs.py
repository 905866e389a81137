"""Issue 25, clase 5: la recogida, la lista blanca y lo que lee el juez, con entradas al azar (Hypothesis).

Árboles al azar (profundidad, nombres con caracteres de control, unicode y ``..``, tamaños, archivos
dispersos, enlaces, tuberías), JSON con anidamiento y tamaño al azar, cabeceras de safetensors y carpetas
guardadas. La propiedad es siempre la misma: quien corrige acepta o rechaza con ``Refused`` (un motivo),
nunca falla de otra forma, nunca sigue un enlace, nunca espera a una tubería, nunca pasa de sus topes, y lo
que deja una entrega se borra entero.

En ``make test`` corre una tanda corta y fija (``derandomize``); ``make fuzz`` corre miles de casos nuevos
(``CURSO_LORA_FUZZ`` = casos por prueba).
"""

import json
import os
import stat
import struct
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.checks import handover, whitelist
from helpers.checks.safe_files import Refused, remove_tree
from helpers.grading import sandbox
from helpers.grading.collect import collect

FUZZ = int(os.environ.get("CURSO_LORA_FUZZ", "0"))
FUZZED = settings(max_examples=FUZZ or 15, derandomize=not FUZZ, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECRET = "SECRETO-DE-FUERA"

# --- estrategias ----------------------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(["..", ".", "manifiesto.json", "objeto.json", "valor.json", "a", "\x1b[2J", "\r", "ñ",
                     "model.safetensors", "config.json", "x" * 255]),
    st.text(st.characters(exclude_characters="/\x00", exclude_categories=["Cs"]), min_size=1, max_size=12),
).filter(lambda name: name not in (".", "..") and len(name.encode()) <= 255)


def node(children):
    return st.one_of(
        st.tuples(st.just("archivo"), st.integers(0, 3000)),
        st.tuples(st.just("disperso"), st.integers(1 << 20, 1 << 32)),
        st.tuples(st.just("enlace"), st.sampled_from(["fuera", "/etc/passwd", "..", "a", "bucle"])),
        st.tuples(st.just("tuberia")),
        st.tuples(st.just("hondo"), st.integers(1, 40)),
        st.tuples(st.just("carpeta"), st.dictionaries(names, children, max_size=4)),
    )


trees = st.dictionaries(names, st.recursive(st.tuples(st.just("archivo"), st.integers(0, 100)), node,
                                            max_leaves=12), max_size=5)


def build(folder: Path, tree: dict, outside: Path) -> None:
    """Escribe ``tree`` en ``folder`` (iterativo: los niveles «hondo» no pasan por la pila de Python)."""
    pending = [(folder, tree)]
    while pending:
        where, items = pending.pop()
        where.mkdir(parents=True, exist_ok=True)
        for name, (kind, *rest) in items.items():
            path = where / name
            if kind == "archivo":
                path.write_bytes(os.urandom(rest[0]))
            elif kind == "disperso":
                with open(path, "wb") as sparse:
                    sparse.truncate(rest[0])
            elif kind == "enlace":
                path.symlink_to(outside if rest[0] == "fuera" else path if rest[0] == "bucle" else rest[0])
            elif kind == "tuberia":
                os.mkfifo(path)
            elif kind == "hondo":
                path.mkdir()
                fd = os.open(path, os.O_RDONLY)
                for _ in range(rest[0]):
                    os.mkdir("d", dir_fd=fd)
                    inner = os.open("d", os.O_RDONLY, dir_fd=fd)
                    os.close(fd)
                    fd = inner
                os.close(fd)
            else:
                pending.append((path, rest[0]))


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuera")
    (folder / "secreto.txt").write_text(SECRET)
    return folder


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="curso-lora-fuzz-"))


def walk(folder: Path):
    """Todas las entradas bajo ``folder``, sin recursión ni seguir enlaces (para comprobar una copia)."""
    pending = [folder]
    while pending:
        for entry in os.scandir(pending.pop()):
            yield entry
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))


# --- recoger --------------------------------------------------------------------------------------------

@FUZZED
@given(tree=trees, manifest=st.sampled_from(["bueno", "ninguno", "roto", "json_hondo"]), budget=st.integers(0, 1 << 16))
def test_fuzz_collect_accepts_or_refuses_and_never_follows_blocks_or_overspends(outside, tree, manifest, budget):
    root = scratch()
    try:
        exercise = root / "entrega" / "entregado" / "ejercicio"
        if manifest != "ninguno":  # el manifiesto lo escribe la prueba (en una tubería, esperaría para siempre)
            tree.pop(handover.MANIFEST, None)
        build(exercise, tree, outside)
        if manifest == "bueno":
            files = [Path(e.path) for e in walk(exercise) if e.is_file(follow_symlinks=False)]
            listing = {}
            for path in files:
                listing[path.relative_to(exercise).as_posix()] = handover._sha256(path)
            (exercise / handover.MANIFEST).write_text(json.dumps(listing))
        elif manifest == "roto":
            (exercise / handover.MANIFEST).write_bytes(os.urandom(64))
        elif manifest == "json_hondo":
            (exercise / handover.MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
        start = time.monotonic()
        result = collect(root / "entrega", root / "recogido", ["ejercicio"], total_bytes=budget)
        assert time.monotonic() - start < 10
        assert all(isinstance(reason, str) for reason in result.reasons)
        copied = list(walk(result.handed_over))
        assert all(e.is_dir(follow_symlinks=False) or stat.S_ISREG(e.stat(follow_symlinks=False).st_mode)
                   for e in copied)
        paid = sum(4096 + e.stat(follow_symlinks=False).st_size for e in copied) - 4096  # la del ejercicio
        assert not copied or paid <= budget
        assert all(SECRET.encode() not in Path(e.path).read_bytes() for e in copied if e.is_file())
    finally:
        remove_tree(root)
        assert not root.exists()


@FUZZED
@given(tree=trees)
def test_fuzz_the_disk_walk_and_the_removal_need_no_recursion_and_touch_nothing_outside(outside, tree):
    root = scratch()
    build(root / "entrega", tree, outside)
    used, entries, _ = sandbox._usage((root / "entrega",), max_entries=10_000, max_depth=16)
    assert used >= 4096 * min(entries, 10_000) and entries >= len(tree)
    remove_tree(root)
    assert not root.exists() and (outside / "secreto.txt").read_text() == SECRET


# --- JSON y lista blanca --------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
configs = st.dictionaries(st.sampled_from(sorted({*whitelist.CHECKED, "peft_type", "megatron_core", "auto_map",
                                                  "modules_to_save", "rank_pattern", "x"})), json_values, max_size=6)


@FUZZED
@given(value=json_values, depth=st.integers(0, 200_000), extra=st.binary(max_size=64))
def test_fuzz_json_from_a_submission_is_a_value_or_a_refusal(value, depth, extra):
    root = scratch()
    try:
        raw = ("[" * depth).encode() + json.dumps(value).encode() + ("]" * depth).encode()
        for data in (raw, raw + extra, extra):
            (root / "x.json").write_bytes(data)
            try:
                whitelist.read_json(root / "x.json", cap=1 << 20)
            except Refused:
                pass
    finally:
        remove_tree(root)


@FUZZED
@given(config=configs, strict=st.booleans())
def test_fuzz_a_lora_config_is_clean_or_refused(config, strict):
    try:
        clean = whitelist.lora_config(config, strict=strict)
    except Refused:
        return
    assert set(clean) <= set(whitelist.CHECKED)
    assert not isinstance(clean.get("target_modules"), str) or clean["target_modules"] == "all-linear" or not strict


entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", 7, None]),
    "shape": st.one_of(st.lists(st.integers(-2, 600), max_size=5), st.none(), st.text(max_size=3)),
    "data_offsets": st.one_of(st.lists(st.integers(-10, 1 << 40), min_size=2, max_size=2), st.just("x")),
})
headers = st.dictionaries(st.one_of(st.sampled_from(["model.norm.weight", "__metadata__",
                                                     "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]),
                                    st.text(max_size=20)), st.one_of(entries, json_values), max_size=4)


@FUZZED
@given(header=headers, length=st.one_of(st.none(), st.integers(0, 1 << 63)), data=st.binary(max_size=5000))
def test_fuzz_safetensors_headers_are_checked_or_refused_without_allocating(header, length, data):
    root = scratch()
    try:
        raw = json.dumps(header).encode()
        (root / "x.safetensors").write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
        try:
            tensors = whitelist.safetensors_header(root / "x.safetensors")
        except Refused:
            return
        size = (root / "x.safetensors").stat().st_size
        assert all(isinstance(shape, tuple) for _, shape in tensors.values()) and size >= 8 + len(raw)
    finally:
        remove_tree(root)


folder_names = st.one_of(st.sampled_from(sorted(whitelist.FOLDER_FILES)), names,
                         st.sampled_from(["pytorch_model.bin", "model.pt", "x.dat", "model.gguf",
                                          "model-00001-of-00002.safetensors"]))
contents = st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200),
                     st.sampled_from([b"{}", b'{"weight_map": {"model.norm.weight": "../x.safetensors"}}',
                                      b'{"weight_map": {"model.norm.weight": "x.dat"}}',
                                      b'{"auto_map": {"AutoModel": "m.M"}}', b'{"tokenizer_file": "/etc/passwd"}']))


@FUZZED
@given(files=st.dictionaries(folder_names, contents, min_size=1, max_size=6))
def test_fuzz_a_saved_folder_passes_only_with_names_a_loader_may_open(files):
    root = scratch()
    try:
        folder = root / "carpeta"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        try:
            whitelist.check_folder(folder)
        except Refused:
            return
        for name in files:
            assert name in whitelist.FOLDER_FILES or whitelist.SHARD.fullmatch(name), name
            assert not name.endswith((*whitelist.PICKLE_SUFFIXES, ".dat", ".gguf")), name
    finally:
        remove_tree(root)
