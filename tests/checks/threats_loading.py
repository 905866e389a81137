"""Casos de la matriz de amenazas para ``load_lora_adapter_example`` (forma: ``tests/checks/test_threat_matrix.py``).

Un caso por cada propiedad que la tabla «Qué certifica cada punto» del README afirma de ``load_adapter``,
``switch_adapters``, ``unload_adapters`` y ``merge_adapter``. Cada uno parte de lo que entregaría la solución y
cambia una sola cosa; las comprobaciones miden en orden y cada propiedad tiene su mensaje, así que verlo en el
veredicto dice que lo anterior pasó. ``switch_adapters`` y ``merge_adapter`` se juzgan con una variante
(``VARIANT``), como al corregir: lo honrado se construye con ella y el juez la recibe. Los objetos caros se
construyen una vez por sesión (``functools.cache``) y no se modifican: cada caso que cambia algo usa una copia.
"""

from __future__ import annotations

import contextlib
import functools
import random
import tempfile
from pathlib import Path

from tests.checks.test_threat_matrix import Case

NOTEBOOK = "load_lora_adapter_example"
VARIANT = "a" * 64  # cualquier ficha; sus sorteos se usan abajo tal como salen (colleague_draw, mystery_sources)
N_MYSTERY = 24
_KEEP: list = []  # carpetas temporales que viven lo que la sesión

PROPERTIES = {
    "load_adapter": ("PeftModel", "nombre iso", "pesos de adapters/iso", "sin fusionar", "sin desactivar",
                     "base sin ΔW sumado", "responde en ISO"),
    "switch_adapters": ("los tres nombres", "adaptadores de esta variante", "columnas regeneradas",
                        "formato medido"),
    "unload_adapters": ("sin PeftModel", "sin capas LoRA", "pesos del base"),
    "merge_adapter": ("firma de compañero", "firmas de esta variante", "historias de esta variante",
                      "diagnóstico medido", "adapter_model ISO sin fusionar", "merged = base + ΔW",
                      "logits ≤ 0,05", "carpeta recargable", "tokenizador", "safetensors"),
}


# --- objetos honestos, compartidos ----------------------------------------------------------------------

def _fresh():
    from helpers.model import load_base_model

    return load_base_model("cpu")[0]


def _peft(fmt: str, name: str = "iso", base=None):
    from peft import PeftModel

    from helpers.shipped import adapter_dir

    return PeftModel.from_pretrained(base if base is not None else _fresh(), str(adapter_dir(fmt)), adapter_name=name)


def _broken_norm(model):
    """``model`` con la norma final cambiada de signo: las capas adaptadas intactas, las respuestas no."""
    import torch

    with torch.no_grad():
        dict(model.named_parameters())[next(n for n, _ in model.named_parameters() if n.endswith("norm.weight")
                                            and "layers" not in n)].neg_()
    return model


@contextlib.contextmanager
def _variant_outputs():
    """La variante del caso y una carpeta de salidas propia (``mystery_dirs`` escribe ahí sus carpetas)."""
    import pytest

    from helpers.paths import OUTPUT_ENV
    from helpers.shipped import using_variant

    with tempfile.TemporaryDirectory(prefix="amenazas-carga-") as out, using_variant(VARIANT), \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv(OUTPUT_ENV, out)
        yield


def _load_mystery(folders: dict):
    from peft import PeftModel

    model = PeftModel.from_pretrained(_fresh(), folders["x"], adapter_name="x")
    for name in ("y", "z"):
        model.load_adapter(folders[name], adapter_name=name)
    return model


def _key(n: int = N_MYSTERY) -> dict:
    from helpers.data import SHIPPED_FORMATS, answer, make_splits

    return {fmt: [answer(r) for r in make_splits(fmt)["test"].select(range(n))] for fmt in SHIPPED_FORMATS}


@functools.cache
def _mystery():
    """Lo que hace la solución con la variante: los tres en un PeftModel, sus columnas y el formato de cada uno."""
    from helpers.data import SHIPPED_FORMATS, make_splits
    from helpers.evaluation import exact_match, generate
    from helpers.model import load_tokenizer
    from helpers.shipped import mystery_dirs

    with _variant_outputs():
        model = _load_mystery(mystery_dirs())
    prompts = [r["prompt"] for r in make_splits("iso")["test"].select(range(N_MYSTERY))]
    columns = {}
    for name in ("x", "y", "z"):
        model.set_adapter(name)
        columns[name] = generate(model, load_tokenizer(), prompts)
    key = _key()
    formats = {n: max(SHIPPED_FORMATS, key=lambda f: exact_match(c, key[f])) for n, c in columns.items()}
    return model, columns, formats


