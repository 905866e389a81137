"""El taller de quien escribe el curso: adaptadores publicados, cuadernos de ejercicios, figuras y páginas."""
