"""Publishing: a folder that `datasets.load_dataset(out, "sft")` reads, with card and rejects."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from datagen.config import BuildConfig
from datagen.errors import RunError
from datagen.paths import shard_dir
from datagen.pipeline.shards import ShardSummary, prepare_output, run_shard, shard_files
from datagen.records import SFT_FEATURES
from datagen.release.publish import publish


def _build(tmp_path: Path, n: int) -> tuple[BuildConfig, list[ShardSummary]]:
    cfg = BuildConfig(n=n, out=tmp_path / "out", shard_size=3, questions_per_scene=3, workers=1,
                      command="datagen build --n 5")
    prepare_output(cfg, overwrite=False, resume=False)
    return cfg, [run_shard(cfg, i) for i in range(2)]


def test_round_trip_through_load_dataset(tmp_path: Path) -> None:
    cfg, shards = _build(tmp_path, n=10)
    report = publish(cfg, shards)
    assert report.rows == 10
    ds = datasets.load_dataset(str(cfg.out), "sft", split="train")
    assert len(ds) == 10
    for row in ds:
        tokens = sum(m["content"].count("<image>") for m in row["messages"])
        assert tokens == len(row["images"]) >= 1
        assert row["images"][0].size[0] > 100  # decodes as a PIL image
        roles = [m["role"] for m in row["messages"]]
        assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
        assert set(roles) <= {"system", "user", "assistant"}
        assert sum(r == "assistant" for r in roles) <= 6
        predicted = row["verification"]["predicted"]
        assert row["messages"][-1]["content"].endswith(f"<answer>{predicted}</answer>")
        for m in row["messages"][2:]:
            if m["role"] == "user":
                assert m["content"].startswith("<tool_response>\n")
                assert m["content"].endswith("\n</tool_response>")
    # Rows come out in build order, the first n of the verified ones.
    first = datasets.Dataset.from_parquet(str(shard_files(cfg, 0)[0]))
    assert ds["id"][: len(first)] == first["id"][:10]


def test_card_has_configs_and_numbers(tmp_path: Path) -> None:
    cfg, shards = _build(tmp_path, n=5)
    publish(cfg, shards)
    card = (cfg.out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["configs"][0]["config_name"] == "sft"
    stats = json.loads((cfg.out / "stats.json").read_text())
    sft = stats["splits"]["sft"]
    assert sft["rows"] == 5 and sft["tasks"] == sum(s.tasks for s in shards)
    assert set(stats["splits"]) == {"sft"}
    assert "acceptance rate" in card and "datagen build --n 5" in card
    assert "| rows | 5 (requested 5) |" in card


def test_duplicates_are_dropped_and_recorded(tmp_path: Path) -> None:
    cfg, shards = _build(tmp_path, n=100)
    # A second shard with the very same rows: everything in it is a duplicate.
    for src in shard_dir(cfg.out).glob("sft-00000.*"):
        shutil.copy(src, src.with_name(src.name.replace("00000", "00007")))
    twin = dataclasses.replace(shards[0], index=7)
    report = publish(cfg, [shards[0], twin])
    assert report.rows == shards[0].kept
    assert report.stats["removed"]["exact_duplicate"] == shards[0].kept
    lines = (cfg.out / "rejects.jsonl").read_text().splitlines()
    dups = [json.loads(ln) for ln in lines if json.loads(ln)["reason"] == "exact_duplicate"]
    assert len(dups) == shards[0].kept and {d["shard"] for d in dups} == {7}
    assert f"| exact_duplicate | {shards[0].kept} |" in (cfg.out / "README.md").read_text()


def test_republishing_replaces_the_data_folder_whole(tmp_path: Path) -> None:
    """Also: load_dataset sees the new build, not its cache of the old one."""
    cfg, shards = _build(tmp_path, n=4)
    publish(cfg, shards)
    assert len(datasets.load_dataset(str(cfg.out), "sft", split="train")) == 4
    publish(cfg.model_copy(update={"n": 2}), shards)
    assert len(datasets.load_dataset(str(cfg.out), "sft", split="train")) == 2
    assert [p.name for p in (cfg.out / "data").iterdir()] == ["sft-00000-of-00001.parquet"]
    assert not [p for p in cfg.out.iterdir() if p.name.startswith((".data-", ".old-"))]


def test_a_build_without_rows_publishes_an_empty_split_that_loads(tmp_path: Path) -> None:
    """As when --max-cost runs out inside the first shard: no shard, yet the card's data loads."""
    cfg = BuildConfig(n=5, out=tmp_path / "out", workers=1)
    prepare_output(cfg, overwrite=False, resume=False)
    report = publish(cfg, [], budget_spent=True)
    assert report.rows == 0 and report.files == ["data/sft-00000-of-00001.parquet"]
    assert datasets.Features.from_arrow_schema(pq.read_schema(cfg.out / report.files[0])) \
        == SFT_FEATURES
    stream = datasets.load_dataset(str(cfg.out), "sft", streaming=True)
    assert list(stream) == ["train"] and list(stream["train"]) == []
    assert stream["train"].features == SFT_FEATURES
    # datasets 5.2 cannot materialise a split of 0 examples, whatever the files hold
    # ("Instruction 'train' corresponds to no data!"; huggingface/datasets PR #8401 lifts it).
    try:
        ds = datasets.load_dataset(str(cfg.out), "sft")
    except ValueError as exc:
        assert "corresponds to no data" in str(exc)
    else:
        assert list(ds) == ["train"] and len(ds["train"]) == 0
        assert ds["train"].features == SFT_FEATURES


