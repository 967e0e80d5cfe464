"""Audit a built SFT set as a researcher who trains on it would: does the code look?

    python bench/audit_faithful.py OUT [--blank-limit 400]

Reads the published SFT rows of OUT (a folder `datagen build` wrote) and prints, per family:

* grounding: rows whose recorded provenance check did not pass (must be 0), and the twin and
  jitter pass rates before rejection from stats.json;
* blank image: for code-answered search rows (the last line the last cell printed is the gold
  answer or its option text), the share whose cells, run on a uniform image of the same size,
  still print the gold answer. Rows whose gold is also the blank image's own answer (an absent
  thing: "no", a count of 0) are counted apart: printing it there is right, so for them the
  counterfactual is the twin with the thing pasted in (its pass rate is under grounding);
* recovery: the share of traces with a failed cell or a reported miss followed by more code;
* diversity: distinct think texts per (question type, assistant step) among pairs seen at least
  20 times (the smallest such count), code shapes per question type (names and numbers
  normalised), and the largest share of a family's rows that contain one and the same block
  of six consecutive code lines.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image

# A reported miss in an observation, or a next thought that takes one up.
_MISS = re.compile(r"\b(not found|found nothing|no match|nothing found|missed|no pixels|empty|"
                   r"no \w+ (?:within|near|in|found|there))\b", re.IGNORECASE)
_RETRY = re.compile(r"\b(again|missed|not found|wider|widen|retry|look(?:ed)? elsewhere|"
                    r"off target|did not|didn't|no \w+ (?:within|near|in)|does not show|"
                    r"misjudged|wrong spot|cut off|cuts off|clips|too tight|nothing like|"
                    r"not in (?:this|that|the) crop|other things)\b", re.IGNORECASE)
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z_0-9]*\b")
_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_STRING = re.compile(r"(['\"]).*?\1")


def _shape(code: str) -> str:
    """The code with strings, numbers and names normalised: its strategy, roughly."""
    text = _STRING.sub("S", code)
    text = _NUM.sub("0", text)
    return "\n".join(ln.strip() for ln in text.splitlines() if ln.strip()
                     and not ln.strip().startswith("#"))


def _blank_answer(qtype: str) -> str | None:
    """What a question of ``qtype`` rightly answers about a blank image (None: no answer)."""
    return {"exists": "no", "count": "0"}.get(qtype)


def _observation_lines(content: str) -> list[str]:
    body = content.removeprefix("<tool_response>").removesuffix("</tool_response>").strip()
    return [ln.strip() for ln in body.splitlines() if ln.strip() and ln.strip() != "<image>"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--blank-limit", type=int, default=400,
                        help="code-answered search rows to re-run on a blank image")
    args = parser.parse_args()

    from datagen.check.matcher import match, normalize_text
    from datagen.messages import parse_reply
    from datagen.reader import open_published, row_images
    from datagen.sandbox import Sandbox

    published = open_published(args.out, "sft")
    stats = json.loads((args.out / "stats.json").read_text())
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    thoughts: dict[tuple[str, int], set[str]] = defaultdict(set)
    seen: Counter[tuple[str, int]] = Counter()
    shapes: dict[str, set[str]] = defaultdict(set)
    blocks: dict[str, Counter[str]] = defaultdict(Counter)
    rows_per_family: Counter[str] = Counter()
    blank_jobs: list[tuple[str, list[str], bytes, str, dict]] = []
    blank_alike: Counter[str] = Counter()  # rows whose gold a blank image shares, by type
    for _, row in published.rows():
        fam, qtype = row["family"], row["task_type"].rsplit(".", 1)[-1]
        rows_per_family[fam] += 1
        g = (row.get("verification") or {}).get("grounding") or {}
        by_family[fam]["provenance_not_pass"] += g.get("provenance") != "pass"
        cells: list[str] = []
        recovered = False
        last_lines: list[str] = []
        step = 0
        msgs = row["messages"]
        for i, m in enumerate(msgs):
            if m["role"] == "assistant":
                parsed = parse_reply(m["content"])
                thoughts[(f"{fam}.{qtype}", step)].add(parsed.think)
                seen[(f"{fam}.{qtype}", step)] += 1
                step += 1
                if parsed.code:
                    cells.append(parsed.code)
            elif m["role"] == "user" and m["content"].startswith("<tool_response>"):
                lines = _observation_lines(m["content"])
                last_lines = lines
                after = [x for x in msgs[i + 1:] if x["role"] == "assistant"]
                more_code = any("<code>" in x["content"] for x in after)
                failed = any("error" in ln.lower() and "execution" in ln.lower() for ln in lines)
                missed = any(_MISS.search(ln) for ln in lines) or bool(
                    after and _RETRY.search(parse_reply(after[0]["content"]).think))
                if more_code and (failed or missed):
                    recovered = True
        by_family[fam]["recovered"] += recovered
        for code in cells:
            shapes[f"{fam}.{qtype}"].add(_shape(code))
        row_blocks = set()
        for code in cells:
            lines = [ln.rstrip() for ln in code.splitlines() if ln.strip()]
            row_blocks |= {"\n".join(lines[k:k + 6]) for k in range(len(lines) - 5)}
        blocks[fam].update(row_blocks)
        said = last_lines[-1] if last_lines else None
        options = {}
        for ln in row["question"].splitlines():
            mm = re.match(r"^([A-D])\. (.+)$", ln.strip())
            if mm:
                options[mm.group(1)] = mm.group(2)
        code_answered = said is not None and (
            match(said, row["answer"], row["answer_type"], 0.01)
            or normalize_text(options.get(row["answer"], "\x00")) == normalize_text(said))
        by_family[fam]["code_answered"] += code_answered
        if fam == "search" and code_answered and _blank_answer(qtype) == row["answer"]:
            blank_alike[qtype] += 1
        elif fam == "search" and code_answered and len(blank_jobs) < args.blank_limit:
            blank_jobs.append((row["answer"], cells, row_images(row)[0], row["answer_type"],
                               options))

    blank_hits: Counter[str] = Counter()
    if blank_jobs:
        with Sandbox(timeout=20.0) as sandbox:
            for answer, cells, image, atype, options in blank_jobs:
                with Image.open(io.BytesIO(image)) as im:
                    size = im.size
                blank = io.BytesIO()
                Image.new("RGB", size, (128, 128, 128)).save(blank, format="JPEG", quality=90)
                with sandbox.session(blank.getvalue()) as session:
                    results = [session.run(c) for c in cells]
                out = [ln.strip() for ln in (results[-1].stdout if results else "").splitlines()
                       if ln.strip()]
                said = out[-1] if out and results[-1].status == "ok" else None
                hit = said is not None and (match(said, answer, atype, 0.01) or normalize_text(
                    options.get(answer, "\x00")) == normalize_text(said))
                blank_hits["hit" if hit else "miss"] += 1

    grounding = stats["splits"]["sft"].get("grounding", {})
    for fam in sorted(rows_per_family):
        n = rows_per_family[fam]
        c = by_family[fam]
        print(f"== {fam}: {n} rows")
        print(f"  provenance not passed       : {c['provenance_not_pass']}")
        share = c["code_answered"] / n
        print(f"  code-answered rows          : {c['code_answered']} ({share:.0%})")
        print(f"  traces with a recovery      : {c['recovered']} ({c['recovered'] / n:.1%})")
        pairs = [(k, len(v)) for k, v in thoughts.items() if k[0].startswith(fam + ".")
                 and seen[k] >= 20]
        if pairs:
            worst = min(pairs, key=lambda p: p[1])
            print(f"  distinct thoughts           : min {worst[1]} at {worst[0]} over "
                  f"{len(pairs)} (type, step) pairs seen >= 20 times")
        mine = {k: len(v) for k, v in shapes.items() if k.startswith(fam + ".")}
        if mine:
            one = sorted(k for k, v in mine.items() if v < 2)
            print(f"  code shapes per type        : min {min(mine.values())}, "
                  f"types with one shape: {len(one)} {one[:6]}")
        if blocks[fam]:
            block, count = blocks[fam].most_common(1)[0]
            print(f"  most shared 6-line block    : {count / n:.0%} of rows")
            print("    " + block.replace("\n", "\n    ")[:400])
        for check in ("twin", "jitter"):
            applied = fails = 0
            for tt, g in grounding.items():
                if not tt.startswith(fam + "."):
                    continue
                m = re.search(r"\((\d+)/(\d+)\)", g.get(check, ""))
                if m:
                    applied += int(m.group(2))
                    fails += int(m.group(2)) - int(m.group(1))
            if applied:
                print(f"  {check} pass before rejection : {1 - fails / applied:.1%} "
                      f"({applied - fails}/{applied})")
    if blank_jobs:
        total = sum(blank_hits.values())
        print(f"== search code-answered rows on a blank image: {blank_hits['hit']}/{total} "
              f"({blank_hits['hit'] / total:.1%}) print the gold answer")
    if blank_alike:
        print(f"   (apart: {sum(blank_alike.values())} rows whose gold is the blank image's own "
              f"answer, {dict(blank_alike)}; their counterfactual is the twin)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
