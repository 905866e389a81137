"""Código compartido del curso curso-lora: modelo base, tarea, evaluación, entrenamiento y gráficas."""
