"""Gráficas de los cuadernos: cada función guarda un PNG donde se le pide y devuelve la figura, con números en español."""

import re

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


def tick_texts(fig) -> list[str]:
    """Todos los números de las marcas de los ejes de la figura, como se dibujan."""
    fig.canvas.draw()
    texts = []
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        texts += [ax.xaxis.get_offset_text().get_text(), ax.yaxis.get_offset_text().get_text()]
    return [t for t in texts if t]


def spanish(fig) -> list[str]:
    """Las marcas, comprobando que ninguna lleva punto decimal ni notación «e» (1.5, 1e-3)."""
    texts = tick_texts(fig)
    english = [t for t in texts if re.search(r"\d\.\d|\de[-+]?\d", t)]
    assert not english, f"números a la inglesa en los ejes: {english}"
    return texts


def test_loss_curves_one_or_several_runs(tmp_path):
    fig = plots.loss_curves(history(), tmp_path / "una.png", title="Prueba")
    saved(fig, tmp_path / "una.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["entrenamiento", "validación"] and fig.axes[0].get_title() == "Prueba"
    assert {"0,5", "1"} <= set(spanish(fig))  # eje logarítmico de la pérdida: 0,2 · 0,5 · 1
    fig = plots.loss_curves({"A": history(), "B": history(2.0)}, tmp_path / "sub" / "dos.png")
    saved(fig, tmp_path / "sub" / "dos.png")
    assert len(fig.axes[0].get_legend().get_texts()) == 4
    spanish(fig)


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
    spanish(fig)


def test_a_comparison_by_name_marks_what_does_not_fit_the_budget(tmp_path):
    results = {name: {"history": history(), "trainable": params, "eval_loss": 0.1, "accuracy": 0.5}
               for name, params in (("referencia", 2_442_240), ("todas, r=3", 915_840))}
    fig = plots.rank_sweep(results, tmp_path / "presupuesto.png", budget=1_000_000)
    saved(fig, tmp_path / "presupuesto.png")
    losses = fig.axes[1]
    assert [t.get_text() for t in losses.get_xticklabels()] == ["referencia\n2,44 M", "todas, r=3\n0,92 M"]
    assert [bar.get_hatch() for bar in losses.patches] == ["//", ""]  # rayada: no cabe
    assert fig._suptitle.get_text() == "Rayadas: las que no caben en el presupuesto de 1,0 M de parámetros"
    spanish(fig)


def test_lora_vs_olora_one_panel_per_rate(tmp_path):
    runs = {lr: {"LoRA": history(), "OLoRA": history(2.5)} for lr in (2e-4, 1e-3)}
    fig = plots.lora_vs_olora(runs, tmp_path / "olora.png")
    saved(fig, tmp_path / "olora.png")
    assert [ax.get_title() for ax in fig.axes] == ["Tasa de aprendizaje 2·10⁻⁴", "Tasa de aprendizaje 1·10⁻³"]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    spanish(fig)


def test_the_spanish_check_notices_english_numbers(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0.25, 1.75])
    ax.set_yticks([0.5, 1.5], ["0.5", "1.5"])
    try:
        spanish(fig)
    except AssertionError as error:
        assert "0.5" in str(error)
    else:
        raise AssertionError("no notó «0.5»")
    plt.close(fig)
