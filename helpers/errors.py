"""Errores del curso: cada uno dice, en español, qué pasó y qué hacer."""


class CourseError(RuntimeError):
    """Error con un mensaje pensado para quien sigue el curso."""


class ModelNotAvailableError(CourseError):
    """No se encuentra o no se puede usar el modelo base."""


class DeviceError(CourseError):
    """Se pidió un dispositivo desconocido o que no está disponible."""