def _switch(**change) -> dict:
    model, columns, formats = _mystery()
    return {"mystery": model, "answers_by_adapter": columns, "format_of": formats, **change}


@functools.cache
def _merge_honest():
    """Los fusionados de la variante, su diagnóstico medido, la copia sin fusionar, la fusión y su carpeta."""
    from helpers.colleagues import colleague_draw, colleague_merges
    from helpers.model import load_tokenizer
    from helpers.shipped import using_variant

    with using_variant(VARIANT):
        broken = colleague_merges()
    _KEEP.append(tempfile.TemporaryDirectory(prefix="amenazas-fusionado-"))  # se borra al salir
    folder = Path(_KEEP[-1].name)
    merged = _peft("iso", "default").merge_and_unload()
    merged.save_pretrained(folder)
    load_tokenizer().save_pretrained(folder)
    stories = {name: one["story"] for name, one in colleague_draw(VARIANT).items()}
    return {"broken": broken, "diagnosis": stories, "adapter_model": _peft("iso", "default"), "merged": merged,
            "merged_dir": folder}


def _merge(**change) -> dict:
    return {**_merge_honest(), **change}


def _signed(story_of, nonce_of) -> dict:
    """Tres fusionados hechos con ``colleague_merge``: historia y firma elegidas por compañero."""
    from helpers.colleagues import colleague_draw, colleague_merge
    from helpers.shipped import COLLEAGUES

    drawn = colleague_draw(VARIANT)
    return {name: colleague_merge(story_of(name), drawn={**drawn[name], "story": story_of(name),
                                                         "nonce": nonce_of(name)}) for name in COLLEAGUES}


def _drawn(name: str) -> dict:
    from helpers.colleagues import colleague_draw

    return colleague_draw(VARIANT)[name]


def _folder_with(work: Path, *, drop: tuple = (), add=None) -> Path:
    """Una copia de la carpeta honrada sin los archivos ``drop`` y con lo que escriba ``add(carpeta)``."""
    import shutil

    target = work / "fusionado"
    shutil.copytree(_merge_honest()["merged_dir"], target, ignore=lambda _, names: [n for n in names if n in drop])
    if add is not None:
        add(target)
    return target


def _other_model_folder(work: Path) -> Path:
    """La carpeta con el modelo base guardado en vez de la fusión (y su tokenizador)."""
    from helpers.model import load_tokenizer

    target = work / "otro"
    _fresh().save_pretrained(target)
    load_tokenizer().save_pretrained(target)
    return target


def _pickle(folder: Path) -> None:
    import torch

    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")


def _merged_then_loaded():
    base = _fresh()
    _peft("iso", base=base).merge_and_unload()  # `base` queda con ΔW sumado, en su sitio
    return _peft("iso", base=base)


def _disabled():
    model = _peft("iso")
    model.base_model.disable_adapter_layers()  # lo que deja a medias salir mal de `disable_adapter()`
    return model


def _merged_flag():
    model = _peft("iso")
    model.merge_adapter()
    return model


def _nudged_iso():
    """El ISO con una entrada de un B cambiada 10⁻³: responde igual, pero sus pesos ya no son los publicados."""
    import torch

    model = _peft("iso")
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n)[0, 0] += 1e-3
    return model


def _physical_mystery():
    """Los tres de las carpetas publicadas: lo que carga un kernel que borra o cambia su variante."""
    from helpers.shipped import MYSTERY_NAMES, mystery_dir

    return _load_mystery({name: str(mystery_dir(name)) for name in MYSTERY_NAMES})


def _two_mystery():
    import copy

    model, _, _ = _mystery()
    two = copy.deepcopy(model)
    two.delete_adapter("z")
    return two


def _wrong_format():
    _, _, formats = _mystery()
    return {**formats, "x": next(f for f in ("iso", "us", "en") if f != formats["x"])}


def _wrong_diagnosis():
    """Ana «dos_veces»: ni su historia ni un desplazamiento de ella (para que el mensaje sea el general)."""
    stories = dict(_merge_honest()["diagnosis"])
    stories["ana"] = next(s for s in ("dos_veces", "sin_escala", "bien") if s != stories["ana"]
                          and (stories["ana"], s) not in (("bien", "sin_fusionar"), ("dos_veces", "bien"),
                                                          ("sin_escala", "otro_adaptador"),
                                                          ("sin_fusionar", "otro_adaptador"), ("sin_escala", "bien")))
    return stories


def _case(exercise, prop, build, refusal, **options) -> Case:
    return Case(notebook=NOTEBOOK, exercise=exercise, property=prop, build=build, refusal=refusal, **options)


