"""Lo que comparten las pruebas de comprobaciones: llamar a una como en el cuaderno y leer lo que ve el alumno."""


def run(check, capsys, *args):
    """(aprobado, texto que ve el alumno)."""
    capsys.readouterr()
    passed = check(*args)
    return passed, capsys.readouterr().out


def assert_fails(check, capsys, *args, says):
    """La comprobación responde ❌ (sin traza) y su mensaje contiene cada fragmento de ``says``."""
    passed, text = run(check, capsys, *args)
    assert passed is False, text
    assert text.startswith("❌"), text
    assert "Traceback" not in text
    for fragment in [says] if isinstance(says, str) else says:
        assert fragment in text, text
    return text