def test_without_a_weak_model_rows_have_no_pass_rate(tmp_path: Path) -> None:
    cfg, shards = _build(tmp_path, n=3)
    report = publish(cfg, shards)
    ds = datasets.load_dataset(str(cfg.out), "sft", split="train")
    assert ds["weak_pass_rate"] == [None] * 3 and ds["trivial"] == [False] * 3
    sft = report.stats["splits"]["sft"]
    assert report.stats["weak"] is None and sft["trivial_rows"] == 0
    assert sft["by_weak_pass_rate"] == {}
    assert "Difficulty is the generator's" in (cfg.out / "README.md").read_text()


def test_rows_that_fail_validation_are_not_published(tmp_path: Path) -> None:
    cfg, shards = _build(tmp_path, n=4)
    good = publish(cfg, shards)
    before = {p.name: p.read_bytes() for p in (cfg.out / "data").iterdir()}
    path = shard_files(cfg, 0)[0]
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[1]["messages"] = rows[1]["messages"][:2]  # the trace and its <answer> are gone
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    with pytest.raises(RunError, match=r"sft rows failed validation.*row 1"):
        publish(cfg, shards)
    assert {p.name: p.read_bytes() for p in (cfg.out / "data").iterdir()} == before
    assert good.rows == 4
    assert not [p for p in cfg.out.iterdir() if p.name.startswith(".data-")]


def test_the_card_without_a_weak_model_says_only_what_was_done(tmp_path: Path) -> None:
    cfg = BuildConfig(n=6, out=tmp_path / "out", shard_size=3, questions_per_scene=3, workers=1,
                      split="rl", families=("geometry", "search"))
    prepare_output(cfg, overwrite=False, resume=False)
    shards = [run_shard(cfg, i) for i in range(2)]
    report = publish(cfg, shards)
    card = (cfg.out / "README.md").read_text()
    text = " ".join(card.split())  # the card's prose wraps anywhere
    # No weak model: nothing was marked trivial or left out, and the card does not claim it.
    assert report.stats["weak"] is None
    assert "not measured: no weak model was given (`--weak-model`)" in card
    assert "left out" not in card and "always solved" not in card
    # The difficulty is the documented score.
    assert "## Difficulty" in card and "A score up to 1.0 is easy, up to 2.0 medium" in text
    assert "weak-to-strong" not in card
    # The ambiguity checks: every rule of the families built, none failing a published row.
    rules = {r["rule"]: r for r in report.stats["ambiguity"]}
    assert set(rules) >= {"search.midline", "search.near_twin_colour", "search.lookalike_icon",
                          "search.relation_axis", "geometry.label_collision",
                          "geometry.printed_fraction"}
    assert all(r["published_failing"] == 0 for r in rules.values())
    assert sum(r["checked"] for r in rules.values()) > 0
    assert "## Ambiguity checks" in card and "| `geometry.label_collision` |" in card
    # The blind-guess table, per task type of the published rows.
    guesses = report.stats["splits"]["rl"]["blind_guess"]
    assert guesses and {g["task_type"] for g in guesses} == \
        set(report.stats["splits"]["rl"]["by_task_type"])
    assert "Blind guessing" in card and "| most common answer |" in card
