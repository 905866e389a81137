"""Gráficas de los cuadernos: cada función guarda un PNG donde se le pide y devuelve la figura."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from helpers import plots


def history(start=1.5, steps=6, eval_every=3):
    losses = [start / (1 + i) for i in range(steps)]
    evals = list(range(eval_every, steps + 1, eval_every))
    return {
        "train_step": list(range(1, steps + 1)),
        "train_loss": losses,
        "eval_step": evals,
        "eval_loss": [losses[s - 1] * 1.1 for s in evals],
    }


def saved(fig, path):
    assert isinstance(fig, Figure)
    assert path.is_file() and mpimg.imread(path).shape[0] > 100
    assert fig.number not in plt.get_fignums(), "la figura debe cerrarse en pyplot (si no, sale dos veces)"


def test_loss_curves_one_or_several_runs(tmp_path):
    fig = plots.loss_curves(history(), tmp_path / "una.png", title="Prueba")
    saved(fig, tmp_path / "una.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["entrenamiento", "validación"] and fig.axes[0].get_title() == "Prueba"
    fig = plots.loss_curves({"A": history(), "B": history(2.0)}, tmp_path / "sub" / "dos.png")
    saved(fig, tmp_path / "sub" / "dos.png")
    assert len(fig.axes[0].get_legend().get_texts()) == 4


def test_rank_sweep_has_curves_and_results(tmp_path):
    results = {
        r: {
            "history": history(1.5 / r),
            "trainable": 305_280 * r,
            "eval_loss": 0.3 / r,
            "accuracy": 0.2 * r / 8,
        }
        for r in (2, 8, 32)
    }
    fig = plots.rank_sweep(results, tmp_path / "rangos.png")
    saved(fig, tmp_path / "rangos.png")
    curves, losses, accuracy = fig.axes
    assert [line.get_label() for line in curves.get_lines()] == ["r=2", "r=8", "r=32"]
    assert [t.get_text() for t in losses.get_xticklabels()] == ["r=2\n0,61 M", "r=8\n2,44 M", "r=32\n9,77 M"]
    assert [t.get_text() for t in accuracy.texts] == ["5\u00a0%", "20\u00a0%", "80\u00a0%"]


def test_lora_vs_olora_one_panel_per_rate(tmp_path):
    runs = {lr: {"LoRA": history(), "OLoRA": history(2.5)} for lr in (2e-4, 1e-3)}
    fig = plots.lora_vs_olora(runs, tmp_path / "olora.png")
    saved(fig, tmp_path / "olora.png")
    assert [ax.get_title() for ax in fig.axes] == ["Tasa de aprendizaje 0.0002", "Tasa de aprendizaje 0.001"]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
