"""Los objetos de un ejercicio, entregados como datos: del cuaderno que se corrige al proceso que corrige.

Durante la corrección (variable ``CURSO_LORA_HANDOVER`` = una carpeta), cada ``checks.X(...)`` escribe sus
argumentos en ``<carpeta>/<ejercicio>/<argumento>/`` con uno de estos formatos: pesos en safetensors,
carpetas copiadas, JSON. Nada de pickle. Quien corrige los carga en su propio proceso (``load``) y ejecuta
la misma función de comprobación sobre ellos.

Lo que escribe una entrega no es de fiar y no se trata como tal. Quien corrige, antes de cargar nada,
valida cada formato como datos (``validate``; ``refusals`` para un ejercicio entero): cada archivo se abre
sin seguir enlaces, solo si es un archivo normal y con tope de tamaño (``helpers.checks.safe_files``); las
configuraciones de LoRA pasan por una lista blanca y las cabeceras de safetensors se comprueban antes de
reservar memoria (``helpers.checks.whitelist``). Nada se carga con pickle ni ejecuta código. Lo que no
encaja llega a la comprobación como ``Unexpected``, que la comprobación rechaza como rechaza cualquier
respuesta equivocada. Los puntos salen de lo que el objeto hace, nunca de lo que dice de sí mismo.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

from . import whitelist
from .safe_files import Refused, sha256_regular

HANDOVER_ENV = "CURSO_LORA_HANDOVER"
MARKER = "objeto.json"  # en cada carpeta de argumento: qué formato es y qué tipo tenía el objeto
MANIFEST = "manifiesto.json"  # en cada carpeta de ejercicio: archivos y su SHA-256
MAX_FILE_BYTES = 2 * 2**30
MAX_MARKER_BYTES = 64 * 2**10
ADAPTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
MAX_ADAPTERS = 16


class Unexpected:
    """Lo que llega cuando lo entregado no es un objeto del formato esperado (la comprobación lo rechaza)."""

    def __init__(self, description: str):
        self.description = description

    def __repr__(self) -> str:
        return self.description


class Format:
    """Cómo viaja un tipo de objeto: ``dump`` en el cuaderno, ``load`` en quien corrige."""

    name = "?"

    def dump(self, value, folder: Path) -> None:
        raise NotImplementedError

    def load(self, folder: Path):
        raise NotImplementedError

    def validate(self, folder: Path) -> None:
        """Comprueba lo entregado como datos, sin cargar nada grande; ``Refused`` con el motivo si no vale."""


# ---------------------------------------------------------------- JSON
def _encode(value):
    """Valor JSON etiquetado: conserva claves no textuales (``{2: ...}``) y convierte tensores de un número."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # tensor o escalar de numpy
        return _encode(value.item())
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(type(value).__name__)


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        if set(value) == {"dict"} and isinstance(value["dict"], list):
            pairs = [_decode(pair) for pair in value["dict"]]
            return {_hashable(k): v for k, v in pairs}
        raise ValueError("JSON con una forma desconocida")
    return value


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


class Value(Format):
    """Números, textos, listas y diccionarios de ellos (JSON)."""

    name = "valor"

    def dump(self, value, folder):
        (folder / "valor.json").write_text(json.dumps(_encode(value)), encoding="utf-8")

    def load(self, folder):
        return _json(folder / "valor.json")

    def validate(self, folder):
        _json(folder / "valor.json")


class PeftConfig(Format):
    """Una configuración de PEFT (``LoraConfig``...): viaja su ``to_dict()`` en JSON."""

    name = "configuración"

    def dump(self, value, folder):
        from peft import PeftConfig as Base

        if not isinstance(value, Base):
            raise TypeError(type(value).__name__)
        (folder / "config.json").write_text(json.dumps(_encode(whitelist.plain(value.to_dict()))), encoding="utf-8")

    def load(self, folder):
        from peft import LoraConfig

        data = _json(folder / "config.json")
        if isinstance(data, dict) and data.get("peft_type") != "LORA":
            return Unexpected(f"una configuración {data.get('peft_type')}, no una LoraConfig")
        return LoraConfig(**whitelist.lora_config(data, strict=False))

    def validate(self, folder):
        data = _json(folder / "config.json")
        if isinstance(data, dict) and data.get("peft_type") != "LORA":
            return  # llega como Unexpected: la comprobación dice que no es una LoraConfig
        whitelist.lora_config(data, strict=False)


