"""Per-call cost of running a cell: a fresh ``python`` process vs the sandbox executor.

    python bench/bench_sandbox.py [--repeats 20] [--mode auto|bwrap|process]

Three snippets (``pass``; a numpy + PIL crop; a small matplotlib plot shown as PNG) run
(a) in a fresh ``python -c`` per call that loads the image from a file and imports what the
snippet needs, and (b) through the executor: one new session per call (like a one-cell
trajectory) and one cell inside an open session. The three are interleaved, ``--repeats``
times; figures are medians of wall time per call in ms, and the ratio (a) / (b).
Start-up of the Sandbox itself (first jail or forkserver, once per process) is printed apart.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.sandbox import Sandbox

_LOAD = "from PIL import Image\ninput_image = Image.open('input.png').convert('RGB')\n"
SNIPPETS = {
    "pass": ("pass", ""),
    "numpy+PIL crop": (
        "import numpy as np\n"
        "m = np.asarray(input_image)[10:200, 10:200].mean()\n"
        "small = input_image.crop((10, 10, 200, 200)).resize((380, 380))",
        ""),
    "matplotlib plot": (
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([1, 3, 2])\nax.set_title('t')\n"
        "plt.show()",
        # A fresh process has no capture hook: save the PNG the executor would return.
        "import io\nfig.savefig(io.BytesIO(), format='png')\n"),
}


def make_image() -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    arr[100:300, 200:400] = (200, 30, 30)
    return Image.fromarray(arr)


def fresh_process(code: str, workdir: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=workdir, check=True,
                   env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--mode", default="auto", choices=("auto", "bwrap", "process"))
    args = ap.parse_args()
    img = make_image()
    fresh: dict[str, list[float]] = {k: [] for k in SNIPPETS}
    per_session: dict[str, list[float]] = {k: [] for k in SNIPPETS}
    per_cell: dict[str, list[float]] = {k: [] for k in SNIPPETS}
    walked: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        img.save(workdir / "input.png")
        t = time.perf_counter()
        sandbox = Sandbox(timeout=30.0, mode=args.mode)
        with sandbox.session(img) as s:
            assert s.run("pass").status == "ok"
        startup = time.perf_counter() - t
        with sandbox, sandbox.session(img) as open_session:
            for code, _ in SNIPPETS.values():  # warm caches of both sides once
                assert open_session.run(code).status == "ok"
            for _ in range(args.repeats):
                for name, (code, fresh_tail) in SNIPPETS.items():
                    fresh[name].append(fresh_process(_LOAD + code + "\n" + fresh_tail, workdir))
                    t = time.perf_counter()
                    with sandbox.session(img) as s:
                        r = s.run(code)
                    per_session[name].append(time.perf_counter() - t)
                    walked.append(s.cleanup_entries or 0)
                    assert r.status == "ok", r
                    t = time.perf_counter()
                    r = open_session.run(code)
                    per_cell[name].append(time.perf_counter() - t)
                    assert r.status == "ok", r
    ms = {k: {kind: statistics.median(v[k]) * 1000 for kind, v in
              (("fresh", fresh), ("session", per_session), ("cell", per_cell))}
          for k in SNIPPETS}
    print(f"sandbox mode: {sandbox.mode} ({sandbox.walls}); python {sys.prefix}")
    print(f"image 640x480; median of {args.repeats} interleaved runs; ms per call")
    print(f"sandbox start-up (first session's first cell, once per process): "
          f"{startup * 1000:.0f} ms\n")
    print(f"{'snippet':<17} {'(a) fresh python':>16} {'(b) new session':>16} "
          f"{'cell in session':>16} {'(a)/(b) session':>16} {'(a)/cell':>9}")
    for name, m in ms.items():
        print(f"{name:<17} {m['fresh']:>16.1f} {m['session']:>16.1f} {m['cell']:>16.1f} "
              f"{m['fresh'] / m['session']:>15.1f}x {m['fresh'] / m['cell']:>8.1f}x")
    overall = statistics.median(m["fresh"] / m["session"] for m in ms.values())
    print(f"\nmedian (a)/(b) over snippets, one session per call: {overall:.1f}x (target >= 7x)")
    print(f"session-open cost (new session, one 'pass' cell, close): {ms['pass']['session']:.1f} "
          f"ms")
    if walked:
        print(f"entries the jail's cleanup looked at per session: median "
              f"{statistics.median(walked):.0f}, most {max(walked)} (read-only binds skipped)")


if __name__ == "__main__":
    main()
