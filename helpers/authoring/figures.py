"""Figuras de la lección, dibujadas con matplotlib para poder regenerarlas (y traducirlas).

``python -m helpers.authoring.figures`` (o ``make images``) escribe ``images/lora_adapter.png``.
Para traducir la figura basta con cambiar los textos de ``TEXTS``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import COURSE_ROOT

IMAGES_DIR = COURSE_ROOT / "images"

# Todos los textos de la figura, en un solo sitio.
TEXTS = {
    "title_train": "Durante el entrenamiento",
    "title_merged": "Después de fusionar",
    "x": "entrada  $x$",
    "x_dim": "dimensión $k$",
    "W": "$W$",
    "W_shape": "$d \\times k$",
    "W_note": "pesos preentrenados\ncongelados",
    "A": "$A$",
    "A_shape": "$r \\times k$",
    "B": "$B$",
    "B_shape": "$d \\times r$",
    "AB_note": "adaptador LoRA",
    "A_init": "inicio: aleatoria",
    "B_init": "inicio: ceros",
    "scale": "$\\times\\,\\frac{\\alpha}{r}$",
    "h": "$h = W x + \\frac{\\alpha}{r}\\,B A x$",
    "W_merged": "$W'$",
    "W_merged_eq": "$W' = W + \\frac{\\alpha}{r}\\,B A$",
    "h_merged": "$h = W' x$",
    "merged_note": "misma forma $d \\times k$:\nsin coste extra al inferir",
    "arrow_merge": "merge_and_unload()",
    "params": "Parámetros entrenables por capa: $r\\,(d + k)$ en vez de $d \\cdot k$."
              "   P. ej., $d = k = 576$, $r = 8$: 9 216 en vez de 331 776 (2,8 %)",
    "legend_frozen": "congelado",
    "legend_train": "entrenable",
    "legend_merged": "fusionado",
}

FROZEN = "#c9d6e8"      # azul grisáceo: no se entrena
FROZEN_EDGE = "#4a6587"
TRAIN = "#f7c59f"       # naranja: se entrena
TRAIN_EDGE = "#c0652b"
MERGED = "#cfe8cf"
MERGED_EDGE = "#3f7f3f"
INK = "#1f2430"


def lora_adapter_figure(path: str | Path | None = None, texts: dict | None = None):
    """Diagrama de un adaptador LoRA sobre una capa lineal; lo guarda en ``path`` si se indica."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Polygon

    t = {**TEXTS, **(texts or {})}
    plt.rcParams["mathtext.fontset"] = "dejavusans"
    fig = plt.figure(figsize=(10, 6.6), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 66)
    ax.axis("off")

    def box(x, y, w, h, face, edge, **kw):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3,rounding_size=1.2",
                                    facecolor=face, edgecolor=edge, linewidth=2, **kw))

    def arrow(p, q, color=INK, style="-|>", lw=1.8):
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=16, color=color,
                                     linewidth=lw, shrinkA=0, shrinkB=0))

    def text(x, y, s, size=13, **kw):
        kw.setdefault("ha", "center")
        kw.setdefault("va", "center")
        kw.setdefault("color", INK)
        ax.text(x, y, s, fontsize=size, **kw)

    # ---------------- Panel izquierdo: W congelada + rama B·A ----------------
    text(31, 63.3, t["title_train"], size=15, weight="bold")

    # entrada x
    box(22, 11, 18, 5, "white", INK)
    text(31, 13.5, t["x"], size=14)
    text(41.5, 13.5, t["x_dim"], size=12, color="#555", ha="left")

    # W congelada
    box(8, 23, 18, 20, FROZEN, FROZEN_EDGE)
    text(17, 36.5, t["W"], size=26)
    text(17, 31.3, t["W_shape"], size=13)
    text(17, 26.5, t["W_note"], size=11, color="#33475f")

    # adaptador: A (trapecio que estrecha k -> r) y B (trapecio que ensancha r -> d)
    ax.add_patch(FancyBboxPatch((34.3, 21.6), 21.4, 22.8, boxstyle="round,pad=0,rounding_size=1.5",
                                facecolor="none", edgecolor=TRAIN_EDGE, linewidth=1.2, linestyle="--"))
    # encima del recuadro y a la izquierda: la rama de B hacia la escala sube por el centro (x = 45)
    text(32.3, 46, t["AB_note"], size=11, color=TRAIN_EDGE, ha="left")
    ax.add_patch(Polygon([(36, 23), (54, 23), (48.5, 30.5), (41.5, 30.5)], closed=True,
                         facecolor=TRAIN, edgecolor=TRAIN_EDGE, linewidth=2))
    text(45, 26.3, f"{t['A']}   {t['A_shape']}", size=13)
    ax.add_patch(Polygon([(41.5, 35.5), (48.5, 35.5), (54, 43), (36, 43)], closed=True,
                         facecolor=TRAIN, edgecolor=TRAIN_EDGE, linewidth=2))
    text(45, 39.5, f"{t['B']}   {t['B_shape']}", size=13)
    arrow((45, 30.5), (45, 35.5), color=TRAIN_EDGE)
    text(47, 33, "$r$", size=12, color=TRAIN_EDGE)
    text(57, 39.2, t["B_init"], size=11, color="#7a3f15", ha="left")
    text(57, 26.8, t["A_init"], size=11, color="#7a3f15", ha="left")

    # x -> W y x -> A
    ax.plot([31, 31], [16.4, 19.5], color=INK, linewidth=1.8)
    ax.plot([17, 45], [19.5, 19.5], color=INK, linewidth=1.8)
    arrow((17, 19.5), (17, 22.6))
    arrow((45, 19.5), (45, 22.6))

    # escala alpha/r y suma
    ax.plot([45, 45], [43.4, 45.4], color=TRAIN_EDGE, linewidth=1.8)
    text(45, 48, t["scale"], size=15, color=TRAIN_EDGE)
    ax.plot([45, 45, 33.4], [50.6, 52.5, 52.5], color=TRAIN_EDGE, linewidth=1.8)
    arrow((35, 52.5), (33.4, 52.5), color=TRAIN_EDGE)
    ax.plot([17, 17, 28.6], [43.4, 52.5, 52.5], color=INK, linewidth=1.8)
    arrow((27, 52.5), (28.6, 52.5))
    ax.add_patch(Circle((31, 52.5), 2.4, facecolor="white", edgecolor=INK, linewidth=2))
    text(31, 52.6, "+", size=20, weight="bold")
    arrow((31, 54.9), (31, 57.2))
    text(31, 59.2, t["h"], size=15)

    # ---------------- Flecha de fusión ----------------
    # el nombre (165 px en monoespaciada) cabe entre las notas de A y B (x < 68) y la caja de W' (x > 75,7)
    arrow((60.5, 33), (73.5, 33), lw=2.5, color=MERGED_EDGE)
    text(66.3, 35.6, t["arrow_merge"], size=11, family="DejaVu Sans Mono", color=MERGED_EDGE)

    # ---------------- Panel derecho: W' fusionada ----------------
    text(86, 63.3, t["title_merged"], size=15, weight="bold")
    box(76, 11, 20, 5, "white", INK)
    text(86, 13.5, t["x"], size=14)
    arrow((86, 16.4), (86, 22.6))
    box(76, 23, 20, 20, MERGED, MERGED_EDGE)
    text(86, 38.3, t["W_merged"], size=26)
    text(86, 32.3, t["W_merged_eq"], size=13)
    text(86, 26.5, t["merged_note"], size=11, color="#2f5f2f")
    arrow((86, 43.4), (86, 57.2))
    text(86, 59.2, t["h_merged"], size=15)

    # ---------------- Pie: leyenda y recuento de parámetros ----------------
    x0 = 30
    for color, edge, label in ((FROZEN, FROZEN_EDGE, t["legend_frozen"]),
                               (TRAIN, TRAIN_EDGE, t["legend_train"]),
                               (MERGED, MERGED_EDGE, t["legend_merged"])):
        ax.add_patch(FancyBboxPatch((x0, 5.6), 2.2, 2.2, boxstyle="round,pad=0.1",
                                    facecolor=color, edgecolor=edge, linewidth=1.5))
        text(x0 + 3.2, 6.7, label, size=12, ha="left")
        x0 += 15
    text(50, 2.4, t["params"], size=11.5)

    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Sin metadatos de versión: la misma figura da el mismo archivo (diffs limpios en git).
        fig.savefig(path, dpi=100, facecolor="white", metadata={"Software": None})
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Dibuja las figuras de la lección en images/.")
    parser.add_argument("--out", type=Path, default=IMAGES_DIR,
                        help="carpeta de salida (por defecto images/)")
    args = parser.parse_args(argv)
    import matplotlib.pyplot as plt

    target = args.out / "lora_adapter.png"
    plt.close(lora_adapter_figure(target))
    print(f"Escrita {target}")


if __name__ == "__main__":
    main()
