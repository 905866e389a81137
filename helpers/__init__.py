"""Código compartido del curso curso-lora: modelo base, tarea, evaluación, entrenamiento y gráficas."""

import os

# En los Mac con GPU (MPS), lo que MPS aún no tiene se hace en la CPU en vez de fallar. Torch lo lee al
# cargarse: por eso va aquí, que los cuadernos importan antes que torch.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
