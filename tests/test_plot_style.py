"""Las marcas de los ejes, en español: coma decimal, miles con espacio, signo menos y potencias sin «e»."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from helpers.numbers import SPACE
from helpers.plot_style import spanish_numbers


def labels(ax):
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_yticklabels()], ax.yaxis.get_offset_text().get_text()


def test_linear_axes_use_a_decimal_comma_and_spaced_thousands():
    fig, (small, big, tiny) = plt.subplots(1, 3)
    small.plot([0, 1], [0.75, 3.25])
    big.plot([0, 1], [0, 60000])
    tiny.plot([0, 1], [1e-6, 5e-6])
    spanish_numbers(fig)
    ticks, _ = labels(small)
    assert "1,5" in ticks and "0,5" in ticks and not any("." in t for t in ticks)
    ticks, _ = labels(big)
    assert f"20{SPACE}000" in ticks
    ticks, offset = labels(tiny)
    assert offset == "×10⁻⁶" and not any("e" in t for t in ticks)
    plt.close(fig)


def test_log_axes_show_one_two_five_in_spanish():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.05, 2.5])
    ax.set_yscale("log")
    spanish_numbers(ax)
    ticks, _ = labels(ax)
    assert {"0,05", "0,1", "0,2", "0,5", "1", "2"} <= set(ticks)
    plt.close(fig)
