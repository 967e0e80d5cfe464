"""SFT and RL sets without a shared scene, builds excluded from later ones, decontamination
against a benchmark, an index that resumes, and the card and stats that report removals."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datagen.config import BuildConfig
from datagen.pipeline.shards import ShardSummary, completed_shards, prepare_output, run_shard
from datagen.release.publish import publish
from datagen.release.select import shards_to_build


def _build(cfg: BuildConfig) -> list[ShardSummary]:
    """What the flow does, without Prefect: build shards until every split has its rows."""
    prepare_output(cfg, overwrite=False, resume=True)
    done = completed_shards(cfg)
    while todo := shards_to_build(cfg, done):
        for i in todo:
            done[i] = run_shard(cfg, i)
    return [done[i] for i in sorted(done)]


def _cfg(out: Path, **kw: object) -> BuildConfig:
    base: dict[str, object] = {"n": 12, "out": out, "families": ("chart", "geometry"),
                               "shard_size": 2, "questions_per_scene": 3, "workers": 1}
    return BuildConfig(**{**base, **kw})  # type: ignore[arg-type]


def _phashes(rows: list[dict]) -> set[int]:
    from datagen.release.dedup import image_hashes

    return {image_hashes(r["images"][0]["bytes"])[0] for r in rows}


def _rows(out: Path, split: str) -> list[dict]:
    return [r for f in sorted((out / "data").glob(f"{split}-*.parquet"))
            for r in pq.read_table(f).to_pylist()]


def test_split_all_builds_both_sets_with_no_scene_or_image_in_common(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "all", split="all")
    report = publish(cfg, _build(cfg))
    assert report.by_split == {"sft": 12, "rl": 12}
    sft, rl = _rows(cfg.out, "sft"), _rows(cfg.out, "rl")
    assert not {r["scene_id"] for r in sft} & {r["scene_id"] for r in rl}
    assert not _phashes(sft) & _phashes(rl)
    ds = datasets.load_dataset(str(cfg.out), "rl", split="train")
    assert len(ds) == 12 and ds[0]["agent_name"] == "tool_agent"
    # The RL set follows the difficulty mix (easy 20 %, medium 40 %, hard 40 % of 12).
    levels = [r["extra_info"]["difficulty"] for r in rl]
    assert report.stats["splits"]["rl"]["mix_met"]
    assert (levels.count("easy"), levels.count("medium"), levels.count("hard")) == (2, 5, 5)
    meta = (cfg.out / "README.md").read_text()
    assert "config_name: sft" in meta and "config_name: rl" in meta
    assert "No scene is in both configs" in meta


def test_an_rl_build_honours_an_earlier_build_given_by_exclude(tmp_path: Path) -> None:
    first = _cfg(tmp_path / "rl-a", split="rl", n=100)
    prepare_output(first, overwrite=False, resume=False)
    built = [run_shard(first, i) for i in range(2)]
    made = publish(first, built)
    assert made.rows + sum(made.stats["removed"].values()) == sum(s.kept for s in built)
    # The same options again draw the very same scenes: all of them overlap and are removed.
    again = _cfg(tmp_path / "rl-b", split="rl", n=6, exclude=(first.out,))
    prepare_output(again, overwrite=False, resume=False)
    shards = [run_shard(again, i) for i in range(2)]
    report = publish(again, shards)
    assert report.by_split == {"rl": 0}
    assert report.stats["removed"]["split_overlap"] == sum(s.kept for s in shards) > 0
    reasons = {json.loads(ln)["reason"] for ln in (again.out / "rejects.jsonl").read_text()
               .splitlines()}
    assert reasons == {"split_overlap"}
    # Without --exclude the same shards publish; and an SFT build stays clear of the RL one.
    assert publish(again.model_copy(update={"exclude": ()}), shards).by_split == {"rl": 6}
    assert made.rows > 6
    sft = _cfg(tmp_path / "sft", n=6, exclude=(first.out,))
    assert publish(sft, _build(sft)).stats["removed"]["split_overlap"] == 0


def _benchmark(folder: Path, image: bytes, question: str) -> Path:
    """An image folder in the layout `load_dataset` reads: one of ours, re-encoded, a question
    sharing a long run of words with one of ours, and an unrelated item."""
    folder.mkdir()
    with Image.open(io.BytesIO(image)) as im:
        im.convert("RGB").save(folder / "ours.jpg", quality=80)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / "other.png")
    records = [{"file_name": "ours.jpg", "question": "What is shown here?"},
               {"file_name": "other.png", "question": f"Tell me: {question}"},
               {"file_name": "other.png", "question": "How many apples are on the table?"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_decontamination_drops_benchmark_images_and_questions(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "out", families=("chart",), n=100)
    prepare_output(cfg, overwrite=False, resume=False)
    shards = [run_shard(cfg, i) for i in range(2)]
    clean = publish(cfg, shards)
    rows = _rows(cfg.out, "sft")
    image_scene = rows[0]["scene_id"]
    victim = next(r for r in rows if r["scene_id"] != image_scene)
    bench = _benchmark(tmp_path / "bench", rows[0]["images"][0]["bytes"], victim["question"])
    report = publish(cfg.model_copy(update={"decontaminate": (str(bench),)}), shards)
    kept = _rows(cfg.out, "sft")
    same_image = sum(r["scene_id"] == image_scene for r in rows)
    same_question = sum(r["question"] == victim["question"] and r["scene_id"] != image_scene
                        for r in rows)
    assert report.stats["removed"]["contaminated"] == same_image + same_question >= 2
    assert report.rows == clean.rows - same_image - same_question
    assert image_scene not in {r["scene_id"] for r in kept}
    assert victim["question"] not in {r["question"] for r in kept}
    details = [json.loads(ln) for ln in (cfg.out / "rejects.jsonl").read_text().splitlines()]
    why = {d["detail"].split(" of ")[0] for d in details if d["reason"] == "contaminated"}
    assert why == {"image within 4 bits", "question shares 8 words with a question"}
    card = (cfg.out / "README.md").read_text()
    assert f"| contaminated | {same_image + same_question} |" in card and str(bench) in card
    # The same benchmark saved with save_to_disk works too.
    saved = tmp_path / "saved"
    datasets.load_dataset(str(bench), split="train").save_to_disk(str(saved))
    again = publish(cfg.model_copy(update={"decontaminate": (str(saved),)}), shards)
    assert again.rows == report.rows


def test_a_resumed_build_admits_only_new_shards_and_publishes_the_same_rows(
        tmp_path: Path) -> None:
    small = _cfg(tmp_path / "grow", families=("geometry",), n=10)
    publish(small, _build(small))
    index = small.out / ".datagen" / "index" / "sft.npz"
    before = index.stat().st_mtime_ns
    big = small.model_copy(update={"n": 30})
    grown = publish(big, _build(big))
    assert index.stat().st_mtime_ns != before
    with np.load(index) as z:
        meta = json.loads(str(z["info"]))["meta"]
    assert meta["shards"] == [s.index for s in completed_shards(big).values()]
    once = _cfg(tmp_path / "once", families=("geometry",), n=30)
    direct = publish(once, _build(once))
    assert [r["id"] for r in _rows(small.out, "sft")] == [r["id"] for r in _rows(once.out, "sft")]
    assert grown.stats["removed"] == direct.stats["removed"]


@pytest.mark.parametrize(("args", "message"), [
    (["--decontaminate", "/nonexistent/bench"], "--decontaminate /nonexistent/bench: no such"),
    (["--rl-mix", "easy=1,medium"], "--rl-mix"),
    (["--split", "both"], "--split"),
    (["--dedup-radius", "40"], "--dedup-radius"),
])
def test_bad_publish_options_are_one_line_usage_errors(tmp_path: Path, args: list[str],
                                                       message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "datagen.cli", "build", "--n", "3",
                           "--shard-size", "1", "--out", str(tmp_path / "o"), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
