"""Exports: each layout loads with datasets in the shape its trainer reads; the source stays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from datagen.cli import app
from datagen.errors import UsageError
from datagen.pipeline.rows import sft_table
from datagen.release.export import content_parts, export_set
from tests.support.rl_sets import rl_rows, write_rl_set
from tests.support.sft_sets import good_sft_row


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_rl_set(tmp_path_factory.mktemp("set") / "demo", rl_rows(1))
    pq.write_table(sft_table([good_sft_row(), good_sft_row()]),
                   folder / "data" / "sft-00000-of-00001.parquet")
    return folder


def _load(folder: Path, config: str) -> datasets.Dataset:
    return datasets.load_dataset("parquet", split="train",
                                 data_files=str(folder / "data" / f"{config}-*.parquet"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_content_parts() -> None:
    assert content_parts("<image>\nHow many?") == [{"type": "image", "text": None},
                                                   {"type": "text", "text": "\nHow many?"}]
    assert content_parts("a<image><image>b") == [
        {"type": "text", "text": "a"}, {"type": "image", "text": None},
        {"type": "image", "text": None}, {"type": "text", "text": "b"}]


def test_codedance_renames_prompt_and_writes_binary_images(built: Path, tmp_path: Path) -> None:
    before = _snapshot(built)
    out = export_set(built, "codedance", tmp_path / "cd")
    rl = _load(out, "rl")
    original = _load(built, "rl")
    assert "prompt" not in rl.column_names
    assert rl[0]["messages"] == original[0]["prompt"]
    assert rl.features["images"] == datasets.List(datasets.Value("binary"))
    assert rl[0]["images"][0][:8] == b"\x89PNG\r\n\x1a\n"
    sft = _load(out, "sft")
    assert sft[0]["messages"] == _load(built, "sft")[0]["messages"]
    assert _snapshot(built) == before


def test_codedance_can_keep_image_features(built: Path, tmp_path: Path) -> None:
    out = export_set(built, "codedance", tmp_path / "cd", binary_images=False)
    assert isinstance(_load(out, "rl").features["images"].feature, datasets.Image)


def test_trl_splits_content_into_parts(built: Path, tmp_path: Path) -> None:
    out = export_set(built, "trl", tmp_path / "trl")
    rl = _load(out, "rl")
    user = rl[0]["prompt"][1]
    assert user["role"] == "user"
    assert [p["type"] for p in user["content"]] == ["image", "text"]
    assert len(rl[0]["images"]) == 1 and isinstance(rl.features["images"].feature,
                                                     datasets.Image)
    sft = _load(out, "sft")
    images = sum(p["type"] == "image" for m in sft[0]["messages"] for p in m["content"])
    assert images == len(sft[0]["images"]) == 2
    text = "".join(p["text"] or "<image>" for p in sft[0]["messages"][1]["content"])
    assert text == _load(built, "sft")[0]["messages"][1]["content"]


def test_llamafactory_writes_the_dataset_info_entry(built: Path, tmp_path: Path) -> None:
    out = export_set(built, "llamafactory", tmp_path / "lf", name="codedance_sft")
    info = json.loads((out / "dataset_info.json").read_text())
    entry = info["codedance_sft"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["system_tag"] == "system" and entry["tags"]["user_tag"] == "user"
    assert (out / entry["file_name"]).is_file()
    assert sorted(p.name for p in (out / "data").iterdir()) == ["sft-00000-of-00001.parquet"]


def test_bad_requests_are_usage_errors(built: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="choose one of"):
        export_set(built, "axolotl", tmp_path / "x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        export_set(built, "trl", tmp_path / "taken")
    assert (tmp_path / "taken" / "file").read_text() == "keep me"
    rl_only = write_rl_set(tmp_path / "rl_only", rl_rows(1)[:1])
    with pytest.raises(UsageError, match="LLaMA-Factory takes the SFT set"):
        export_set(rl_only, "llamafactory", tmp_path / "lf")
    odd = tmp_path / "odd"
    (odd / "data").mkdir(parents=True)
    for p in (built / "data").iterdir():
        (odd / "data" / p.name).write_bytes(p.read_bytes())
    pq.write_table(pa.table({"text": ["hi"]}), odd / "data" / "train.parquet")
    with pytest.raises(UsageError, match="train.parquet: neither a 'messages'"):
        export_set(odd, "trl", tmp_path / "odd-trl")
    assert not (tmp_path / "odd-trl").exists()  # nothing written before the check


def test_cli_export(built: Path, tmp_path: Path) -> None:
    src = tmp_path / "demo"
    src.mkdir()
    (src / "data").mkdir()
    for p in (built / "data").iterdir():
        (src / "data" / p.name).write_bytes(p.read_bytes())
    result = CliRunner().invoke(app, ["export", str(src), "--to", "trl"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo-trl" / "data" / "rl-00000-of-00001.parquet").is_file()
    bad = subprocess.run([sys.executable, "-m", "datagen.cli", "export", str(src), "--to",
                          "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --to 'nope': choose one of codedance, trl, llamafactory"
