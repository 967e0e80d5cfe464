"""`datagen stats`: the numbers of a set, its acceptance funnel, and the plots for the card."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from datagen.errors import UsageError
from datagen.inspect.stats import FUNNEL, plot_summary, summarize, write_plots
from datagen.reader import open_published
from tests.support.sft_sets import build_sft_set, datagen, hub_layout_copy, read_rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sft_set(tmp_path_factory.mktemp("stats") / "set")


def test_summary_counts_what_the_rows_hold(built: Path) -> None:
    rows = read_rows(built)
    s = summarize(open_published(built))
    assert s.rows == len(rows) == 6
    assert s.by_family == Counter(r["family"] for r in rows)
    assert s.by_task_type == Counter(r["task_type"] for r in rows)
    assert s.by_answer_type == Counter(r["answer_type"] for r in rows)
    assert s.tool_calls == Counter(len(r["verification"]["cells"]) for r in rows)
    assert sum(s.turns.values()) == 6 and min(s.turns) >= 2  # at least one cell, one answer
    assert len(s.image_sizes) == 6 and all(w > 100 and h > 100 for _, w, h in s.image_sizes)


def test_funnel_comes_from_stats_json_when_present(built: Path) -> None:
    stats = json.loads((built / "stats.json").read_text())
    part = stats["splits"]["sft"]
    s = summarize(open_published(built))
    assert s.funnel_source == "stats.json"
    assert s.funnel["verified"] == part["verified"]
    assert s.funnel["published"] == 6
    assert list(s.funnel) == list(FUNNEL)
    assert all(a >= b for a, b in itertools.pairwise(s.funnel.values()))


def test_funnel_from_rejects_when_there_is_no_stats_json(built: Path, tmp_path: Path) -> None:
    bare = hub_layout_copy(built, tmp_path / "bare")
    reasons = ["exec_error"] * 2 + ["wrong_answer"] + ["duplicate"] * 3 + ["timeout"]
    lines = [json.dumps({"reason": r, "id": f"x{i}", "split": "sft"})
             for i, r in enumerate(reasons)]
    lines.append(json.dumps({"reason": "wrong_answer", "split": "rl"}))  # another split's
    lines.append("{not json")  # a broken line does not hide the others
    (bare / "rejects.jsonl").write_text("\n".join(lines) + "\n")
    s = summarize(open_published(bare))
    assert s.funnel_source == "rejects.jsonl"
    # 6 published + 3 duplicates were verified; 1 wrong answer before that; 3 failed to run.
    assert s.funnel == {"generated": 13, "executed": 10, "verified": 9, "deduped": 6,
                        "published": 6}
    assert s.reject_reasons == {"duplicate": 3, "exec_error": 2, "timeout": 1,
                                "wrong_answer": 1}


def test_new_stats_layout_is_read_per_split(built: Path, tmp_path: Path) -> None:
    bare = hub_layout_copy(built, tmp_path / "split-layout")
    (bare / "stats.json").write_text(json.dumps({"splits": {
        "sft": {"rows": 6, "verified": 8, "reject_reasons": {"wrong_answer": 4,
                                                             "near_duplicate": 2}},
        "rl": {"rows": 3}}}))
    s = summarize(open_published(bare))
    assert s.funnel == {"generated": 12, "executed": 12, "verified": 8, "deduped": 6,
                        "published": 6}


def test_plots_are_pngs_named_for_the_card(built: Path, tmp_path: Path) -> None:
    paths = write_plots(built, tmp_path / "plots")
    assert [p.name for p in paths] == ["sft-task_mix.png", "sft-difficulty_answer_type.png",
                                       "sft-funnel.png", "sft-image_sizes.png", "sft-turns.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] >= 400
    # The same set gives the same bytes (builds are reproducible, so are their cards).
    again = plot_summary(summarize(open_published(built)), tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_cli_prints_tables_and_writes_plots_on_a_bare_folder(built: Path,
                                                             tmp_path: Path) -> None:
    bare = hub_layout_copy(built, tmp_path / "bare")
    result = datagen("stats", str(bare))
    assert result.returncode == 0, result.stderr
    assert "rows by task type" in result.stdout and "published rows only" in result.stdout
    assert len(list((bare / "plots").glob("sft-*.png"))) == 5


def test_a_folder_without_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hello")
    with pytest.raises(UsageError, match="no data/sft-"):
        open_published(tmp_path)
    with pytest.raises(UsageError, match="not a Hub dataset id"):
        open_published(tmp_path / "missing" / "folder")
