"""La maquinaria de las comprobaciones: ✅/❌/⏳ para el alumno, la entrega como datos, el juicio aparte."""

import importlib
import pkgutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import helpers.checks as checks_pkg
from helpers import paths
from helpers.checks import STRICT_ENV, Exercise, core, exercise, expect, handover
from helpers.checks.core import solution_code
from helpers.checks.registry import EXERCISES, NOTEBOOKS, POINTS_BY_LEVEL, exercises_for, info


@pytest.fixture
def shown(monkeypatch):
    """Lo que las comprobaciones muestran: una lista de paquetes MIME."""
    bundles = []
    monkeypatch.setattr(core, "_show", bundles.append)
    return bundles


def make_lora_config_check():
    """Una comprobación de verdad, con el nombre de un ejercicio del registro (🐢, 1 punto)."""
    @exercise("lora_finetuning", hint=("Mira los argumentos r y lora_alpha de LoraConfig.",
                                        "`LoraConfig(r=..., lora_alpha=...)`"),
              handover={"config": handover.Value()})
    def lora_config(config):
        """Comprueba la LoraConfig."""
        expect(config is not None, "Todavía no hay configuración: crea `peft_config = LoraConfig(...)`.")
        rank = getattr(config, "r", None)
        expect(rank == 8, f"El rango es {rank!r}; prueba con r=8.")
        return "Rango 8: bien."
    return lora_config


class Config:
    def __init__(self, r):
        self.r = r


def test_passing_check_shows_tick_and_carries_no_result_record(shown):
    check = make_lora_config_check()
    assert isinstance(check, Exercise)
    assert check(Config(8)) is True
    (bundle,) = shown
    entry = info("lora_finetuning", "lora_config")
    assert set(bundle) == {"text/plain", "text/markdown"}  # nada que una corrección pudiera leer como nota
    for text in (bundle["text/plain"], bundle["text/markdown"]):
        assert "✅" in text and entry.level in text and entry.title in text
        unit = "punto" if entry.points == 1 else "puntos"
        assert f"({entry.points}/{entry.points} {unit})" in text and "Rango 8: bien." in text


def test_wrong_answer_shows_cross_and_the_specific_message(shown):
    check = make_lora_config_check()
    assert check(Config(16)) is False
    text = shown[0]["text/plain"]
    assert "❌" in text and "El rango es 16; prueba con r=8." in text and "(0/1 punto)" in text and "✅" not in text


def test_an_untouched_exercise_is_not_attempted_not_wrong(shown):
    check = make_lora_config_check()
    assert check(None) is False
    assert check.run(None).status == core.NOT_ATTEMPTED
    assert shown[0]["text/plain"].startswith("⏳") and "Todavía no has hecho" in shown[0]["text/plain"]


def test_in_grading_the_arguments_travel_as_data_and_the_grader_judges_them(tmp_path, monkeypatch, shown):
    check = make_lora_config_check()
    monkeypatch.setenv(handover.HANDOVER_ENV, str(tmp_path))
    assert check(8) is False  # un int no tiene .r: el alumno ve ❌…
    assert not check.judge(tmp_path, seed := 1).passed  # …y quien corrige, también
    check(None)
    assert check.judge(tmp_path, seed).status == core.NOT_ATTEMPTED
    assert check.judge(tmp_path / "otra", seed).status == core.NOT_ATTEMPTED  # nada entregado


def test_a_patched_run_in_the_notebook_does_not_change_the_grader(tmp_path, monkeypatch, shown):
    """Lo que el cuaderno parchee vive en su proceso; quien corrige vuelve a comprobar los datos."""
    check = make_lora_config_check()
    monkeypatch.setenv(handover.HANDOVER_ENV, str(tmp_path))
    monkeypatch.setattr(check, "_check", lambda config: "¡Correcto!")
    assert check(16) is True
    monkeypatch.undo()
    assert not make_lora_config_check().judge(tmp_path, 1).passed


