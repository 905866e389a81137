"""`helpers.numbers`: formatos en español y el intervalo de Wilson frente a valores publicados."""

import pandas as pd
import pytest

from helpers.numbers import (
    SPACE,
    accuracy,
    decimal,
    integer,
    percent,
    ratio,
    seconds,
    size,
    table,
    wilson_interval,
)


def people(text: str) -> str:
    """Los esperados marcan con «_» el espacio de no separación (los espacios normales se quedan)."""
    return text.replace("_", SPACE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (integer(9216), "9_216"),
        (integer(134_515_008), "134_515_008"),
        (integer(2.0), "2"),
        (integer(999), "999"),
        (decimal(-1234.567, 2), "-1_234,57"),
        (percent(0.0034, 2), "0,34_%"),
        (percent(112 / 120), "93,3_%"),
        (ratio(1.58), "1,6×"),
        (size(537_919_488), "513_MiB"),
        (size(9_768_960), "9,3_MiB"),
        (size(1023), "1_023_B"),
        (seconds(2.13), "2,1_s"),
        (seconds(337.4), "337_s"),
    ],
)
def test_formats(text, expected):
    assert text == people(expected)


# Newcombe (1998), «Two-sided confidence intervals for the single proportion», Statistics in Medicine
# 17:857-872, tabla II, método 3 (Wilson sin corrección de continuidad), al 95 %.
@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_published_values(correct, total, low, high):
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=5e-5)


def test_wilson_is_symmetric_and_narrows_with_confidence():
    low, high = wilson_interval(20, 32)
    assert wilson_interval(12, 32) == pytest.approx((1 - high, 1 - low))
    low90, high90 = wilson_interval(20, 32, confidence=0.90)
    assert low < low90 < 20 / 32 < high90 < high


@pytest.mark.parametrize(("correct", "total"), [(5, 0), (-1, 10), (11, 10)])
def test_wilson_rejects_impossible_counts(correct, total):
    with pytest.raises(ValueError):
        wilson_interval(correct, total)


def test_accuracy_text():
    assert accuracy(112, 120) == people("112/120 (93,3_%; IC_95_%: 87,4–96,6_%)")


def test_table_formats_columns_and_leaves_the_original():
    frame = pd.DataFrame({"params": [134_515_008, 9216], "share": [0.5, 0.0034], "name": ["full", "lora"]})
    shown = table(frame, share=lambda x: percent(x, 2))
    assert list(shown["params"]) == [people("134_515_008"), people("9_216")]
    assert list(shown["share"]) == [people("50,00_%"), people("0,34_%")]
    assert list(shown["name"]) == ["full", "lora"]
    assert frame["params"].dtype.kind == "i"
    with pytest.raises(KeyError):
        table(frame, missing=percent)


def test_scientific_is_written_the_spanish_way():
    from helpers.numbers import scientific

    assert scientific(0.00091) == "9,1·10⁻⁴"
    assert scientific(9.96e-4) == "1,0·10⁻³"  # el redondeo sube de exponente
    assert scientific(123456.0, 2) == "1,23·10⁵" and scientific(-5e-3) == "-5,0·10⁻³"
    assert scientific(0) == "0"


def test_a_prediction_is_compared_with_the_measurement_without_points():
    from helpers.checks.predictions import verdict

    assert "No escribiste" in verdict(None, 10)
    assert "Muy cerca" in verdict(9, 10)
    assert "¡Exacto!" in verdict(10, 10) and "Muy cerca" not in verdict(10, 10)
    assert "¡Exacto!" in verdict(2441, 2441.2, fmt=lambda v: str(round(v)))  # igual tal como se escribe
    assert "te quedaste corto" in verdict(1_000, 2_441_216, fmt=str) and "2441,2 veces" not in verdict(1, 2)
    assert "te pasaste" in verdict(50, 10) and "5,0 veces" in verdict(50, 10)
    assert "no es un número" in verdict("mucho", 10)