# ---------------------------------------------------------------- carpetas
class Folder(Format):
    """Una carpeta guardada por el alumno: se copian sus archivos normales (no enlaces ni subcarpetas)."""

    name = "carpeta"

    def dump(self, value, folder):
        source = Path(value)
        if not source.is_dir():
            raise TypeError(f"la carpeta {source.name!r} no existe")
        target = folder / "archivos"
        target.mkdir()
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.is_symlink():
                shutil.copyfile(path, target / path.name)

    def load(self, folder):
        self.validate(folder)
        return folder / "archivos"

    def validate(self, folder):
        whitelist.check_folder(folder / "archivos", label="la carpeta")


# ---------------------------------------------------------------- modelos
def _plain_name(name: str) -> str:
    """Nombre de un parámetro como en el modelo sin envolver (sin ``base_model.model.`` ni ``base_layer``)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _base_tensor(files: dict, key: str):
    from safetensors import safe_open

    if key not in files:
        return None
    with safe_open(files[key], "pt") as f:
        return f.get_tensor(key)


class Model(Format):
    """Un modelo: los pesos que difieren del modelo base, y sus adaptadores LoRA con ``save_pretrained``."""

    name = "modelo"

    def dump(self, value, folder):
        import torch
        from safetensors.torch import save_file

        from .models import base_checkpoint, is_peft_model, lora_layers

        if not isinstance(value, torch.nn.Module):
            raise TypeError(type(value).__name__)
        state = {"peft": is_peft_model(value), "dtype": str(next(value.parameters()).dtype)}
        if state["peft"]:
            names = list(value.peft_config)
            value.save_pretrained(folder / "adaptadores", selected_adapters=names, safe_serialization=True,
                                 save_embedding_layers=False)  # sin consultar el Hub
            layers = [module for _, module in lora_layers(value)]
            state.update(adapters=names, active=value.active_adapter,
                         merged=any(m.merged for m in layers),
                         disabled=any(m.disable_adapters for m in layers))
        files = base_checkpoint() or {}
        changed, unknown = {}, []
        for name, param in value.named_parameters():
            if state["peft"] and "lora_" in name:
                continue
            key = _plain_name(name)
            base = _base_tensor(files, key)
            tensor = param.detach().cpu()
            if base is None:
                unknown.append(key)
            elif base.shape != tensor.shape or not torch.equal(tensor, base.to(tensor.dtype)):
                changed[key] = tensor.contiguous()
        state["unknown"] = unknown[:20]
        save_file(changed, str(folder / "pesos.safetensors"))
        (folder / "modelo.json").write_text(json.dumps(state), encoding="utf-8")

    def validate(self, folder) -> dict:
        """modelo.json con sus tipos, pesos cambiados del modelo base y adaptadores, antes de cargar nada.

        Devuelve la configuración validada de cada adaptador: lo único de ellos que verá PEFT.
        """
        state = self._state(folder)
        whitelist.check_base_file(folder / "pesos.safetensors", label="pesos.safetensors")
        return {name: whitelist.check_adapter_folder(self._adapter_dir(folder, name), label=f"el adaptador '{name}'")
                for name in (state["adapters"] if state["peft"] else ())}

    @staticmethod
    def _state(folder) -> dict:
        state = _json(folder / "modelo.json", cap=MAX_MARKER_BYTES, tagged=False)
        whitelist.refuse(isinstance(state, dict), "modelo.json no es un diccionario")
        state = {"peft": False, "adapters": [], "active": None, "merged": False, "disabled": False, "unknown": [],
                 **state}
        for flag in ("peft", "merged", "disabled"):
            whitelist.refuse(isinstance(state[flag], bool), f"modelo.json: {flag} no es verdadero o falso")
        adapters, unknown = state["adapters"], state["unknown"]
        whitelist.refuse(isinstance(unknown, list), "modelo.json: unknown no es una lista")
        whitelist.refuse(isinstance(adapters, list) and len(adapters) <= MAX_ADAPTERS and len(set(map(str, adapters)))
                         == len(adapters), f"modelo.json: adapters no es una lista de hasta {MAX_ADAPTERS} nombres")
        for name in adapters:
            whitelist.refuse(isinstance(name, str) and ADAPTER_NAME.fullmatch(name),
                             f"modelo.json: {str(name)[:40]!r} no es un nombre de adaptador simple")
        return state

    @staticmethod
    def _adapter_dir(folder: Path, name: str) -> Path:
        return folder / "adaptadores" / ("" if name == "default" else name)

    def load(self, folder):
        import torch
        from peft import LoraConfig, PeftModel
        from safetensors.torch import load_file

        state = self._state(folder)
        if state["unknown"]:
            return Unexpected(f"un modelo con pesos que no son del modelo base del curso ({str(state['unknown'][0])[:80]})")
        if state["merged"]:
            return Unexpected("un PeftModel con el adaptador ya fusionado (merge_adapter)")
        if state["disabled"]:
            return Unexpected("un PeftModel con los adaptadores desactivados")
        configs = self.validate(folder)  # todo, antes de reservar memoria para nada
        from ..model import fresh_base

        changed = load_file(str(folder / "pesos.safetensors"))
        model = fresh_base()
        params = dict(model.named_parameters())
        for key, tensor in changed.items():
            if key not in params or params[key].shape != tensor.shape:
                return Unexpected(f"un modelo con un peso que no encaja en el modelo base ({key})")
        with torch.no_grad():
            for key, tensor in changed.items():
                params[key].copy_(tensor.to(params[key].dtype))
        if not state["peft"]:
            return model
        adapters = state["adapters"]
        if not adapters:
            return Unexpected("un PeftModel sin adaptadores")
        for number, name in enumerate(adapters):
            path, clean = self._adapter_dir(folder, name), configs[name]
            init = clean.get("init_lora_weights", True)
            # PEFT recibe solo la configuración validada (no relee adapter_config.json); los pesos vienen del
            # archivo: no volver a inicializar (OLoRA, PiSSA)
            config = LoraConfig(**{**clean, "init_lora_weights": True})
            if number == 0:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name, config=config)
            else:  # con el adaptador ya añadido, load_adapter no relee la configuración del disco
                config.inference_mode = True
                model.add_adapter(name, config)
                model.load_adapter(str(path), adapter_name=name)
            model.peft_config[name].init_lora_weights = init
        model.set_adapter(state["active"] if isinstance(state["active"], str) and state["active"] in adapters
                          else adapters[0])
        model.eval()
        return model


class Trainer(Format):
    """Un ``Trainer`` de TRL: su modelo (formato ``Model``), su historial y los pasos que dio su optimizador.

    Lo que cuenta para los puntos sale de lo que el entrenamiento dejó (``optimizer_steps``, el historial
    ``log_history`` con la tasa y los tokens de cada paso, los pesos); ``args`` (lo que se pidió en
    ``SFTConfig``) viaja solo para explicar un fallo al alumno.
    """

    name = "entrenador"
    ARGS = ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
            "lr_scheduler_type", "seed", "output_dir")

    def dump(self, value, folder):
        model, args, state = (getattr(value, n, None) for n in ("model", "args", "state"))
        if model is None or args is None or state is None:
            raise TypeError(type(value).__name__)
        (folder / "modelo").mkdir()
        Model().dump(model, folder / "modelo")
        record = {"args": {name: getattr(args, name, None) for name in self.ARGS},
                  "state": {"global_step": state.global_step, "log_history": state.log_history},
                  "optimizer_steps": optimizer_steps(value),
                  "ref_model": getattr(value, "ref_model", None) is not None,  # DPO: ¿una segunda copia?
                  "train_rows": len(getattr(value, "train_dataset", None) or [])}
        (folder / "entrenador.json").write_text(json.dumps(_encode(record)), encoding="utf-8")

    def validate(self, folder):
        self._record(folder)
        Model().validate(folder / "modelo")

    def _record(self, folder) -> dict:
        record = _json(folder / "entrenador.json")
        refuse = whitelist.refuse
        refuse(isinstance(record, dict) and isinstance(record.get("args"), dict)
               and isinstance(record.get("state"), dict), "entrenador.json no tiene la forma esperada")
        refuse(set(record["args"]) <= set(self.ARGS), "entrenador.json: argumentos que no se piden")
        state = record["state"]
        refuse(set(state) == {"global_step", "log_history"} and _integer(state["global_step"])
               and isinstance(state["log_history"], list) and all(isinstance(e, dict) for e in state["log_history"]),
               "entrenador.json: historial con una forma desconocida")
        refuse(record.get("optimizer_steps") is None or _integer(record["optimizer_steps"]),
               "entrenador.json: optimizer_steps no es un entero")
        refuse(_integer(record.get("train_rows", 0)) and isinstance(record.get("ref_model", False), bool),
               "entrenador.json: train_rows o ref_model con un tipo inesperado")
        return record

    def load(self, folder):
        record = self._record(folder)
        model = Model().load(folder / "modelo")
        if isinstance(model, Unexpected):
            return model
        return SimpleNamespace(model=model, args=SimpleNamespace(**record["args"]),
                               state=SimpleNamespace(**record["state"]), train_rows=record.get("train_rows", 0),
                               optimizer_steps=record.get("optimizer_steps"), processing_class=None,
                               ref_model=REF_MODEL if record.get("ref_model") else None)


REF_MODEL = Unexpected("un modelo de referencia aparte (ref_model)")


def optimizer_steps(trainer) -> int | None:
    """Cuántos pasos dio de verdad el optimizador de ``trainer`` (el contador de Adam); None si no tiene.

    En la corrección, el trainer reconstruido trae el número en ``optimizer_steps``.
    """
    if hasattr(trainer, "optimizer_steps") and not hasattr(trainer, "optimizer"):
        return trainer.optimizer_steps
    optimizer = getattr(trainer, "optimizer", None)
    state = getattr(optimizer, "state", None)
    if not state:
        return None if optimizer is None else 0
    steps = [value["step"] for value in state.values() if isinstance(value, dict) and "step" in value]
    return int(max(float(step) for step in steps)) if steps else 0


class Pipeline(Format):
    """Un ``pipeline`` de transformers: viaja su modelo; quien corrige monta un pipeline nuevo con él."""

    name = "pipeline"

    def dump(self, value, folder):
        model = getattr(value, "model", None)
        if model is None or not callable(value):
            raise TypeError(type(value).__name__)
        (folder / "modelo").mkdir()
        Model().dump(model, folder / "modelo")
        (folder / "pipeline.json").write_text(json.dumps({"task": getattr(value, "task", None)}), encoding="utf-8")

    def load(self, folder):
        from transformers import pipeline

        from ..model import load_tokenizer

        task = self._task(folder)
        model = Model().load(folder / "modelo")
        if isinstance(model, Unexpected):
            return model
        if task != "text-generation":
            return Unexpected(f"un pipeline de la tarea {task!r}, no 'text-generation'")
        return pipeline("text-generation", model=model, tokenizer=load_tokenizer())

    def validate(self, folder):
        self._task(folder)
        Model().validate(folder / "modelo")

    @staticmethod
    def _task(folder):
        record = _json(folder / "pipeline.json", cap=MAX_MARKER_BYTES, tagged=False)
        whitelist.refuse(isinstance(record, dict) and (record.get("task") is None or isinstance(record["task"], str)),
                         "pipeline.json no tiene la forma esperada")
        return record.get("task")


class Mapping(Format):
    """Un diccionario ``{clave: objeto}`` (p. ej. ``{rango: trainer}``): cada valor viaja con ``inner``."""

    name = "diccionario"
    MAX_ENTRIES = 16

    def __init__(self, inner: Format):
        self.inner = inner
        self.name = f"diccionario de {inner.name}"

    def dump(self, value, folder):
        if not isinstance(value, dict) or len(value) > self.MAX_ENTRIES:
            raise TypeError(type(value).__name__)
        for number, item in enumerate(value.values()):
            (folder / str(number)).mkdir()
            self.inner.dump(item, folder / str(number))
        (folder / "claves.json").write_text(json.dumps(_encode(list(value))), encoding="utf-8")

    def load(self, folder):
        keys = _json(folder / "claves.json", cap=MAX_MARKER_BYTES)
        if not isinstance(keys, list) or len(keys) > self.MAX_ENTRIES:
            return Unexpected("un diccionario entregado con una forma desconocida")
        return {_hashable(key): self.inner.load(folder / str(number)) for number, key in enumerate(keys)}

    def validate(self, folder):
        keys = _json(folder / "claves.json", cap=MAX_MARKER_BYTES)
        if not isinstance(keys, list) or len(keys) > self.MAX_ENTRIES:
            return  # llega como Unexpected
        for number, _ in enumerate(keys):
            try:
                self.inner.validate(folder / str(number))
            except Refused as refused:
                raise Refused(f"[{number}] {refused}") from None


# ---------------------------------------------------------------- escribir y leer un ejercicio
def handover_root() -> Path | None:
    value = os.environ.get(HANDOVER_ENV)
    return Path(value) if value else None


def write(exercise: str, arguments: dict, formats: dict[str, Format], root: Path) -> None:
    """Escribe los argumentos de ``exercise`` en ``root/<exercise>/`` (lo anterior de ese ejercicio se borra)."""
    folder = root / exercise
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, fmt in formats.items():
        target = folder / name
        target.mkdir()
        value = arguments.get(name)
        marker = {"formato": fmt.name, "tipo": type(value).__name__, "none": value is None}
        if value is not None:
            try:
                fmt.dump(value, target)
            except Exception as error:  # noqa: BLE001 - lo que no se puede entregar llega como Unexpected
                marker["error"] = f"{type(error).__name__}: {error}"[:300]
        (target / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    seal(folder)


def seal(folder: Path) -> None:
    """Escribe el manifiesto de ``folder`` (archivos y su SHA-256); cualquier proceso que escribe puede."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST)
    (folder / MANIFEST).write_text(json.dumps({str(p.relative_to(folder)): _sha256(p) for p in files}),
                                   encoding="utf-8")


