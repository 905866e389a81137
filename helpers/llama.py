"""Ejecutar un GGUF en llama.cpp (``llama-cpp-python``) como lo haría un despliegue: voraz, con la plantilla de chat
del propio archivo.

La plantilla se lee de los metadatos del GGUF (``tokenizer.chat_template``) y se aplica con Jinja2 en un entorno
aislado, como hacen transformers y llama.cpp; el texto se tokeniza con el tokenizador de llama.cpp. Así se pueden
provocar a propósito los fallos clásicos: otra plantilla (``template=``) o un BOS de más (``extra_bos=True``).

Si ``llama-cpp-python`` no está instalado (hace falta compilarlo), ``available()`` es False y ``missing_reason()``
dice en español qué instalar.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

MAX_NEW_TOKENS = 16  # como helpers.evaluation
LLAMA_VERSION = "0.3.36"
# Una plantilla equivocada, de las que se cuelan al desplegar: el formato [INST] de Llama 2 / Mistral.
WRONG_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                  "{% elif m['role'] == 'system' %}<<SYS>>\n{{ m['content'] }}\n<</SYS>>\n\n{% endif %}{% endfor %}")


def available() -> bool:
    """True si ``llama_cpp`` (llama-cpp-python) se puede importar."""
    return importlib.util.find_spec("llama_cpp") is not None


def missing_reason() -> str:
    """Qué falta para usar llama.cpp, en español."""
    return ("No está instalado `llama-cpp-python` (llama.cpp para Python). Se compila desde el código fuente: "
            "hace falta un compilador de C/C++ y CMake (Linux: `apt install build-essential cmake`; macOS: "
            "`xcode-select --install` y `brew install cmake`; Windows: «Build Tools for Visual Studio» con C++ y "
            "CMake). Después: `python3 curso.py setup` (o `make setup`).")


def chat_template(path: Path) -> str:
    """La plantilla de chat guardada en los metadatos del GGUF."""
    from gguf import GGUFReader

    return str(GGUFReader(path).fields["tokenizer.chat_template"].contents())


def render(template: str, messages: list[dict]) -> str:
    """El texto del prompt: la plantilla de chat aplicada a ``messages``, con el turno del asistente abierto."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


class LlamaRunner:
    """Un GGUF cargado en llama.cpp (CPU), que responde a prompts de chat de forma voraz."""

    def __init__(self, path: Path, lora: Path | None = None, threads: int | None = None):
        from llama_cpp import Llama

        self.path = Path(path)
        kwargs = {"lora_path": str(lora)} if lora else {}
        self.llm = Llama(model_path=str(path), n_ctx=256, n_threads=threads, n_gpu_layers=0, seed=0,
                         verbose=False, **kwargs)
        self.template = chat_template(self.path)
        self.warnings: set[str] = set()  # los avisos de llama-cpp-python al responder, una vez cada uno

    def tokens(self, messages: list[dict], template: str | None = None, extra_bos: bool = False) -> list[int]:
        """Los tokens del prompt, como los vería el modelo desplegado."""
        text = render(template or self.template, messages)
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return [self.llm.token_bos(), *tokens] if extra_bos else tokens

    def answer(self, messages: list[dict], template: str | None = None, extra_bos: bool = False,
               max_new_tokens: int = MAX_NEW_TOKENS) -> str:
        """Respuesta voraz (temperatura 0) a un prompt de chat; se para en el token de fin del GGUF."""
        self.llm.reset()
        with warnings.catch_warnings(record=True) as caught:  # lo que avisa llama-cpp-python, sin rutas
            warnings.simplefilter("always")
            out = self.llm.create_completion(self.tokens(messages, template, extra_bos), max_tokens=max_new_tokens,
                                             temperature=0.0, top_k=1, repeat_penalty=1.0)
        self.warnings.update(str(w.message) for w in caught)
        return out["choices"][0]["text"].strip()

    def answers(self, prompts: list[list[dict]], **kwargs) -> list[str]:
        return [self.answer(p, **kwargs) for p in prompts]

    def close(self) -> None:
        self.llm.close()
