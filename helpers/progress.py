"""La barra de `trainer.train()` en los cuadernos: una línea en español, sin diccionarios de registro."""

from __future__ import annotations

import sys

from tqdm.std import tqdm  # barra de texto: la de tqdm.auto, sin ipywidgets, avisa y sale igual de texto
from transformers import TrainerCallback

from .numbers import decimal


class TrainingBar(TrainerCallback):
    """La barra de `trainer.train()`: una línea que se actualiza, con la última pérdida.

    `quiet_library_output()` la pone en lugar de la del `Trainer` (en un cuaderno, una tabla HTML en
    inglés; fuera, tqdm con un diccionario por registro; con el nivel de avisos bajado, solo los
    diccionarios). Las pérdidas completas siguen en ``trainer.state.log_history``.
    """

    def __init__(self):
        self.bar, self.losses = None, {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.losses = {}
            self.bar = tqdm(total=state.max_steps, desc="Entrenando", file=sys.stdout,
                            bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} pasos "
                                       "[{elapsed}<{remaining}{postfix}]")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        for key, label in (("loss", "pérdida"), ("eval_loss", "validación")):
            if key in logs:
                self.losses[label] = decimal(logs[key], 3)
        text = " · ".join(f"{label} {value}" for label, value in self.losses.items())
        self.bar.set_postfix_str(text, refresh=False)  # se ve en la próxima actualización de la barra

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
