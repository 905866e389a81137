"""Cada frase de helpers.conclusions dice la verdad de los números que escribe, bajo cualquier semilla.

Las pruebas leen de vuelta los números que la frase muestra (no los valores en bruto) y comprueban lo que
afirma: «se solapan» / «no se solapan», quién queda por encima, «no pasa de X», «N× más», la mediana.
"""

from __future__ import annotations

import random
import re

import pytest

from helpers import conclusions, numbers
from helpers.checks.predictions import verdict
from helpers.numbers import SPACE

SEEDS = range(200)
FORMATS = {"seconds": numbers.seconds, "percent": numbers.percent, "size": numbers.size,
           "ms": lambda value: f"{numbers.integer(value * 1000)}{SPACE}ms"}
SCALES = {"seconds": 2.0, "percent": 1.0, "size": 30e6, "ms": 0.5}


def read(text: str) -> float:
    """Un número escrito a la española con su unidad, de vuelta a float (en unidades base)."""
    return conclusions.as_printed(0, lambda _: text.strip())


def shown_ranges(sentence: str) -> list[tuple[float, float]]:
    """Los dos rangos «nombre: bajo–alto» (o «nombre: valor») de una frase de ``compare``."""
    head = sentence.split(": se solapan")[0].split(": no se solapan")[0]
    ranges = []
    for part in head.split("; "):
        values = [read(v) for v in part.split(": ", 1)[1].split("–")]
        ranges.append((values[0], values[-1]))
    return ranges


def random_range(rng: random.Random, scale: float) -> tuple[float, float]:
    center = rng.uniform(0.05, 1.0) * scale
    width = rng.choice([0.0, 0.001, 0.01, 0.05, 0.2]) * center
    low = center - rng.random() * width
    return low, low + width


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_compare_says_overlap_exactly_when_the_printed_ranges_overlap(kind):
    fmt, said = FORMATS[kind], {"overlap": 0, "apart": 0}
    for seed in SEEDS:
        rng = random.Random(seed)
        a, b = random_range(rng, SCALES[kind]), random_range(rng, SCALES[kind])
        if rng.random() < 0.3:  # rangos casi iguales: el caso que contradecía sus números
            b = (a[0] * (1 + rng.uniform(-0.01, 0.01)), a[1] * (1 + rng.uniform(-0.01, 0.01)))
        sentence = conclusions.compare("A", a, "B", b, fmt, more="tarda más")
        (a_low, a_high), (b_low, b_high) = shown_ranges(sentence)
        printed_overlap = a_low <= b_high and b_low <= a_high
        if ": se solapan" in sentence:
            said["overlap"] += 1
            assert printed_overlap, sentence
        else:
            said["apart"] += 1
            assert not printed_overlap, sentence
            top = "A" if a_low > b_high else "B"
            assert f"{top} tarda más" in sentence, sentence
    assert said["overlap"] > 10 and said["apart"] > 10, said  # las dos ramas se ejercitan


def test_recorded_contradictions_are_now_true():
    # «1,0 s–1,0 s … no se solapan»: los rangos en bruto no se tocan, pero escritos son el mismo número
    sentence = conclusions.compare("adaptador", (1.01, 1.02), "fusionado", (0.96, 0.97), numbers.seconds)
    assert ": se solapan" in sentence and f"adaptador: 1,0{SPACE}s;" in sentence  # sin «1,0 s–1,0 s»
    sentence = conclusions.compare("adaptador", (1.27, 1.34), "fusionado", (1.21, 1.26), numbers.seconds)
    assert ": se solapan" in sentence  # «1,3 s–1,3 s; 1,2 s–1,3 s … no se solapan»
    # «no pasa de un 3 %» junto a un intervalo hasta 3,1 %
    span = conclusions.accuracy_range(0, 120)
    assert conclusions.at_most(span, numbers.percent) == f"no pasa de {numbers.percent(span[1])}"
    assert numbers.percent(span[1]) in numbers.accuracy(0, 120)
    # «9,3 MiB» y «9,4 MiB» del mismo adaptador: la frase escribe sus tamaños con el formato de la tabla
    sentence = conclusions.sizes("el completo", 537_919_488, "LoRA", 9.36 * 2**20, numbers.size)
    assert f"9,4{SPACE}MiB" in sentence and "55× más" in sentence
    assert "ocupan lo mismo" in conclusions.sizes("A", 9.36 * 2**20, "B", 9.39 * 2**20, numbers.size)
    # «¡Muy cerca!» para una predicción exacta, también si es exacta tal como se escribe
    assert "¡Exacto!" in verdict(460_800, 460_800, fmt=numbers.integer)
    assert "¡Exacto!" in verdict(2.0, 2.04, fmt=numbers.seconds) and "Muy cerca" in verdict(1.9, 2.04)


@pytest.mark.parametrize("seed", SEEDS)
def test_at_most_between_and_latency_match_what_they_print(seed):
    rng = random.Random(seed)
    total = rng.choice([8, 32, 40, 120])
    correct = rng.randint(0, total)
    span = conclusions.accuracy_range(correct, total)
    shown = numbers.accuracy(correct, total)
    printed_high = re.search(r"–([\d,]+\s%)\)", shown).group(1)
    assert conclusions.at_most(span, numbers.percent).endswith(printed_high)
    words = conclusions.between(span, numbers.percent)
    assert all(part in shown for part in re.findall(r"[\d,]+(?=\u00a0%)", words))
    times = [rng.uniform(0.5, 1.5) * rng.choice([0.01, 1.0, 150.0]) for _ in range(rng.randint(1, 5))]
    text = conclusions.latency(times)
    median = read(text.split(" (")[0])
    assert median == conclusions.as_printed(sorted(times)[len(times) // 2] if len(times) % 2 else
                                            (sorted(times)[len(times) // 2 - 1] + sorted(times)[len(times) // 2]) / 2,
                                            numbers.seconds)
    ends = re.search(r"; de (.+) a (.+)\)", text)
    if ends:
        low, high = read(ends.group(1)), read(ends.group(2))
        assert low < high and low <= median <= high


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracies_name_the_winner_only_beyond_the_noise(seed):
    rng = random.Random(seed)
    total = rng.choice([16, 32, 40])
    a, b = rng.randint(0, total), rng.randint(0, total)
    sentence = conclusions.accuracies("A", a, "B", b, total)
    intervals = [tuple(read(v + "%") for v in m) for m in re.findall(r"IC\s95\s%: ([\d,]+)–([\d,]+)\s%", sentence)]
    (a_low, a_high), (b_low, b_high) = intervals
    if "se solapan" in sentence and "no se solapan" not in sentence:
        assert a_low <= b_high and b_low <= a_high
    else:
        assert ("A acierta más" in sentence) == (a_low > b_high) and ("B acierta más" in sentence) == (b_low > a_high)


def test_as_printed_reads_every_format_back():
    assert conclusions.as_printed(1.04, numbers.seconds) == 1.0
    assert conclusions.as_printed(337.4, numbers.seconds) == 337
    assert conclusions.as_printed(0.0312, numbers.percent) == pytest.approx(0.031)
    assert conclusions.as_printed(9.36 * 2**20, numbers.size) == pytest.approx(9.4 * 2**20)
    assert conclusions.as_printed(134_515_008, numbers.integer) == 134_515_008
    assert conclusions.as_printed(0.00091, numbers.scientific) == pytest.approx(9.1e-4)
    assert conclusions.as_printed(1.58, numbers.ratio) == pytest.approx(1.6)
    with pytest.raises(ValueError):
        conclusions.as_printed(1, lambda value: "mucho")