def test_handover_formats_must_name_real_arguments():
    with pytest.raises(TypeError, match="formatos para argumentos que no tiene"):
        @exercise("lora_finetuning", hint="…", handover={"cfg": handover.Value()})
        def lora_config(config):
            return "?"


def test_an_exception_inside_a_check_is_a_cross_not_a_traceback(shown):
    @exercise("lora_finetuning", hint="…", handover={"config": handover.Value()})
    def lora_config(config):
        return config.peft_type.value  # AttributeError con un objeto equivocado

    assert lora_config("no soy una LoraConfig") is False
    text = shown[0]["text/plain"]
    assert "❌" in text and "AttributeError" in text and "saltó un error" in text


def test_no_praise_means_a_default_success_message(shown):
    @exercise("lora_finetuning", hint="…", handover={"config": handover.Value()})
    def lora_config(config):
        expect(True, "nunca")

    assert lora_config(1) is True
    assert "¡Correcto!" in shown[0]["text/plain"]


def test_strict_mode_raises_on_failure_but_still_shows_it(shown, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    check = make_lora_config_check()
    assert check(Config(8)) is True  # lo correcto no lanza
    with pytest.raises(AssertionError, match=r"\[lora_config\] El rango es 4; prueba con r=8."):
        check(Config(4))
    assert "❌" in shown[-1]["text/plain"]


def test_without_strict_mode_failure_returns_false(shown, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "0")
    assert make_lora_config_check()(Config(4)) is False


def test_outside_ipython_the_text_is_printed(capsys):
    check = make_lora_config_check()
    check(Config(2))
    out = capsys.readouterr().out
    assert "❌" in out and "prueba con r=8" in out


def test_inside_ipython_the_whole_bundle_is_displayed_raw(monkeypatch):
    import IPython
    import IPython.display

    calls = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: calls.append((obj, raw)))
    make_lora_config_check()(Config(8))
    ((bundle, raw),) = calls
    assert raw is True and "✅" in bundle["text/markdown"]


def test_hint_comes_in_two_steps_and_repr(shown):
    check = make_lora_config_check()
    check.hint()
    first = shown[0]["text/plain"]
    assert "💡 Pista 1/2" in first and "Mira los argumentos r y lora_alpha" in first and "hint(2)" in first
    assert "LoraConfig(r=...," not in first  # la forma del código, solo en el segundo paso
    check.hint(2)
    assert "LoraConfig(r=..., lora_alpha=...)" in shown[1]["text/plain"] and ".solution()" in shown[1]["text/plain"]
    check.hint(3)
    assert "tiene 2 pasos" in shown[2]["text/plain"]
    assert "lora_config" in repr(check) and ".hint()" in repr(check)
    assert check.__doc__ == "Comprueba la LoraConfig."


def test_a_check_must_be_in_the_registry():
    with pytest.raises(KeyError, match="No hay ningún ejercicio"):
        @exercise("lora_finetuning", hint="…", handover={})
        def not_an_exercise(x):
            return "?"


# --- solution(): se lee de solutions/ (la única fuente) ----------------------------------------------

@pytest.fixture
def solutions_dir(tmp_path, monkeypatch):
    """Un cuaderno de soluciones sintético con dos ejercicios, como carpeta de soluciones del curso."""
    nb = new_notebook(cells=[
        new_markdown_cell("## 🐢 Ejercicio"),
        new_code_cell("from helpers.checks import finetuning as checks"),
        new_code_cell("### BEGIN SOLUTION\npeft_config = LoraConfig(r=8)\n### END SOLUTION"),
        new_code_cell("checks.lora_config(peft_config)"),
        new_code_cell("x = 1\n### BEGIN SOLUTION\ntrainer = SFTTrainer(model)\n### END SOLUTION"),
        new_code_cell("for r in RANKS:\n    ### BEGIN SOLUTION\n    trainer.train()\n    ### END SOLUTION\n"
                      "    pass"),
        new_code_cell("checks.sft_trainer(trainer)"),
        new_code_cell("checks.rank_sweep(None)"),
    ], metadata={"curso_lora": {"notebook": "lora_finetuning"}})
    nbformat.write(nb, tmp_path / "lora_finetuning.ipynb")
    monkeypatch.setattr(paths, "SOLUTIONS_DIR", tmp_path)
    return tmp_path


