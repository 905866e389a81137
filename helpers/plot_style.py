"""Números en español también en las gráficas: «0,5», «1 000», «10⁻³», nunca «0.5» ni «1e-3».

matplotlib escribe los números a la inglesa y sabría hacerlo en español con el *locale* del sistema, que
no siempre está instalado. ``spanish_numbers(fig)`` cambia los formateadores de todos los ejes de una
figura: las marcas de los ejes lineales pasan por ``helpers.numbers.decimal`` (coma decimal, miles con
espacio) y las de los logarítmicos muestran 0,1 · 0,2 · 0,5 · 1 · 2…; el «×10⁻³» que matplotlib pone a veces
en la esquina también va en español. Llámala antes de guardar la figura.
"""

from __future__ import annotations

import math

from matplotlib.ticker import FuncFormatter, LogLocator, ScalarFormatter

from .numbers import decimal, scientific


def _decimals(values) -> int:
    """Los decimales que hacen falta para escribir exactas todas las marcas (0,25 necesita 2; 20 000, 0)."""
    for digits in range(7):
        if all(abs(v - round(v, digits)) <= 1e-9 * max(1.0, abs(v)) for v in values):
            return digits
    return 6


class SpanishScalarFormatter(ScalarFormatter):
    """El formateador lineal de matplotlib (elige la escala y el desplazamiento), con números en español."""

    def __init__(self):
        super().__init__(useOffset=False, useMathText=False)
        self.set_powerlimits((-4, 6))

    def __call__(self, x, pos=None):
        scale = 10.0 ** self.orderOfMagnitude
        locs = [loc / scale for loc in self.locs if math.isfinite(loc)] or [x / scale]
        return decimal(x / scale, _decimals(locs)).replace("-", "−")

    def get_offset(self):
        if not self.orderOfMagnitude:
            return ""
        return "×" + scientific(10.0 ** self.orderOfMagnitude, 0).removeprefix("1·")


def _log_label(value, _pos=None) -> str:
    """0,1 · 0,2 · 0,5 · 1 · 2 · 5 · 10 en un eje logarítmico; las demás marcas, sin texto."""
    if value <= 0:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    lead = round(value / 10**exponent, 6)
    if lead not in (1, 2, 5):
        return ""
    return decimal(value, max(0, -exponent))


def spanish_numbers(target) -> None:
    """Pone números en español en todos los ejes de ``target`` (una figura o unos ejes de matplotlib)."""
    axes = target.get_axes() if hasattr(target, "get_axes") else [target]
    for ax in axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "linear" and isinstance(axis.get_major_formatter(), ScalarFormatter):
                axis.set_major_formatter(SpanishScalarFormatter())
            elif scale == "log":
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(_log_label))
                axis.set_minor_formatter(FuncFormatter(lambda *_: ""))
