"""`datagen preview`: one self-contained page of samples and traces, checked in real Chromium."""

from __future__ import annotations

import html
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from datagen.errors import UsageError
from datagen.inspect.preview import write_preview
from tests.support.sft_sets import build_sft_set, datagen, hub_layout_copy, read_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
_IMAGES = "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sft_set(tmp_path_factory.mktemp("preview") / "set")


def test_page_shows_every_sample_turn_and_image(built: Path, tmp_path: Path) -> None:
    rows = read_rows(built)
    report = write_preview(built, tmp_path / "p.html")
    page = report.path.read_text()
    assert report.shown == report.matched == len(rows) == 6
    for row in rows:
        assert html.escape(row["question"]) in page
        assert f"gold answer: <b>{html.escape(row['answer'])}</b>" in page
        assert row["id"] in page
    # Every image of every row is inlined: the input, then each output image in turn order.
    assert page.count('<img src="data:image/') == sum(len(r["images"]) for r in rows)
    assert page.count('class="tag ok">verified<') == 6
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert '<span class="kn">import</span>' in page  # the code is highlighted


def test_filters_and_n_pick_the_samples(built: Path, tmp_path: Path) -> None:
    rows = read_rows(built)
    charts = [r for r in rows if r["family"] == "chart"]
    report = write_preview(built, tmp_path / "c.html", family="chart", n=2)
    assert (report.shown, report.matched) == (2, len(charts))
    page = report.path.read_text()
    assert all(r["id"] not in page for r in rows if r["family"] != "chart")
    task_type = rows[-1]["task_type"]
    report = write_preview(built, tmp_path / "t.html", task_type=task_type)
    assert report.matched == sum(r["task_type"] == task_type for r in rows)
    with pytest.raises(UsageError, match="at least 1"):
        write_preview(built, tmp_path / "x.html", n=0)


def test_rejects_view_shows_reasons_and_escapes_text(built: Path, tmp_path: Path) -> None:
    bare = hub_layout_copy(built, tmp_path / "bare")
    with pytest.raises(UsageError, match="no rejects.jsonl"):
        write_preview(bare, tmp_path / "r.html", rejects=True)
    record = {"id": "t1", "split": "sft", "reason": "wrong_answer",
              "detail": "predicted '3', gold '4'",
              "family": "chart", "task_type": "chart.vbar.value", "answer": "4",
              "predicted": "3", "question": "<img src=x onerror=alert(1)> how many?",
              "messages": [{"role": "system", "content": "s"},
                           {"role": "user", "content": "<image>\nq"},
                           {"role": "assistant",
                            "content": "<think>t</think>\n<answer>3</answer>"}]}
    dup = {"reason": "duplicate", "split": "sft", "key": "k9"}
    (bare / "rejects.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(dup) + "\n")
    report = write_preview(bare, tmp_path / "r.html", rejects=True)
    page = report.path.read_text()
    assert report.shown == 2
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "wrong_answer" in page and "predicted &#39;3&#39;, gold &#39;4&#39;" in page
    assert "duplicate" in page and "key k9" in page


def test_cli_prints_the_page_path(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    result = datagen("preview", str(built), "--n", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert out.read_text().count('class="sample"') == 3


def _driver(profile: Path):  # noqa: ANN202 (selenium is imported only when present)
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.common.exceptions import WebDriverException

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(options=options,
                                service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    except WebDriverException as exc:
        pytest.skip(f"Chromium cannot start here: {str(exc).splitlines()[0]}")


def test_page_loads_in_chromium_with_every_image_decoded(built: Path, tmp_path: Path) -> None:
    page = write_preview(built, tmp_path / "page.html").path
    profile = tmp_path / "profile"
    profile.mkdir()
    # The checks themselves must fail on a broken page: an undecodable image, a missing file.
    broken = tmp_path / "broken.html"
    broken.write_text('<img src="data:image/png;base64,AAAA"><img src="missing.png">')
    driver = _driver(profile)
    try:
        driver.get(broken.as_uri())
        assert [w for _, w in driver.execute_script(_IMAGES)] == [0, 0]
        assert any(e["level"] == "SEVERE" for e in driver.get_log("browser"))

        driver.get(page.as_uri())
        done = driver.execute_script(_IMAGES)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        shot = tmp_path / "shot.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert len(done) == page.read_text().count("<img ") > 6
    assert all(complete and width > 0 for complete, width in done), done
    assert errors == []
    with Image.open(io.BytesIO(shot.read_bytes())) as im:
        assert im.format == "PNG" and im.size[0] >= 1000
