"""`datagen verify`: a published set re-runs clean; a tampered one is caught, row by row."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from datagen.check.verify import reverify
from datagen.reader import open_published
from datagen.sandbox import Sandbox
from tests.support.sft_sets import (
    build_sft_set,
    datagen,
    hub_layout_copy,
    parquet_file,
    read_rows,
    write_rows,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sft_set(tmp_path_factory.mktemp("verify") / "set")


def _code_turn(row: dict) -> int:
    """Index of the row's first assistant message with a code cell."""
    return next(i for i, m in enumerate(row["messages"])
                if m["role"] == "assistant" and "```python" in m["content"])


def test_a_published_set_re_verifies_in_the_sandbox(built: Path, sandbox: Sandbox) -> None:
    report = reverify(open_published(built), sandbox, workers=2)
    rows = read_rows(built)
    assert report.ok, report.mismatches
    assert report.rows == len(rows) == 6
    assert report.cells == sum(len(r["verification"]["cells"]) for r in rows)
    assert report.images == sum(len(r["images"]) - 1 for r in rows)


def test_cli_verifies_a_folder_with_only_card_and_parquet(built: Path, tmp_path: Path) -> None:
    bare = hub_layout_copy(built, tmp_path / "downloaded")
    result = datagen("verify", str(bare), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "every row re-verified" in result.stdout
    assert "6 rows" in result.stdout


def test_tampered_answer_and_code_are_caught_and_listed(built: Path, tmp_path: Path) -> None:
    bare = hub_layout_copy(built, tmp_path / "tampered")
    rows = read_rows(bare)
    # Row 1: a changed gold answer (the trace still ends in the old one).
    rows[1]["answer"] = "A" if rows[1]["answer_type"] == "choice" and rows[1]["answer"] != "A" \
        else "987654"
    # Row 4: a changed code cell: it now prints something the recorded observation lacks.
    k = _code_turn(rows[4])
    content = rows[4]["messages"][k]["content"]
    rows[4]["messages"][k]["content"] = content.replace("\n```\n</code>",
                                                        "\nprint('tampered')\n```\n</code>", 1)
    assert rows[4]["messages"][k]["content"] != content
    write_rows(bare, rows)

    result = datagen("verify", str(bare), "--workers", "1")
    assert result.returncode == 1
    listed = [ln for ln in result.stdout.splitlines() if ln.startswith("row ")]
    assert any(ln.startswith("row 1 ") and ": answer: " in ln for ln in listed), result.stdout
    assert any(ln.startswith("row 4 ") and ": observation: " in ln and "tampered" in ln
               for ln in listed), result.stdout
    assert {ln.split()[1] for ln in listed} == {"1", "4"}
    assert "2 of 6 rows do not re-verify (rows 1, 4)" in result.stderr


def test_a_swapped_output_image_is_caught(built: Path, tmp_path: Path,
                                          sandbox: Sandbox) -> None:
    bare = hub_layout_copy(built, tmp_path / "swapped")
    rows = read_rows(bare)
    i = next(i for i, r in enumerate(rows) if len(r["images"]) > 1)
    shown = Image.open(io.BytesIO(rows[i]["images"][1]["bytes"]))
    buf = io.BytesIO()
    ImageOps.flip(shown.convert("RGB")).save(buf, format="PNG")  # same size, other pixels
    rows[i]["images"][1] = {"bytes": buf.getvalue(), "path": None}
    write_rows(bare, rows)

    report = reverify(open_published(bare), sandbox)
    assert report.failed_rows == [i]
    assert [m.what for m in report.mismatches] == ["image"]
    assert "pHash distance" in report.mismatches[0].detail


def test_a_row_whose_images_do_not_match_its_tokens_is_rejected(built: Path, tmp_path: Path,
                                                                sandbox: Sandbox) -> None:
    bare = hub_layout_copy(built, tmp_path / "short")
    rows = read_rows(bare)
    rows[0]["images"] = rows[0]["images"][:1] if len(rows[0]["images"]) > 1 \
        else rows[0]["images"] * 2
    write_rows(bare, rows)
    report = reverify(open_published(bare), sandbox)
    assert report.failed_rows == [0]
    assert "format" in {m.what for m in report.mismatches}


def test_a_folder_without_sft_files_is_a_usage_error(tmp_path: Path) -> None:
    result = datagen("verify", str(tmp_path))
    assert result.returncode == 2
    assert "no data/sft-*.parquet" in result.stderr


def _card(configs: str) -> str:
    return f"---\nconfigs:\n{configs}---\n# A set laid out its own way\n"


@pytest.mark.parametrize(("card", "where"), [
    # A config named sft whose files live elsewhere, one split listed by name.
    ("- config_name: sft\n  data_files:\n  - split: train\n    path: sft/*.parquet\n",
     "sft/part-0.parquet"),
    # One default config, its files given as a bare pattern at the top of the folder.
    ("- config_name: default\n  data_files: train-*.parquet\n", "train-00000-of-00001.parquet"),
])
def test_verify_reads_the_files_the_cards_configs_name(built: Path, tmp_path: Path, card: str,
                                                       where: str) -> None:
    import datasets

    other = tmp_path / "other"
    (other / where).parent.mkdir(parents=True, exist_ok=True)
    (other / "README.md").write_text(_card(card))
    shutil.copy(parquet_file(built), other / where)
    name = "sft" if "config_name: sft" in card else "default"
    assert len(datasets.load_dataset(str(other), name, split="train")) == 6  # what HF reads
    assert len(open_published(other)) == 6  # ... we read
    result = datagen("verify", str(other), "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 rows" in result.stdout and "every row re-verified" in result.stdout


def test_verify_re_executes_a_set_shaped_like_the_public_codedance_sft_card(
        built: Path, tmp_path: Path) -> None:
    """Only ``messages`` and ``images`` as raw bytes (no ids, no answers), one default config:
    the cells still re-run and their observations and images are checked."""
    import datasets

    rows = read_rows(built)
    table = pa.table({
        "messages": pa.array([r["messages"] for r in rows]),
        "images": pa.array([[img["bytes"] for img in r["images"]] for r in rows],
                           pa.list_(pa.binary())),
    })
    folder = tmp_path / "codedance-sft"
    (folder / "data").mkdir(parents=True)
    pq.write_table(table, folder / "data" / "train-00000-of-00001.parquet")
    (folder / "README.md").write_text(_card(
        "- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"))
    assert len(datasets.load_dataset(str(folder), split="train")) == 6
    result = datagen("verify", str(folder), "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every row re-verified" in result.stdout
    assert "6 rows have no gold answer" in result.stdout
    # ... and a changed observation is still caught in that layout.
    k = _code_turn(rows[2]) + 1
    rows[2]["messages"][k]["content"] = rows[2]["messages"][k]["content"].replace(
        "\n</tool_response>", "\nforged\n</tool_response>")
    pq.write_table(table.set_column(0, "messages", pa.array([r["messages"] for r in rows])),
                   folder / "data" / "train-00000-of-00001.parquet")
    result = datagen("verify", str(folder), "--workers", "1")
    assert result.returncode == 1 and "row 2 (2): observation" in result.stdout, result.stdout
