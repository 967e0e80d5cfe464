"""Chart questions an annotator would sign: plausible data, one reading per question, no
guessable answers, varied and grammatical wording (issue 18, chart part)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from datagen.records import Task
from datagen.scenes import chart_rules
from datagen.scenes.chart import CHART_KINDS, QUESTIONS, _render, make_scene, pose
from datagen.scenes.chart_rules import check, near_twins, rule_counts
from datagen.templates import load_yaml

# Generation only (no sandbox): every question type of every scene, a few thousand tasks.
SCENES = [make_scene(i, 18) for i in range(220)]
ALL = [t for s in SCENES for t in pose(s, len(QUESTIONS))]


def _first(pred) -> Task:  # type: ignore[no-untyped-def]
    return next(t for t in ALL if pred(t))


def _with(task: Task, **changes: object) -> Task:
    return dataclasses.replace(task, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# plausible data


def test_line_charts_and_trends_run_over_ordered_categories() -> None:
    lines = [s for s in SCENES if s.kind == "line"]
    assert lines and all(s.spec["ordered"] for s in lines)
    assert all(t.scene.spec["ordered"] for t in ALL if t.facts["op"] == "trend")


def test_series_belong_to_one_group_of_their_topic_and_titles_vary() -> None:
    topics = load_yaml("scenes/chart.yaml")["topics"]
    for scene in SCENES:
        spec = scene.spec
        if scene.kind in ("pie", "scatter"):
            continue
        topic = next(t for t in topics if t["metric"] == spec["value_axis"])
        names = {s["name"] for s in spec["series"]}
        assert any(names <= set(group) for group in topic["series"]), (names, topic["metric"])
        assert spec["range"][0] * 0 == 0 and scene.kind in topic["kinds"]
    titles = {s.spec["title"] for s in SCENES}
    assert len(titles) >= 0.6 * len(SCENES), len(titles)
    # Negative values where the topic has them, and only there.
    negative = [s for s in SCENES if min(v for x in s.spec["series"]
                                         for v in x.get("values", [0])) < 0]
    assert negative and all(s.kind == "line" and s.spec["ticks"][0] < 0 for s in negative)


# ---------------------------------------------------------------------------------------------
# one reading per question: each rule passes on what is posed and fails on a broken task


def test_every_posed_question_passes_every_rule_that_applies() -> None:
    counts = rule_counts(ALL)
    assert all(c["failed"] == 0 for c in counts.values()), counts
    assert all(c["checked"] > 0 for c in counts.values()), counts
    for task in ALL:
        assert sorted(check(task)) == task.facts["checks"]


def test_stacked_questions_say_segment_or_total_and_a_vague_one_fails() -> None:
    total = _first(lambda t: t.scene.kind == "stacked" and t.facts.get("total")
                   and t.facts["op"] == "value")
    segment = _first(lambda t: t.scene.kind == "stacked" and t.facts.get("series")
                     and t.facts["op"] == "mean")
    assert "all segments" in total.question and check(total)["segment_or_total"]
    assert check(segment)["segment_or_total"]
    vague = f"What is the value of {total.facts['a']}?"
    assert not check(_with(total, question=vague))["segment_or_total"]
    series = segment.facts["series"]
    assert not check(_with(segment, question=f"On average, what value does each "
                                             f"{series} have?"))["segment_or_total"]


def test_unlabelled_numbers_state_their_precision_and_match_to_half_a_step() -> None:
    task = _first(lambda t: t.facts["op"] == "value" and not t.scene.spec["value_labels"]
                  and t.scene.kind == "line")
    step = task.scene.spec["step"]
    assert f"nearest {step}" in task.question and float(task.answer) % step == 0
    gold = float(task.answer)
    from datagen.check.matcher import match
    # Within a quarter step either way matches (the matcher is relative: towards zero it
    # accepts a little less than half a step); the neighbouring grid values do not.
    assert match(str(gold + 0.25 * step), task.answer, "number", task.tolerance)
    assert match(str(gold - 0.25 * step), task.answer, "number", task.tolerance)
    assert not match(str(gold + step), task.answer, "number", task.tolerance)
    assert not match(str(gold - step), task.answer, "number", task.tolerance)
    silent = task.question.split(" Read")[0].split(" Take")[0].split(" Values")[0]
    assert "nearest" not in silent
    assert not check(_with(task, question=silent))["precision_stated"]
    assert not check(_with(task, tolerance=0.01))["precision_stated"]
    labelled = _first(lambda t: t.facts["op"] == "value" and t.scene.spec["value_labels"])
    assert "nearest" not in labelled.question and "precision_stated" not in check(labelled)


def test_near_twin_colours_never_share_a_chart_and_a_twin_fails_the_legend_rule() -> None:
    for scene in SCENES:
        spec = scene.spec
        names = spec.get("slice_color_names") or [s["color_name"] for s in spec["series"]]
        assert not any(near_twins(a, b) for i, a in enumerate(names) for b in names[i + 1:])
    assert near_twins("blue", "navy") and near_twins("cyan", "teal")
    assert near_twins("gold", "olive") and not near_twins("blue", "orange")
    task = _first(lambda t: t.facts["op"] == "legend" and t.scene.kind == "grouped")
    assert check(task)["distinct_colours"]
    spec = {**task.scene.spec, "series": [dict(s) for s in task.scene.spec["series"]]}
    other = next(s for s in spec["series"] if s["color_name"] != task.facts["color"])
    twin_of = {"blue": "navy", "navy": "blue", "cyan": "teal", "teal": "cyan", "gold": "orange",
               "orange": "gold", "olive": "gold", "purple": "pink", "pink": "purple"}
    other["color_name"] = twin_of.get(task.facts["color"], task.facts["color"])
    scene = dataclasses.replace(task.scene, spec=spec)
    assert not check(_with(task, scene=scene))["distinct_colours"]


def test_colliding_labels_are_measured_and_fail_the_rule() -> None:
    scene = next(s for s in SCENES if s.kind == "vbar")
    spec = {**scene.spec, "categories": ["Operations" * 2 + str(i)
                                         for i in range(len(scene.spec["categories"]))],
            "tick_rotation": 0}
    _, layout = _render(spec)
    assert layout["collisions"], "long labels side by side must be found overlapping"
    task = _first(lambda t: t.scene.kind == "vbar")
    broken = dataclasses.replace(task.scene, spec={**task.scene.spec, "layout": layout})
    assert not check(_with(task, scene=broken))["labels_clear"]
    assert all(not s.spec["layout"]["collisions"] for s in SCENES)


def test_trends_need_ordered_categories() -> None:
    task = _first(lambda t: t.facts["op"] == "trend")
    spec = {**task.scene.spec, "ordered": False}
    assert not check(_with(task, scene=dataclasses.replace(task.scene, spec=spec)))[
        "ordered_categories"]


# ---------------------------------------------------------------------------------------------
# balanced answers: a blind guess of the commonest answer does at most 10 points over chance


def _chance(task: Task) -> float | None:
    """A blind guesser's odds on ``task``: one over its possible answers (None: open numbers)."""
    spec, op = task.scene.spec, task.facts["op"]
    if task.answer_type == "yesno":
        return 1 / 2
    if task.answer_type == "choice":
        return 1 / len(task.facts["options"])
    if op == "trend":
        return 1 / 3
    if op == "count_above":
        return 1 / (len(spec["categories"]) + 1)
    if op == "scatter_count_above":
        points = next(s["points"] for s in spec["series"]
                      if task.facts["series"] in (None, s["name"]))
        return 1 / (len(points) + 1)
    if op == "scatter_count":
        return 1 / 13  # 6 to 18 points
    if op == "legend":
        return 1 / len(spec["categories"] if spec["kind"] == "pie" else spec["series"])
    if op in ("max", "min"):
        return 1 / len(spec["categories"])
    return None


