"""Salida de las librerías en los cuadernos: sin ruido que cambie de una ejecución a otra."""

from __future__ import annotations

import warnings


def quiet_library_output() -> None:
    """Quita lo que no enseña nada; deja los errores y la barra de `trainer.train()`.

    Llámala antes de importar transformers, peft o trl. Quita:

    - el aviso «IProgress not found» de tqdm (sin ipywidgets, las barras salen como texto y van bien);
    - avisos informativos de transformers (los errores se siguen viendo);
    - las barras «Loading weights» / «Writing model shards», que cambian en cada ejecución;
    - el FutureWarning de `is_gradient_checkpointing`, que sale de dentro de transformers 5 y peft 0.21,
      no de nuestro código (nosotros ya usamos `activation_checkpointing`).
    """
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