def read(exercise: str, formats: dict[str, Format], root: Path) -> dict:
    """Los argumentos de ``exercise`` cargados de ``root``; ``FileNotFoundError`` si no se entregaron.

    Comprueba antes el manifiesto (archivos completos, sin enlaces) y el formato de cada argumento; lo que
    no pasa la validación (``Format.validate``) llega como ``Unexpected`` con el motivo.
    """
    folder = root / exercise
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(exercise)
    _verify(folder)
    arguments = {}
    for name, fmt in formats.items():
        marker = _marker(folder / name)
        if marker.get("formato") != fmt.name:
            arguments[name] = Unexpected(f"un objeto entregado con otro formato ({str(marker.get('formato'))[:40]!r})")
        elif marker.get("none"):
            arguments[name] = None
        elif "error" in marker:
            arguments[name] = Unexpected(f"un {marker.get('tipo')} que no se pudo entregar ({marker['error']})")
        else:
            try:
                arguments[name] = fmt.load(folder / name)
            except Refused as refused:
                arguments[name] = Unexpected(f"un {marker.get('tipo')} entregado que no pasa la lista blanca ({refused})")
            except Exception as error:  # noqa: BLE001 - datos dañados o falsificados: no es lo que se pide
                arguments[name] = Unexpected(f"un {marker.get('tipo')} entregado que no se puede cargar "
                                             f"({type(error).__name__})")
    return arguments