def test_no_question_type_has_a_safe_blind_guess() -> None:
    by_type: dict[str, list[Task]] = defaultdict(list)
    for task in ALL:
        by_type[task.facts["op"]].append(task)
    assert len(ALL) >= 2000
    for op, tasks in by_type.items():
        answers = Counter(t.answer for t in tasks)
        share = answers.most_common(1)[0][1] / len(tasks)
        odds = [_chance(t) for t in tasks]
        if odds[0] is None:
            assert share <= 0.10, (op, answers.most_common(3))
            continue
        chance = sum(o for o in odds if o is not None) / len(odds)
        assert share <= chance + 0.10, (op, round(share, 3), round(chance, 3),
                                        answers.most_common(4))
    trends = Counter(t.answer for t in by_type["trend"])
    assert set(trends) == {"increasing", "decreasing", "fluctuating"}, trends
    counts = Counter(t.answer for t in by_type["count_above"])
    assert "0" in counts, counts


def test_option_letters_are_balanced() -> None:
    letters = Counter(t.answer for t in ALL if t.answer_type == "choice")
    total = sum(letters.values())
    assert total >= 100 and max(letters.values()) / total <= 0.25 + 0.10, letters


# ---------------------------------------------------------------------------------------------
# wording


def test_every_type_has_eight_phrasings_and_questions_are_mostly_distinct() -> None:
    phrasings = load_yaml("questions/chart.yaml")
    for name in QUESTIONS:
        assert len(set(phrasings[name])) >= 8, name
    sample = [ALL[i] for i in np.random.default_rng(0).choice(len(ALL), 1000, replace=False)]
    assert len({t.question for t in sample}) >= 0.8 * len(sample)


@pytest.mark.parametrize("pattern", [
    r"\b[Aa]n [b-df-hj-np-tv-z]",  # "an" before a consonant
    r"\b[Aa] [aeio]\w",  # "a" before a vowel ("a outline")
    r"(?i)how many times (?!as )\w+ is",  # "How many times Kenya is Spain"
    r"(?i)\?\s+(Two|One) decimals?\.",
    r"(?i)True or false, answered",
    r"  ",
])
def test_questions_are_grammatical(pattern: str) -> None:
    bad = [t.question for t in ALL if re.search(pattern, t.question)]
    assert not bad, bad[:3]
    assert not any(t.question[0].islower() for t in ALL)


def test_every_kind_asks_its_question_types() -> None:
    asked = {(t.scene.kind, t.facts["op"]) for t in ALL}
    for kind in CHART_KINDS:
        missing = [q for q in kind.questions if (kind.name, q) not in asked]
        if kind.name in ("vbar", "hbar"):  # one series: no legend to ask about
            missing = [q for q in missing if q != "legend"]
        assert not missing, (kind.name, missing)
    assert chart_rules.NUMBER_READS