CASES = [
    # 🐢 load_adapter: cada una, sobre el ISO bien cargado con el nombre "iso"
    _case("load_adapter", "PeftModel", lambda work: {"model": _fresh()}, "es el modelo base"),
    _case("load_adapter", "nombre iso", lambda work: {"model": _peft("iso", "default")}, "con el nombre 'default'"),
    _case("load_adapter", "pesos de adapters/iso", lambda work: {"model": _nudged_iso()},
          "no coincide con ninguno de `adapters/`"),
    _case("load_adapter", "sin fusionar", lambda work: {"model": _merged_flag()}, "ya fusionado"),
    _case("load_adapter", "sin desactivar", lambda work: {"model": _disabled()}, "desactivados"),
    _case("load_adapter", "base sin ΔW sumado", lambda work: {"model": _merged_then_loaded()}, "ya llevan sumado"),
    _case("load_adapter", "responde en ISO", lambda work: {"model": _peft("iso", base=_broken_norm(_fresh()))},
          "solo responde", slow=True),
    # 🦁 switch_adapters, con la variante
    _case("switch_adapters", "los tres nombres", lambda work: _switch(mystery=_two_mystery()), "faltan",
          slow=True, variant=VARIANT),
    _case("switch_adapters", "adaptadores de esta variante", lambda work: _switch(mystery=_physical_mystery()),
          "de esta ejecución", slow=True, variant=VARIANT),
    _case("switch_adapters", "columnas regeneradas",
          lambda work: _switch(answers_by_adapter={n: _key()[f] for n, f in _mystery()[2].items()}),
          "es la clave de respuestas", slow=True, variant=VARIANT),
    _case("switch_adapters", "formato medido", lambda work: _switch(format_of=_wrong_format()),
          "no produce el formato", slow=True, variant=VARIANT),
    # 🐢 unload_adapters
    _case("unload_adapters", "sin PeftModel", lambda work: {"restored": _peft("iso")}, "todavía es un PeftModel"),
    _case("unload_adapters", "sin capas LoRA", lambda work: {"restored": _peft("iso").get_base_model()},
          "no son del modelo base del curso"),  # como datos, las capas LoRA de un modelo sin PEFT son pesos ajenos
    _case("unload_adapters", "pesos del base", lambda work: {"restored": _peft("iso").merge_and_unload()},
          "llevan sumado el ΔW del ISO"),
    # 🐕 merge_adapter, con la variante
    _case("merge_adapter", "firma de compañero",
          lambda work: _merge(broken={n: _fresh() for n in ("ana", "bruno", "carla")},
                              diagnosis=dict.fromkeys(("ana", "bruno", "carla"), "sin_fusionar")),
          "no lleva la firma", slow=True, variant=VARIANT),
    _case("merge_adapter", "firmas de esta variante",
          lambda work: _merge(broken=_signed(lambda n: _drawn(n)["story"], lambda n: random.Random(n).getrandbits(32))),
          "no la de esta ejecución", slow=True, variant=VARIANT),
    _case("merge_adapter", "historias de esta variante",
          lambda work: _merge(broken=_signed(lambda n: "bien", lambda n: _drawn(n)["nonce"]),
                              diagnosis=dict.fromkeys(("ana", "bruno", "carla"), "bien")),
          "ya no son los que te pasó", slow=True, variant=VARIANT),
    _case("merge_adapter", "diagnóstico medido", lambda work: _merge(diagnosis=_wrong_diagnosis()),
          "no encajan con esa historia", slow=True, variant=VARIANT),
    _case("merge_adapter", "adapter_model ISO sin fusionar", lambda work: _merge(adapter_model=_peft("us", "default")),
          "no es el de `adapters/iso`", slow=True, variant=VARIANT),
    _case("merge_adapter", "merged = base + ΔW", lambda work: _merge(merged=_peft("iso").unload()),
          "no está fusionado", slow=True, variant=VARIANT),
    _case("merge_adapter", "logits ≤ 0,05",
          lambda work: _merge(merged=_broken_norm(_peft("iso", "default").merge_and_unload())),
          "no se comporta como el adaptador ISO", slow=True, variant=VARIANT),
    _case("merge_adapter", "carpeta recargable", lambda work: _merge(merged_dir=_other_model_folder(work)),
          "no es `merged`", slow=True, variant=VARIANT),
    _case("merge_adapter", "tokenizador",
          lambda work: _merge(merged_dir=_folder_with(work, drop=("tokenizer.json", "tokenizer_config.json"))),
          "falta el tokenizador", slow=True, variant=VARIANT),
    _case("merge_adapter", "safetensors", lambda work: _merge(merged_dir=_folder_with(work, add=_pickle)),
          "pytorch_model.bin no es un archivo que la corrección admita", slow=True, variant=VARIANT),
]
