"""Visual-search scenes: render and JPEG-encode time per scene at 1024, 2048 and 4096 px.

    python bench/bench_search.py [--repeats 7]

Also prints the PNG encode time and both sizes, which is why the family ships JPEG.
Figures are medians over ``--repeats`` scenes per size, made in this process.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np

from datagen.scenes.search import encode, make_spec, render_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'long side':>9} {'objects':>7} {'render ms':>9} {'jpeg ms':>8} {'jpeg KB':>8} "
          f"{'png ms':>7} {'png KB':>7}")
    for side in (1024, 2048, 4096):
        rows = []
        while len(rows) < args.repeats:
            spec = make_spec(rng, side)
            if max(spec["size"]) != side:
                continue
            t = time.perf_counter()
            img = render_scene(spec)
            t_render = time.perf_counter() - t
            t = time.perf_counter()
            jpeg = encode(img)
            t_jpeg = time.perf_counter() - t
            t = time.perf_counter()
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            t_png = time.perf_counter() - t
            rows.append((len(spec["objects"]), t_render, t_jpeg, len(jpeg), t_png, buf.tell()))
        med = [statistics.median(r[i] for r in rows) for i in range(6)]
        print(f"{side:>9} {med[0]:>7.0f} {1000 * med[1]:>9.0f} {1000 * med[2]:>8.0f} "
              f"{med[3] / 1024:>8.0f} {1000 * med[4]:>7.0f} {med[5] / 1024:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
