"""``datagen preview``: one self-contained HTML page of samples and their traces.

For each sample the page shows the input image, the question, every assistant turn (think
text, code highlighted with pygments on the server, the final answer), every observation with
the images the code showed, then the final and the gold answer and the verdict of the build's
matcher. ``rejects=True`` shows records of ``rejects.jsonl`` instead, each with its reason.

Images are inlined as data URLs, so the page is one file that opens anywhere. Images with a
long side above ``MAX_SIDE`` (4096-px visual-search scenes) are shrunk for the page, which
keeps it to a few MB; the crops a trace shows are small and appear at full resolution. The
page holds no script at all and its Content-Security-Policy allows nothing off the page.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from datagen.atomic import write_text
from datagen.check.matcher import extract_answer, match
from datagen.errors import UsageError
from datagen.messages import parse_reply
from datagen.reader import PublishedSet, open_published, row_images, row_tolerance
from datagen.templates import render

__all__ = ["MAX_SIDE", "PreviewReport", "write_preview"]

MAX_SIDE = 1280
_TOOL_RESPONSE = ("<tool_response>\n", "\n</tool_response>")


@dataclass(frozen=True, slots=True)
class PreviewReport:
    """The page written and how many samples it shows of how many that matched."""

    path: Path
    shown: int
    matched: int


def _data_url(image: bytes) -> str:
    """``image`` as a data URL, shrunk to ``MAX_SIDE`` (as JPEG) when it is larger."""
    with Image.open(io.BytesIO(image)) as im:
        fmt = (im.format or "PNG").lower()
        if max(im.size) > MAX_SIDE or fmt not in ("png", "jpeg", "gif", "webp"):
            small = im.convert("RGB")
            small.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=85)
            image, fmt = buf.getvalue(), "jpeg"
    return f"data:image/{fmt};base64,{base64.b64encode(image).decode('ascii')}"


def _code_html(code: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return highlight(code, PythonLexer(), HtmlFormatter(cssclass="hl"))


def _code_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs(".hl")


def _observation(content: str) -> str:
    """The text of a ``<tool_response>`` turn without its wrapper and ``<image>`` lines."""
    start, end = _TOOL_RESPONSE
    if content.startswith(start) and content.endswith(end):
        content = content[len(start):-len(end)]
    return "\n".join(ln for ln in content.splitlines() if ln.strip() != "<image>")


def _turns(messages: list[dict[str, str]], images: list[bytes] | None) -> list[dict[str, Any]]:
    """The assistant turns after the question, each with the observation that follows it.

    ``images`` are the row's images after the input one, in order (None: a reject, whose
    images were not kept).
    """
    turns: list[dict[str, Any]] = []
    pending = list(images or [])
    for m in messages[2:]:
        if m["role"] == "assistant":
            step = parse_reply(m["content"])
            readable = bool(step.think) and (step.code is not None or step.answer is not None)
            turns.append({
                "think": step.think if readable else "",
                "code_html": _code_html(step.code) if readable and step.code else "",
                "raw": "" if readable else m["content"],
                "answer": step.answer if readable else None,
                "observation": None, "images": [],
            })
        elif turns and turns[-1]["observation"] is None:
            n = m["content"].count("<image>")
            shown, pending = pending[:n], pending[n:]
            turns[-1]["observation"] = _observation(m["content"])
            turns[-1]["images"] = [_data_url(img) for img in shown]
    return turns


def _spread(indices: list[int], n: int) -> list[int]:
    """At most ``n`` of ``indices``, evenly spaced, so a preview is not one shard's worth."""
    if len(indices) <= n:
        return indices
    return [indices[i * len(indices) // n] for i in range(n)]


def _wanted(family: str | None, task_type: str | None, fam: Any, ttype: Any) -> bool:
    return (family is None or fam == family) and \
        (task_type is None or str(ttype or "").startswith(task_type))


def _row_sample(index: int, row: dict[str, Any]) -> dict[str, Any]:
    images = row_images(row)
    messages = row["messages"]
    predicted = extract_answer(messages[-1]["content"]) if messages else None
    try:
        ok = match(predicted, str(row["answer"]), row["answer_type"], row_tolerance(row))
    except ValueError:
        ok = False
    return {
        "index": index, "id": row.get("id") or str(index), "ok": ok,
        "verdict": "verified" if ok else "does not match gold",
        "family": row.get("family") or "", "task_type": row.get("task_type") or "",
        "difficulty": row.get("difficulty") or "", "style": row.get("style") or "",
        "detail": "", "question": row.get("question") or messages[1]["content"],
        "input_image": _data_url(images[0]) if images else "", "image_note": "no image",
        "turns": _turns(messages, images[1:]),
        "predicted": predicted if predicted is not None else "(none)",
        "gold": row.get("answer"), "answer_type": row.get("answer_type") or "",
    }


def _reject_sample(index: int, record: dict[str, Any]) -> dict[str, Any]:
    messages = record.get("messages") or []
    detail = record.get("detail") or (f"key {record['key']}" if record.get("key") else "")
    return {
        "index": index, "id": record.get("id") or f"reject {index}", "ok": False,
        "verdict": record.get("reason", "rejected"),
        "family": record.get("family") or "", "task_type": record.get("task_type") or "",
        "difficulty": "", "style": record.get("style") or "", "detail": detail,
        "question": record.get("question") or "(not recorded)",
        "input_image": "",
        "image_note": f"rejects keep no images ({record.get('n_images', 0)} in the trace)",
        "turns": _turns(messages, None) if len(messages) > 2 else [],
        "predicted": record.get("predicted") or "(none)",
        "gold": record.get("answer") or "(not recorded)",
        "answer_type": record.get("answer_type") or "",
    }


def write_preview(source: str | Path, out: Path, n: int = 24, rejects: bool = False,
                  family: str | None = None, task_type: str | None = None,
                  config: str = "sft", split: str = "train") -> PreviewReport:
    """Write the preview page of ``source`` (a folder or a Hub id) to ``out``.

    Shows up to ``n`` samples spread evenly over those of ``family`` whose task type starts
    with ``task_type`` (``chart.stacked`` or ``chart.stacked.difference``). ``split`` is the
    split of a Hub set (a local folder has one).
    """
    if n < 1:
        raise UsageError(f"--n {n}: show at least 1 sample")
    published: PublishedSet = open_published(source, config, split)
    filters = ", ".join(f"{k} {v}" for k, v in (("family", family), ("task type", task_type))
                        if v) or "no filter"
    if rejects:
        if published.folder is None or not (published.folder / "rejects.jsonl").is_file():
            raise UsageError(f"{source}: no rejects.jsonl to show; --rejects needs a folder "
                             "written by `datagen build`")
        records = published.rejects()
        matching = [i for i, r in enumerate(records)
                    if _wanted(family, task_type, r.get("family"), r.get("task_type"))]
        samples = [_reject_sample(i, records[i]) for i in _spread(matching, n)]
        what = "rejects"
    else:
        cols = published.columns(["family", "task_type"])
        matching = [i for i, (f, t) in enumerate(zip(cols["family"], cols["task_type"],
                                                     strict=True))
                    if _wanted(family, task_type, f, t)]
        samples = [_row_sample(i, row) for i, row in published.rows(_spread(matching, n))]
        what = f"{config} rows"
    summary = (f"{len(samples)} of {len(matching)} {what} ({filters}); "
               f"read from {published.source}")
    page = render("preview.html.j2", title=f"{Path(str(source)).name or source} — {what}",
                  summary=summary, filters=filters, samples=samples, code_css=_code_css())
    write_text(out, page + "\n")
    return PreviewReport(path=out, shown=len(samples), matched=len(matching))
