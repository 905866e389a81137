"""Las figuras de la lección salen de un script: `make images` (``python -m helpers.authoring.figures``) las rehace."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np

from helpers.authoring import figures
from helpers.paths import COURSE_ROOT

FIGURE = COURSE_ROOT / "images" / "lora_adapter.png"


def test_figure_is_committed_and_matches_the_script(tmp_path):
    """La imagen del repositorio es la que dibuja el script (si cambias el script, ejecuta `make images`)."""
    assert FIGURE.is_file(), "Falta images/lora_adapter.png: ejecuta `make images`"
    figures.main(["--out", str(tmp_path)])
    fresh, committed = mpimg.imread(tmp_path / "lora_adapter.png"), mpimg.imread(FIGURE)
    assert fresh.shape == committed.shape, "La figura cambió de tamaño: ejecuta `make images`"
    # Tolerancia de unos pocos píxeles (rasterizado); quitar una sola letra ya cambia ~40.
    changed = (np.abs(fresh - committed).max(axis=2) > 0.05).mean()
    assert changed < 1e-5, f"La figura no es la del script ({changed:.4%} de píxeles): ejecuta `make images`"


def test_figure_fits_github_width():
    """GitHub muestra las imágenes a ~830 px de ancho: mucho más ancha, el texto sería ilegible."""
    height, width = mpimg.imread(FIGURE).shape[:2]
    assert 800 <= width <= 1200 and height < width


def test_texts_can_be_translated(tmp_path):
    """Todos los textos están en TEXTS: se pueden sustituir sin tocar el dibujo."""
    fig = figures.lora_adapter_figure(tmp_path / "en.png", texts={"title_train": "During training"})
    drawn = {t.get_text() for t in fig.axes[0].texts}
    assert "During training" in drawn and figures.TEXTS["title_train"] not in drawn
    assert (tmp_path / "en.png").is_file()


def misplaced_texts(fig):
    """Los textos que pisan a otro o se salen de la imagen."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.axes[0].texts if t.get_text().strip()]
    inside = fig.bbox
    wrong = [name for name, box in boxes
             if not (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1)]
    return wrong + [(name, other) for i, (name, box) in enumerate(boxes) for other, other_box in boxes[i + 1:]
                    if box.overlaps(other_box)]


def test_texts_do_not_overlap_and_stay_inside():
    """Ningún texto pisa a otro ni se sale de la imagen (un título largo sí lo haría)."""
    assert misplaced_texts(figures.lora_adapter_figure()) == []
    title = "Durante el entrenamiento solo cambian las dos matrices pequeñas del adaptador"
    assert title in misplaced_texts(figures.lora_adapter_figure(texts={"title_train": title}))


def test_the_merge_label_fits_between_the_adapter_notes_and_the_merged_box():
    fig = figures.lora_adapter_figure()
    renderer = fig.canvas.get_renderer()
    texts = {t.get_text(): t.get_window_extent(renderer) for t in fig.axes[0].texts}
    label = texts[figures.TEXTS["arrow_merge"]]
    merged_box = next(p for p in fig.axes[0].patches if p.get_facecolor()[:3] == matplotlib.colors.to_rgb(
        figures.MERGED)).get_window_extent(renderer)
    assert label.x1 < merged_box.x0 - 5  # al menos 5 px de aire (antes tocaba la caja: 757 y 757 px)
