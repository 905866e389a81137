"""Issue 25, clase 2: ningún cargador que llame el juez puede elegir un formato que la lista blanca no comprobó.

Cada carpeta guardada (``handover.Folder``) llega al juez por ``handover.refusals`` antes de que
``from_pretrained`` (modelo, tokenizador, configuración, adaptador) la vea: todo archivo que un cargador
podría abrir tiene un nombre de la lista blanca, es un nombre simple dentro de la carpeta y, si lleva pesos,
su cabecera de safetensors se comprueba. Aquí se prueba por el camino del juez (``refusals`` de
``merge_and_save`` y del OLoRA convertido), con la carpeta que deja un ``save_pretrained`` honrado.
"""

import json
import shutil
from pathlib import Path

import pytest

from helpers.checks import handover, whitelist
from helpers.checks.finetuning import merge_and_save
from helpers.checks.safe_files import Refused
from helpers.paths import COURSE_ROOT
from tests.grading.test_judge_inputs import safetensors

ISO = COURSE_ROOT / "adapters" / "iso"
NORM = {"model.norm.weight": {"dtype": "F32", "shape": [576], "data_offsets": [0, 2304]}}


@pytest.fixture
def merged(tmp_path):
    """Una carpeta como la de ``merged.save_pretrained`` + ``tokenizer.save_pretrained`` (pesos: uno pequeño)."""
    from helpers.model import base_model_path

    base, folder = Path(base_model_path()), tmp_path / "fusionado"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json",
                 "chat_template.jinja"):
        shutil.copyfile(base / name, folder / name)
    safetensors(folder / "model.safetensors", NORM, bytes(2304))
    return folder


def judged(tmp_path, folder) -> list[str]:
    """Lo que el juez dice de ``folder`` entregada como ``merged_dir`` de ``merge_and_save`` (antes de cargar)."""
    root = tmp_path / f"entregado_{len(list(tmp_path.iterdir()))}"
    handover.write("merge_and_save", {"merged_dir": folder}, merge_and_save.handover, root)
    return [r for r in handover.refusals("merge_and_save", merge_and_save.handover, root) if "merged_dir" in r]


def test_an_honest_saved_model_and_adapter_pass(tmp_path, merged):
    assert judged(tmp_path, merged) == []
    adapter = tmp_path / "adaptador"
    shutil.copytree(ISO, adapter)
    for name in ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja"):
        shutil.copyfile(merged / name, adapter / name)
    (adapter / "README.md").write_text("# adaptador\n")
    whitelist.check_folder(adapter)


def shard_index(folder, weight_map):
    (folder / "model.safetensors").unlink()
    safetensors(folder / "model-00001-of-00001.safetensors", NORM, bytes(2304))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 2304},
                                                                     "weight_map": weight_map}))


def test_a_sharded_model_passes_when_its_index_names_its_own_checked_shards(tmp_path, merged):
    shard_index(merged, {"model.norm.weight": "model-00001-of-00001.safetensors"})
    assert judged(tmp_path, merged) == []


@pytest.mark.parametrize("target, says", [
    ("pesos.dat", "pesos.dat"),  # el ejemplo de la revisión: torch.load (weights_only) lo habría cargado
    ("pytorch_model.bin", "pytorch_model.bin"),
    ("../model-00001-of-00001.safetensors", "no es un nombre simple"),
    ("/etc/passwd", "no es un nombre simple"),
    ("model-00002-of-00002.safetensors", "no está en la carpeta"),
])
def test_an_index_that_points_a_loader_elsewhere_is_refused(tmp_path, merged, target, says):
    shard_index(merged, {"model.norm.weight": target})
    if not target.startswith(("/", "..")) and not target.startswith("model-00002"):
        (merged / target).write_bytes(b"PK\x03\x04 un zip de torch.save")
    reasons = judged(tmp_path, merged)
    assert reasons and says in reasons[0], reasons


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "pesos.dat", "model.ckpt", "modelo.gguf",
                                  "training_args.bin", "tokenizer.model", "vocab.pkl", "custom.py",
                                  "model.safetensors.index.json.bak", "preprocessor_config.json"])
def test_a_file_no_loader_needs_is_refused_even_beside_safetensors(tmp_path, merged, name):
    (merged / name).write_bytes(b"PK\x03\x04 algo que un cargador podria elegir")
    reasons = judged(tmp_path, merged)
    assert reasons and name in reasons[0] and "no es un archivo que la corrección admita" in reasons[0], reasons


@pytest.mark.parametrize("change, says", [
    ({"tokenizer_file": "../../otro/tokenizer.json"}, "tokenizer_file"),
    ({"vocab_file": "/etc/passwd"}, "vocab_file"),
    ({"tokenizer_class": "PreTrainedTokenizerFast"}, "tokenizer_class"),
    ({"auto_map": {"AutoTokenizer": ["mio.Tok", None]}}, "auto_map"),
])
def test_a_tokenizer_config_cannot_name_files_or_classes(tmp_path, merged, change, says):
    config = json.loads((merged / "tokenizer_config.json").read_text())
    (merged / "tokenizer_config.json").write_text(json.dumps({**config, **change}))
    reasons = judged(tmp_path, merged)
    assert reasons and says in reasons[0], reasons


def test_a_generation_config_cannot_name_anything_either(tmp_path, merged):
    config = json.loads((merged / "generation_config.json").read_text())
    for change in ({"custom_generate": "mio/generate"}, {"assistant_model": "../otro"}, {"x": {"y": [{}]}}):
        (merged / "generation_config.json").write_text(json.dumps({**config, **change}))
        reasons = judged(tmp_path, merged)
        assert reasons and "generation_config.json" in reasons[0], reasons


def test_a_model_folder_with_an_adapter_config_is_refused(tmp_path, merged):
    """Con adapter_config.json, from_pretrained cargaría la base de ``base_model_name_or_path``: otra carpeta."""
    config = json.loads((ISO / "adapter_config.json").read_text())
    (merged / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/otra/base"}))
    shutil.copyfile(ISO / "adapter_model.safetensors", merged / "adapter_model.safetensors")
    reasons = judged(tmp_path, merged)
    assert reasons and "modelo y adaptador a la vez" in reasons[0], reasons


def test_an_adapter_folder_offers_peft_no_pickle(tmp_path):
    adapter = tmp_path / "adaptador"
    shutil.copytree(ISO, adapter)
    (adapter / "adapter_model.bin").write_bytes(b"PK\x03\x04")
    with pytest.raises(Refused, match="adapter_model.bin"):
        whitelist.check_folder(adapter)
    with pytest.raises(Refused, match="adapter_model.bin"):  # también en los adaptadores de un modelo entregado
        whitelist.check_adapter_folder(adapter, label="el adaptador 'iso'")