def refusals(exercise: str, formats: dict[str, Format], root: Path) -> list[str]:
    """Por qué no se carga lo entregado para ``exercise`` (vacío si todo pasa o si no se entregó nada).

    Solo lee datos: el manifiesto, las marcas, los JSON, las configuraciones (lista blanca) y las cabeceras
    de los safetensors. Nada de PEFT ni de modelos: así quien corrige rechaza antes de reservar memoria.
    """
    folder = root / exercise
    if not (folder / MANIFEST).is_file():
        return []
    try:
        _verify(folder)
    except (Refused, ValueError) as error:
        return [str(error)]
    reasons = []
    for name, fmt in formats.items():
        try:
            marker = _marker(folder / name)
            if marker.get("formato") == fmt.name and not marker.get("none") and "error" not in marker:
                fmt.validate(folder / name)
        except (Refused, ValueError) as error:
            reasons.append(f"{name}: {error}")
    return reasons


def _marker(folder: Path) -> dict:
    marker = _json(folder / MARKER, cap=MAX_MARKER_BYTES, tagged=False)
    whitelist.refuse(isinstance(marker, dict), f"{MARKER} no es un diccionario")
    return marker


PICKLE_SUFFIXES = whitelist.PICKLE_SUFFIXES


def _verify(folder: Path) -> None:
    """Archivos normales (sin enlaces ni tuberías), sin pickle fuera de una carpeta, y el manifiesto cuadra."""
    present = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise Refused(f"la entrega contiene algo que no es un archivo normal ({path.name})")
        if path.suffix in PICKLE_SUFFIXES and path.parent.name != "archivos":  # solo se nombran, nunca se cargan
            raise Refused(f"la entrega contiene un archivo pickle ({path.name}), que nunca se carga")
        if path.is_file():
            present[path.relative_to(folder).as_posix()] = path
    listed = _json(folder / MANIFEST, cap=MAX_MARKER_BYTES * 16, tagged=False)
    if not isinstance(listed, dict) or set(present) - {MANIFEST} != set(listed):
        raise Refused("los archivos entregados no coinciden con su manifiesto")
    for name, digest in listed.items():
        if _sha256(present[name]) != digest:
            raise Refused(f"el archivo entregado {name} cambió después de escribirse")


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json(path: Path, cap: int = whitelist.MAX_JSON_BYTES, tagged: bool = True):
    """Un JSON entregado, leído como archivo normal con tope; ``tagged``: escrito con ``_encode``. ``Refused`` si no."""
    try:
        value = whitelist.read_json(path, cap=cap, label=path.name)
        return _decode(value) if tagged else value
    except (ValueError, RecursionError, TypeError) as error:
        if isinstance(error, Refused):
            raise
        raise Refused(f"{path.name} tiene una forma desconocida") from None


def _sha256(path: Path) -> str:
    return sha256_regular(path, cap=MAX_FILE_BYTES)
