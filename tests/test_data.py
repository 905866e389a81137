"""La tarea: determinista, conjuntos disjuntos, formatos correctos, JSONL ida y vuelta."""

import datetime as dt

import pytest
from datasets import load_dataset

from helpers.data import FORMATS, answer, format_date, make_splits, phrase


@pytest.mark.parametrize("day, iso, us, en, dotted", [
    (dt.date(2021, 1, 1), "2021-01-01", "01/01/2021", "January 1, 2021", "01.01.2021"),
    (dt.date(1999, 12, 31), "1999-12-31", "12/31/1999", "December 31, 1999", "31.12.1999"),
    (dt.date(2024, 2, 29), "2024-02-29", "02/29/2024", "February 29, 2024", "29.02.2024"),
    (dt.date(2021, 3, 5), "2021-03-05", "03/05/2021", "March 5, 2021", "05.03.2021"),
])
def test_formats_on_edge_dates(day, iso, us, en, dotted):
    assert [format_date(day, fmt) for fmt in ("iso", "us", "en", "dotted")] == [iso, us, en, dotted]


def test_the_trained_format_is_not_one_a_shipped_adapter_produces():
    from helpers.data import SHIPPED_FORMATS, TRAINED_FORMAT
    from helpers.shipped import ADAPTER_FORMATS

    assert set(SHIPPED_FORMATS) == set(ADAPTER_FORMATS) and TRAINED_FORMAT not in SHIPPED_FORMATS
    day = dt.date(2021, 3, 5)
    assert format_date(day, TRAINED_FORMAT) not in {format_date(day, fmt) for fmt in SHIPPED_FORMATS}


def test_unknown_format_is_explained():
    with pytest.raises(ValueError, match="Formato desconocido"):
        make_splits("xml")


def test_splits_are_deterministic_and_sized():
    a, b = make_splits("iso", seed=3), make_splits("iso", seed=3)
    assert {k: len(v) for k, v in a.items()} == {"train": 512, "validation": 48, "test": 120}
    for split in a:
        assert a[split].to_list() == b[split].to_list()
    assert make_splits("iso", seed=4)["test"].to_list() != a["test"].to_list()


def test_no_date_in_two_splits():
    splits = make_splits("iso")
    dates = {name: {answer(r) for r in ds} for name, ds in splits.items()}
    assert sum(len(d) for d in dates.values()) == sum(len(ds) for ds in splits.values())  # sin repetidas
    assert not dates["train"] & dates["test"]
    assert not dates["train"] & dates["validation"]
    assert not dates["validation"] & dates["test"]


def test_same_inputs_for_every_format():
    by_format = {fmt: make_splits(fmt, sizes={"train": 20, "validation": 5, "test": 5}) for fmt in FORMATS}
    prompts = {fmt: [r["prompt"] for r in s["test"]] for fmt, s in by_format.items()}
    assert prompts["iso"] == prompts["us"] == prompts["en"] == prompts["dotted"]
    answers = {fmt: answer(s["test"][0]) for fmt, s in by_format.items()}
    assert len(set(answers.values())) == len(FORMATS)


def test_several_phrasings_in_spanish():
    rows = make_splits("iso")["train"]
    phrases = [phrase(r) for r in rows]
    assert any(p.startswith("el ") for p in phrases)
    assert any(p.split()[0] in {"lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo",
                                "lunes,", "martes,", "miércoles,", "jueves,", "viernes,", "sábado,", "domingo,"}
               for p in phrases)
    assert any(" del " in p for p in phrases) and any("." in p for p in phrases)


def test_conversational_prompt_completion_format():
    row = make_splits("iso")["train"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert [m["role"] for m in row["completion"]] == ["assistant"]


def test_jsonl_round_trip(tmp_path):
    train = make_splits("us")["train"]
    path = tmp_path / "train.jsonl"
    train.to_json(path)
    again = load_dataset("json", data_files=str(path), split="train")
    assert again.to_list() == train.to_list()
