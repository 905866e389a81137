"""Las figuras de la lección salen de un script: `make images` (``python -m helpers.figures``) las rehace."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np

from helpers import figures
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
