"""The family registry: every scene kind and question type builds a task that the scripted
teacher solves and verification keeps. A kind or type added without its phrasings, template or
script fails here, not inside a shard."""

from __future__ import annotations

import pytest

from datagen.check.verify import verify_trajectory
from datagen.config import BuildConfig
from datagen.pipeline.rollout import rollout
from datagen.records import Task
from datagen.sandbox import Sandbox
from datagen.scenes import FAMILY_NAMES
from datagen.scenes.base import Family
from datagen.scenes.chart import CHART_KINDS
from datagen.scenes.registry import FAMILIES, get_family
from datagen.teachers.scripted import SCRIPTS, ScriptedTeacher
from datagen.templates import load_yaml, resource_dir

# Small search scenes: the same objects and questions, a fraction of the rendering time.
_OPTIONS = {"max_side": 1024, "clutter": 1.0}
_SCAN = 400  # scenes looked at per family before a kind or type counts as never posed


def _one_task_of_each(family: Family) -> dict[str, Task]:
    """The first task of every kind (``kind:NAME``) and every question type (``type:NAME``)."""
    wanted = {f"kind:{k}" for k in family.kinds} | {f"type:{q}" for q in family.questions}
    found: dict[str, Task] = {}
    for index in range(_SCAN):
        scene = family.make_scene(index, 0, _OPTIONS)
        for task in family.pose(scene, len(family.questions)):
            for key in (f"kind:{scene.kind}", f"type:{task.question_type}"):
                found.setdefault(key, task)
        if wanted <= set(found):
            break
    missing = sorted(wanted - set(found))
    assert not missing, f"{family.name}: never posed in {_SCAN} scenes: {missing}"
    return found


def test_the_registry_lists_every_family_once() -> None:
    assert tuple(FAMILIES) == FAMILY_NAMES
    assert set(SCRIPTS) == set(FAMILY_NAMES)
    assert BuildConfig(families=FAMILY_NAMES).families == FAMILY_NAMES
    for name in FAMILY_NAMES:
        assert get_family(name).name == name


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_kind_and_question_type_builds_a_task_the_scripted_teacher_solves(
        name: str, sandbox: Sandbox) -> None:
    family = get_family(name)
    tasks = _one_task_of_each(family)
    teacher = ScriptedTeacher()
    failed = {}
    for key, task in tasks.items():
        assert task.question.strip() and task.answer, key
        assert task.answer_type == family.questions[task.question_type].answer_type
        verdict = verify_trajectory(rollout(task, teacher, sandbox), 6)
        if not verdict.kept:
            failed[key] = f"{verdict.reason}: {verdict.detail}"
    assert not failed, failed


def test_every_chart_kind_has_its_measuring_template_and_thought() -> None:
    thoughts = load_yaml("teacher/chart.yaml")
    for kind in CHART_KINDS:
        assert (resource_dir("templates") / "code" / f"chart_{kind.measure}.py.j2").is_file(), \
            kind.name
        assert thoughts.get(kind.think), kind.name


def test_a_kind_asking_an_unknown_question_type_fails_at_import() -> None:
    chart = get_family("chart")
    with pytest.raises(ImportError, match="unknown question types"):
        Family(name="chart", kinds={"vbar": ("value", "median")}, questions=chart.questions,
               make_scene=chart.make_scene, pose=chart.pose)


def test_a_question_type_without_phrasings_fails_at_import() -> None:
    chart = get_family("chart")
    extra = {**chart.questions, "median": chart.questions["value"]}
    with pytest.raises(ImportError, match="no phrasings for"):
        Family(name="chart", kinds={"vbar": ("value",)}, questions=extra,
               make_scene=chart.make_scene, pose=chart.pose)