def test_solution_code_is_the_region_before_the_check(solutions_dir):
    assert solution_code("lora_finetuning", "lora_config") == "peft_config = LoraConfig(r=8)"
    assert solution_code("lora_finetuning", "sft_trainer") == "trainer = SFTTrainer(model)\n\ntrainer.train()"
    assert "no encuentro la solución" in solution_code("lora_finetuning", "rank_sweep")
    assert solution_code("lora_finetuning", "lora_config", solutions_dir=solutions_dir) == \
        "peft_config = LoraConfig(r=8)"


def test_solution_shows_the_code(solutions_dir, shown):
    make_lora_config_check().solution()
    (bundle,) = shown
    assert "peft_config = LoraConfig(r=8)" in bundle["text/plain"]
    assert "```python\npeft_config = LoraConfig(r=8)\n```" in bundle["text/markdown"]


def test_solution_without_the_solutions_notebook_explains_instead_of_crashing(tmp_path, monkeypatch, shown):
    monkeypatch.setattr(paths, "SOLUTIONS_DIR", tmp_path / "no_existe")
    make_lora_config_check().solution()
    assert "las soluciones no están disponibles" in shown[0]["text/plain"]
    (tmp_path / "lora_finetuning.ipynb").write_text("{roto", encoding="utf-8")
    assert "no puedo leer" in solution_code("lora_finetuning", "lora_config", solutions_dir=tmp_path)


# --- el registro ------------------------------------------------------------------------------------

def test_registry_points_and_names():
    assert {e.points for e in EXERCISES} <= set(POINTS_BY_LEVEL.values())
    assert all(e.points == POINTS_BY_LEVEL[e.level] for e in EXERCISES)
    assert set(NOTEBOOKS) == {"lora_finetuning", "load_lora_adapter_example", "lora_advanced", "lora_deploy"}
    assert len({e.name for e in EXERCISES}) == len(EXERCISES)  # nombres únicos: la entrega va por nombre
    assert [e.name for e in exercises_for("load_lora_adapter_example")] == [
        "load_adapter", "switch_adapters", "unload_adapters", "merge_adapter"]
    with pytest.raises(KeyError):
        info("lora_finetuning", "no_existe")


def _course_exercises():
    """Los objetos Exercise de los módulos de comprobaciones que ya existen, por cuaderno."""
    found = {}
    for module in pkgutil.iter_modules(checks_pkg.__path__):
        if module.name in ("core", "registry"):
            continue
        mod = importlib.import_module(f"helpers.checks.{module.name}")
        for value in vars(mod).values():
            if isinstance(value, Exercise):
                found.setdefault(value.info.notebook, {})[value.info.name] = (module.name, value)
    return found


def test_every_registered_exercise_has_one_check_with_a_hint():
    found = _course_exercises()
    if not found:
        pytest.skip("todavía no hay módulos de comprobaciones")
    for notebook, exercises in found.items():
        assert set(exercises) == {e.name for e in exercises_for(notebook)}, notebook
        assert len({module for module, _ in exercises.values()}) == 1, f"{notebook}: un módulo por cuaderno"
        for name, (_, check) in exercises.items():
            idea, shape = check._hints  # dos pasos: la idea y la forma del código
            assert idea.strip() and shape.strip(), f"{name}: falta un paso de la pista"
            assert "..." in shape or "…" in shape, f"{name}: la forma del código deja huecos (...), no es la solución"
