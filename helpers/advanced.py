"""Fontanería del cuaderno ``lora_advanced``: ΔW de cada capa, formatos de respuesta, pares de preferencias.

Las llamadas de PEFT y TRL que enseña el cuaderno están en sus celdas; aquí solo lo que mide y resume.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch

FORMAT_PATTERNS = {
    "iso": r"\d{4}-\d{2}-\d{2}",
    "us": r"\d{2}/\d{2}/\d{4}",
    "en": r"(January|February|March|April|May|June|July|August|September|October|November|December) \d{1,2}, \d{4}",
    "dotted": r"\d{2}\.\d{2}\.\d{4}",
}
LAYER_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------- ΔW
def layer_key(name: str) -> str:
    """``base_model.model.model.layers.3.self_attn.q_proj`` → ``model.layers.3.self_attn.q_proj``."""
    return name.removeprefix("base_model.model.").removesuffix(".weight").replace(".base_layer", "")


def linear_weights(model) -> dict[str, torch.Tensor]:
    """Copia (float32, CPU) de los pesos de las capas lineales de los bloques: {capa: W}."""
    return {layer_key(name): p.detach().float().cpu().clone() for name, p in model.named_parameters()
            if name.endswith(".weight") and name.split(".")[-2] in LAYER_TYPES and "lora_" not in name}


def full_deltas(model, before: dict) -> dict[str, torch.Tensor]:
    """ΔW = W_después − W_antes de cada capa lineal de un ajuste completo."""
    after = linear_weights(model)
    return {key: after[key] - w for key, w in before.items()}


def lora_deltas(model, adapter: str | None = None) -> dict[str, torch.Tensor]:
    """ΔW = escala · B · A de cada capa con LoRA del adaptador ``adapter`` (el activo si None)."""
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            name_here = adapter or module.active_adapters[0]
            if name_here in module.lora_A:
                a = module.lora_A[name_here].weight.detach().float().cpu()
                b = module.lora_B[name_here].weight.detach().float().cpu()
                deltas[layer_key(name)] = (b @ a) * module.scaling[name_here]
    return deltas


def relative_difference(deltas: dict, reference: dict) -> float:
    """‖ΔW − ΔW_ref‖ / ‖ΔW_ref‖ sumando todas las capas (0 = idénticos)."""
    num = sum(float((deltas[k] - ref).pow(2).sum()) for k, ref in reference.items())
    den = sum(float(ref.pow(2).sum()) for ref in reference.values())
    return (num / den) ** 0.5


def add_deltas(*groups: dict, weights=None) -> dict:
    """Σ wᵢ · ΔWᵢ capa a capa."""
    weights = weights or [1.0] * len(groups)
    return {k: sum(w * g[k] for w, g in zip(weights, groups)) for k in groups[0]}


def fit_deltas(deltas: dict, bases: dict[str, dict]) -> tuple[dict[str, float], float]:
    """Mínimos cuadrados, todas las capas a la vez: ``deltas`` ≈ Σ cₖ · ``bases[k]``.

    Devuelve ({k: cₖ}, ‖ΔW − Σ cₖ·baseₖ‖ / ‖ΔW‖): con qué pesos se parece ``deltas`` a una mezcla de las bases,
    y cuánto queda fuera (0 = es exactamente esa mezcla). Productos escalares en float64.
    """
    names = list(bases)
    gram = torch.zeros(len(names), len(names), dtype=torch.float64)
    rhs = torch.zeros(len(names), dtype=torch.float64)
    for key, delta in deltas.items():
        flat = [bases[n][key].double().flatten() for n in names]
        d = delta.double().flatten()
        for i, u in enumerate(flat):
            rhs[i] += u @ d
            for j in range(i, len(names)):
                gram[i, j] = gram[j, i] = gram[i, j] + u @ flat[j]
    coefs = torch.linalg.lstsq(gram, rhs[:, None]).solution[:, 0]
    fitted = {k: sum(float(c) * bases[n][k] for c, n in zip(coefs, names)) for k in deltas}
    return dict(zip(names, map(float, coefs))), relative_difference(fitted, deltas)


def singular_values(delta: torch.Tensor) -> torch.Tensor:
    """Valores singulares de ``delta`` (de mayor a menor), como raíz de los autovalores de ΔW·ΔWᵀ.

    Da lo mismo que ``torch.linalg.svdvals`` (en float64 por precisión) y es bastante más rápido en CPU.
    """
    d = delta.double()
    gram = d @ d.T if d.shape[0] <= d.shape[1] else d.T @ d
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0).sqrt().float()


def spectra(deltas: dict) -> dict[str, torch.Tensor]:
    """Valores singulares de cada ΔW (de mayor a menor), calculados con un solo hilo.

    Con un solo hilo: la descomposición son muchas operaciones pequeñas y, en un equipo con otras tareas,
    repartirlas entre hilos puede hacerla decenas de veces más lenta (medido: 0,2 s frente a 38 s).
    """
    with single_thread():
        return {key: singular_values(delta) for key, delta in deltas.items()}


@contextlib.contextmanager
def single_thread():
    """PyTorch con un solo hilo mientras dura el bloque (para SVD y autovalores en CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def top_energy(singular_values: torch.Tensor, r: int) -> float:
    """Parte de la energía (Σσ²) que guardan las ``r`` primeras direcciones."""
    energy = singular_values.pow(2)
    return float(energy[:r].sum() / energy.sum())


def layer_type(key: str) -> str:
    return key.split(".")[-1]


def effective_rank(singular_values: torch.Tensor, share: float = 0.9) -> int:
    """Cuántas direcciones hacen falta para guardar ``share`` de la energía."""
    energy = singular_values.pow(2)
    cumulative = energy.cumsum(0) / energy.sum()
    return int((cumulative < share).sum()) + 1


def cumulative_energy(singular_values: torch.Tensor) -> torch.Tensor:
    """Parte de la energía (Σσ²) que guardan las k primeras direcciones, para k = 1, 2, …"""
    energy = singular_values.double().pow(2)
    return (energy.cumsum(0) / energy.sum()).float()


def plot_spectra(full: dict, lora: dict, r: int, path, title: str):
    """Dos paneles legibles a lo ancho de la página, con números en español.

    Izquierda: σ_k / σ_1 de cada ΔW, mediana de todas las capas (y la banda del 10 % al 90 % de las capas),
    ajuste completo frente a LoRA. Derecha: qué parte de la energía del ajuste completo guardan sus k primeras
    direcciones, una línea por tipo de capa (mediana de sus capas), con r y el 90 % marcados.
    """
    import matplotlib.pyplot as plt

    from .plot_style import spanish_numbers

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for label, group, color in (("ajuste completo", full, "C0"), (f"LoRA (r = {r})", lora, "C1")):
        curves = [s / s[0] for s in group.values() if s[0] > 0]
        n = min(len(c) for c in curves)
        stacked = torch.stack([c[:n] for c in curves]).clamp_min(1e-6)
        low, mid, high = (stacked.quantile(q, dim=0) for q in (0.1, 0.5, 0.9))
        k = range(1, n + 1)
        left.plot(k, mid, color=color, lw=2, label=label)
        left.fill_between(k, low, high, color=color, alpha=0.2, lw=0)
    left.axvline(r, color="grey", ls=":", lw=1.2)
    left.set(xscale="log", yscale="log", ylim=(1e-3, 1.5), xlabel="dirección k (de mayor a menor)",
             ylabel="σₖ / σ₁", title="Valores singulares de cada ΔW\n(línea: mediana de las capas; "
                                     "banda: del 10 % al 90 % de ellas)")
    left.legend(loc="lower left")
    types = [t for t in LAYER_TYPES if any(layer_type(k) == t for k in full)]
    for number, kind in enumerate(types):
        curves = [cumulative_energy(s) for key, s in full.items() if layer_type(key) == kind]
        n = min(len(c) for c in curves)
        median = torch.stack([c[:n] for c in curves]).median(0).values
        right.plot(range(1, n + 1), 100 * median, lw=1.8, color=f"C{number}", label=kind)
    right.axvline(r, color="grey", ls=":", lw=1.2)
    right.axhline(90, color="grey", ls="--", lw=0.8)
    right.set(xscale="log", ylim=(0, 101), xlabel="k primeras direcciones", ylabel="energía de ΔW (%)",
              title="Ajuste completo: energía acumulada")
    right.legend(ncol=2, fontsize=8, loc="lower right")
    widest = max(max(ax.get_xlim()[1] for ax in (left, right)), r)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.set_xlim(1, widest)  # los dos paneles, hasta la misma k
    fig.suptitle(title)
    fig.tight_layout()
    spanish_numbers(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return fig


# ---------------------------------------------------------------- respuestas
def answer_format(text: str) -> str:
    """El formato de una respuesta: 'iso', 'us', 'en', 'dotted' u 'otro' (si no es exactamente uno de ellos)."""
    for name, pattern in FORMAT_PATTERNS.items():
        if re.fullmatch(pattern, text.strip()):
            return name
    return "otro"


def is_broken_answer(text: str) -> bool:
    """¿Una respuesta que ya no dice nada? Vacía, sin ninguna cifra, o un solo carácter en más de la mitad.

    Un modelo que sigue respondiendo, acierte o no, escribe cifras de la fecha («La fecha de 5 de abril de
    2049», «2020-05-05 12:00»); uno roto repite un carácter («................»). Una fecha bien formada nunca
    está rota, aunque repita cifras («11.11.2011»).
    """
    text = text.strip()
    if not text or not any(c.isdigit() for c in text):
        return True
    return answer_format(text) == "otro" and max(text.count(c) for c in set(text)) > len(text) / 2


def format_counts(answers: list[str]) -> dict[str, int]:
    """Cuántas respuestas hay de cada formato (iso, us, en, dotted, otro)."""
    counts = dict.fromkeys([*FORMAT_PATTERNS, "otro"], 0)
    for text in answers:
        counts[answer_format(text)] += 1
    return counts


# ---------------------------------------------------------------- preferencias
def preference_pairs(rows, rejected: list[str] | None = None, rejected_fmt: str = "us"):
    """Pares de DPO (formato conversacional de TRL): elegida la respuesta de la fila, rechazada otra.

    ``rows``: filas de ``make_splits`` (la elegida es su respuesta, en su formato). ``rejected``: respuestas
    rechazadas ya hechas (p. ej. las del modelo base); si falta, la misma fecha en el formato ``rejected_fmt``.
    """
    import datetime as dt

    from datasets import Dataset

    from .data import answer, format_date

    pairs = []
    for i, row in enumerate(rows):
        chosen = answer(row)
        other = rejected[i] if rejected is not None else format_date(dt.date.fromisoformat(chosen), rejected_fmt)
        pairs.append({"prompt": row["prompt"], "chosen": [{"role": "assistant", "content": chosen}],
                      "rejected": [{"role": "assistant", "content": other}]})
    return Dataset.from_list(pairs)


def completion_logprobs(model, tokenizer, prompts: list, completions: list[str]) -> torch.Tensor:
    """log p(respuesta | prompt) sumado sobre los tokens de la respuesta (y su fin de turno), por fila."""
    from .evaluation import _eval_mode

    rows = []
    with _eval_mode(model, tokenizer):
        for prompt, completion in zip(prompts, completions):
            head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
            full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": completion}],
                                                 tokenize=False)
            n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
            ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
            logp = model(input_ids=ids).logits.float().log_softmax(-1)[0, :-1]
            target = ids[0, 1:]
            picked = logp.gather(-1, target[:, None])[:, 0]
            rows.append(picked[n_head - 1:].sum().cpu())
    return torch.stack(rows)


def implicit_margins(model, tokenizer, pairs, beta: float) -> torch.Tensor:
    """Margen de recompensa implícita de DPO por par: β·[(log π − log π_ref)(elegida) − (…)(rechazada)].

    La referencia es el mismo modelo con el adaptador desactivado (``disable_adapter()``).
    """
    prompts = [p["prompt"] for p in pairs]
    chosen = [p["chosen"][-1]["content"] for p in pairs]
    rejected = [p["rejected"][-1]["content"] for p in pairs]
    policy_c, policy_r = (completion_logprobs(model, tokenizer, prompts, c) for c in (chosen, rejected))
    with model.disable_adapter():
        ref_c, ref_r = (completion_logprobs(model, tokenizer, prompts, c) for c in (chosen, rejected))
    return beta * ((policy_c - ref_c) - (policy_r - ref_r))


def parameter_bytes(*models) -> int:
    """Bytes de los pesos que guardan los modelos, contando una sola vez los tensores compartidos."""
    seen, total = set(), 0
    for model in models:
        if model is None:
            continue
        for tensor in list(model.parameters()) + list(model.buffers()):
            key = tensor.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += tensor.untyped_storage().nbytes()
    return total


# ---------------------------------------------------------------- generar con un adaptador por fila
def encode_prompts(tokenizer, prompts: list, device="cpu"):
    """El lote de prompts de chat, con relleno a la izquierda (se genera a continuación)."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        texts = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False)
        return tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(device)
    finally:
        tokenizer.padding_side = side


def decode_new(tokenizer, output, batch) -> list[str]:
    """Solo el texto nuevo de cada fila de ``model.generate`` (sin el prompt), sin espacios en los extremos."""
    new_tokens = output[:, batch["input_ids"].shape[1]:]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate_mixed(model, tokenizer, prompts: list, adapter_names: list[str], max_new_tokens: int = 16):
    """Respuesta voraz de cada fila con su adaptador (``adapter_names``), en un solo ``generate``."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batch = encode_prompts(tokenizer, prompts, model.device)
            out = model.generate(**batch, adapter_names=list(adapter_names), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
    finally:
        model.train(was_training)
    return decode_new(tokenizer, out, batch)


# ---------------------------------------------------------------- tiempos y gráficas del cuaderno
class SectionClock:
    """Cuánto tarda cada sección del cuaderno: ``clock.start("1. ...")`` al empezar cada una."""

    def __init__(self, begin: float | None = None, begin_cpu: float | None = None):
        """``begin``/``begin_cpu``: el ``time.perf_counter()`` y el ``time.process_time()`` de la primera celda (si
        no, ahora)."""
        import time

        self._now, self._cpu = time.perf_counter, time.process_time
        self.begin = self._now() if begin is None else begin
        self.begin_cpu = self._cpu() if begin_cpu is None else begin_cpu
        self.seconds, self.cpu_seconds, self._current = {}, {}, None

    def start(self, name: str) -> None:
        self._close()
        self._current = (name, self._now(), self._cpu())

    def _close(self) -> None:
        if self._current:
            name, since, since_cpu = self._current
            self.seconds[name] = self.seconds.get(name, 0.0) + self._now() - since
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + self._cpu() - since_cpu
            self._current = None

    def table(self):
        """(segundos totales, tabla pandas con el tiempo real, el de CPU y la parte del total de cada sección).

        El tiempo de CPU suma el de todos los hilos del proceso: en un equipo compartido cambia mucho
        menos que el tiempo real.
        """
        import pandas as pd

        from .numbers import percent, seconds

        self._close()
        total, total_cpu = self._now() - self.begin, self._cpu() - self.begin_cpu
        rows = {name: (s, self.cpu_seconds[name]) for name, s in self.seconds.items()}
        rows["preparación (importar, cargar)"] = (total - sum(self.seconds.values()),
                                                  total_cpu - sum(self.cpu_seconds.values()))
        rows["total"] = (total, total_cpu)
        frame = pd.DataFrame([{"sección": name, "tiempo real": seconds(s), "parte del total": percent(s / total, 0),
                               "tiempo de CPU": seconds(c)} for name, (s, c) in rows.items()])
        return total, frame.set_index("sección")


def plot_dpo(history: list[dict], path, title: str):
    """Recompensas implícitas de DPO por paso: elegida, rechazada y su margen."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .plot_style import spanish_numbers

    labels = {"rewards/chosen": "elegida (con puntos)", "rewards/rejected": "rechazada (lo que decía el base)",
              "rewards/margins": "margen"}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, label in labels.items():
        steps = [e["step"] for e in history if key in e]
        ax.plot(steps, [e[key] for e in history if key in e], marker="o", ms=3, label=label,
                lw=2.4 if key == "rewards/margins" else 1.4)
    ax.axhline(0, color="grey", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="paso de entrenamiento", ylabel="recompensa implícita (β · Δ log p)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    spanish_numbers(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return fig


def quiet_trl_deprecations() -> None:
    """Silencia los FutureWarning de ``gradient_checkpointing*`` que TRL 1.16 provoca dentro de transformers 5.

    Salen de `DPOConfig` y de `DPOTrainer` (que aún usan los nombres antiguos), no del código del cuaderno,
    que ya usa ``activation_checkpointing``.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"`gradient_checkpointing\w*` is deprecated", category=FutureWarning)
