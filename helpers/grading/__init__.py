"""La corrección: una cadena de pasos pequeños, un módulo por paso (ver ``helpers.grading.chain``).

``read`` → ``prepare`` → ``run`` (en ``sandbox``, sobre la copia de ``release``) → ``collect`` → ``judge``
→ ``report``; ``chain`` los encadena y ``cli`` es la orden (``python -m helpers.grading``).
"""
