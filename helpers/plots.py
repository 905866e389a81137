"""Gráficas de los cuadernos (matplotlib): curvas de pérdida, comparación de configuraciones, LoRA frente a OLoRA.

Cada función guarda la figura en la ruta que le pases (usa ``output_dir(...)``: todo lo que genera el
curso va a la carpeta de salidas) y devuelve la figura, que Jupyter muestra una sola vez si es lo
último de la celda. Las historias de pérdidas son los diccionarios de ``helpers.training.loss_history``:
``{"train_step", "train_loss", "eval_step", "eval_loss"}``. Los números de los ejes van en español
(``helpers.plot_style.spanish_numbers``, al guardar).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from .numbers import decimal, percent, scientific
from .plot_style import spanish_numbers

TEXTS = {
    "step": "paso de entrenamiento",
    "loss": "pérdida (entropía cruzada)",
    "train": "entrenamiento",
    "eval": "validación",
    "params": "configuración (parámetros entrenables)",
    "over_budget": "Rayadas: las que no caben en el presupuesto de {budget} M de parámetros",
    "eval_loss": "Pérdida de validación final",
    "accuracy": "Exactitud en prueba",
    "losses_title": "Pérdidas durante el entrenamiento",
    "sweep_curves": "Pérdida de entrenamiento por configuración",
    "olora_title": "Tasa de aprendizaje {lr}",
}


def _save(fig, path) -> None:
    """Números en español en todos los ejes, guarda el PNG y cierra la figura en pyplot."""
    spanish_numbers(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)  # sin esto Jupyter la mostraría dos veces (al cerrar la celda y al devolverla)


def _log_y(ax) -> None:
    """Eje y logarítmico; ``spanish_numbers`` (al guardar) escribe sus marcas 0,1 · 0,2 · 0,5 · 1 · 2."""
    ax.set_yscale("log")


def _curve(ax, history: dict, label: str | None = None, color=None, eval_too: bool = True):
    """Dibuja la pérdida de entrenamiento (línea) y, si se pide y la hay, la de validación (puntos)."""
    eval_too = eval_too and bool(history.get("eval_step"))
    train_label = (f"{label} · {TEXTS['train']}" if eval_too else label) if label else TEXTS["train"]
    (line,) = ax.plot(history["train_step"], history["train_loss"], color=color, lw=1.8, label=train_label)
    if eval_too:
        ax.plot(
            history["eval_step"],
            history["eval_loss"],
            color=line.get_color(),
            ls="--",
            marker="o",
            label=f"{label} · {TEXTS['eval']}" if label else TEXTS["eval"],
        )
    return line


def loss_curves(histories, path, title: str | None = None, log_scale: bool = True):
    """Curvas de pérdida de una ejecución (un historial) o de varias (``{"etiqueta": historial}``)."""
    if "train_loss" in histories:
        histories = {"": histories}
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, history in histories.items():
        _curve(ax, history, label or None)
    ax.set(xlabel=TEXTS["step"], ylabel=TEXTS["loss"], title=title or TEXTS["losses_title"])
    if log_scale:
        _log_y(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    return fig


def _label(key) -> str:
    return f"r={key}" if isinstance(key, int) else str(key)


def rank_sweep(results: dict, path, budget: int | None = None):
    """Comparación de configuraciones: curvas de entrenamiento, pérdida de validación final y exactitud.

    ``results``: ``{clave: {"history": ..., "trainable": int, "eval_loss": float, "accuracy": float}}``; la
    clave es el rango (``r=8``) o un nombre. Con ``budget`` (parámetros), las barras de lo que no cabe van
    rayadas.
    """
    keys = list(results)
    if all(isinstance(k, int) for k in keys):
        keys = sorted(keys)
    fig, (curves, losses, accuracy) = plt.subplots(
        1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.3, 1, 1]}
    )
    colors = [_curve(curves, results[k]["history"], _label(k), eval_too=False).get_color() for k in keys]
    curves.set(xlabel=TEXTS["step"], ylabel=TEXTS["loss"], title=TEXTS["sweep_curves"])
    _log_y(curves)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)

    labels = [f"{_label(k)}\n{decimal(results[k]['trainable'] / 1e6, 2)} M" for k in keys]
    over = [budget is not None and results[k]["trainable"] > budget for k in keys]
    for ax, key, title in (
        (losses, "eval_loss", TEXTS["eval_loss"]),
        (accuracy, "accuracy", TEXTS["accuracy"]),
    ):
        values = [results[k][key] for k in keys]
        bars = ax.bar(labels, values, color=colors, hatch=["//" if o else "" for o in over], edgecolor="white")
        ax.bar_label(
            bars, labels=[decimal(v, 3) if key == "eval_loss" else percent(v, 0) for v in values], fontsize=9
        )
        ax.set(title=title, xlabel=TEXTS["params"])
        ax.margins(y=0.15)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", labelsize=8)
    accuracy.set_ylim(0, 1.1)
    if budget is not None and any(over):
        fig.suptitle(TEXTS["over_budget"].format(budget=decimal(budget / 1e6, 1)), fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def lora_vs_olora(histories: dict, path):
    """Un panel por tasa de aprendizaje con la pérdida de entrenamiento de cada inicialización.

    ``histories``: ``{tasa: {"LoRA": historial, "OLoRA": historial}}``.
    """
    rates = sorted(histories)
    fig, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4), sharey=True, squeeze=False)
    for ax, lr in zip(axes[0], rates):
        for label, history in histories[lr].items():
            _curve(ax, history, label, eval_too=False)
        ax.set(xlabel=TEXTS["step"], title=TEXTS["olora_title"].format(lr=scientific(lr, 0)))
        _log_y(ax)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel(TEXTS["loss"])
    fig.tight_layout()
    _save(fig, path)
    return fig
