"""Worker side of the sandbox: runs teacher-written cells in a persistent namespace.

The heavy imports below (numpy, PIL, matplotlib with Agg, pyplot) and the one-off
font/codec warm-up are paid once by a long-lived process that then forks one worker per
session: the multiprocessing forkserver in "process" mode (see ``session.py``), the jail
process in "bwrap" mode (see ``jail.py``). Both share ``run_cell`` and ``serve``.

Nothing here is meant to be imported by the parent process: importing it pins BLAS to one
thread and selects the Agg backend process-wide.
"""

from __future__ import annotations

import os

# Must happen before numpy / matplotlib are imported: one BLAS thread per worker keeps many
# concurrent workers from oversubscribing the CPUs, and Agg needs no display.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["MPLBACKEND"] = "Agg"

import ast  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import linecache  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402
import zlib  # noqa: E402
from collections.abc import Callable  # noqa: E402
from multiprocessing import spawn  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib._pylab_helpers import Gcf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from datagen.sandbox.protocol import WORKER_PROCESS_NAME, dumps, result_to_wire  # noqa: E402

CELL_FILENAME = "<cell>"
INPUT_IMAGE_FILE = "input_image.jpg"
TRUNCATION_MARKER = "... [output truncated]"
# How captured PNGs are compressed: zlib level 1 with the run-length strategy encodes a noisy
# 1024-px view of a search scene ~4x faster than Pillow's default (level 6) for ~6 % more bytes
# (a zoomed chart: ~15 % more). Encoding captures was most of a search trace's cost.
PNG_OPTIONS: dict[str, int] = {"compress_level": 1, "compress_type": zlib.Z_RLE}
# A captured PIL image with more distinct colours than this (counted at half size) is photo-like
# (a view of a search scene: 10k+ colours; chart and geometry views, antialiasing included,
# stay under ~2k) and is stored as JPEG: on a 1024-px search view that is 2 ms and 165 KB
# against PNG's 31 ms and 761 KB. 4:4:4 keeps thin red boxes and small print crisp.
PHOTO_COLOURS = 4096
JPEG_OPTIONS: dict[str, Any] = {"quality": 90, "subsampling": 0}
_SANDBOX_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TRACEBACK_MAX_LINES = 40
_ENV_PASSTHROUGH = ("PATH", "LANG")

# Image capture of the cell currently running (None between cells).
_active: _Capture | None = None


class _CappedText(io.TextIOBase):
    """A write-only text stream that keeps the first ``cap`` characters and drops the rest.

    Dropping (instead of buffering everything) keeps an endless ``print`` loop from eating
    the worker's memory before the parent's timeout fires.
    """

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._parts: list[str] = []
        self._size = 0
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if self.truncated:  # fast path for an endless print loop
            return len(s)
        room = self._cap - self._size
        if len(s) > room:
            self.truncated = True
            s = s[: max(room, 0)]
        if s:
            self._parts.append(s)
            self._size += len(s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self._parts)


class _Capture:
    """Images captured during one cell, capped at ``max_images``."""

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images
        self.images: list[bytes] = []
        self.dropped = 0

    def add_pil(self, img: Image.Image) -> None:
        if self._full():
            return
        self.images.append(encode_capture(img))

    def add_figure(self, fig: Figure) -> None:
        if self._full():
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", pil_kwargs=PNG_OPTIONS)
        self.images.append(buf.getvalue())

    def _full(self) -> bool:
        if len(self.images) >= self.max_images:
            self.dropped += 1
            return True
        return False


def encode_capture(img: Image.Image) -> bytes:
    """A captured image's bytes: JPEG when its pixels are photo-like, PNG (lossless) otherwise."""
    if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        img = img.convert("RGB")  # PNG cannot hold e.g. "F" or "CMYK"
    buf = io.BytesIO()
    if img.mode in ("RGB", "L") and _photo_like(img):
        img.save(buf, format="JPEG", **JPEG_OPTIONS)
    else:
        img.save(buf, format="PNG", **PNG_OPTIONS)
    return buf.getvalue()


def _photo_like(img: Image.Image) -> bool:
    """More than PHOTO_COLOURS distinct colours at half size (under 1.5 ms on a 1024-px view:
    counting stops at the limit)."""
    small = img.reduce(2) if min(img.size) >= 64 else img
    return small.getcolors(PHOTO_COLOURS) is None


def _plt_show(*_args: Any, **_kwargs: Any) -> None:
    """Replacement for ``plt.show``: capture every open figure, then close them all."""
    for manager in Gcf.get_all_fig_managers():
        if _active is not None:
            _active.add_figure(manager.canvas.figure)
    plt.close("all")


def _figure_show(self: Figure, *_args: Any, **_kwargs: Any) -> None:
    """Replacement for ``Figure.show``: capture that figure (it stays open)."""
    if _active is not None:
        _active.add_figure(self)


def _pil_show(self: Image.Image, *_args: Any, **_kwargs: Any) -> None:
    """Replacement for ``PIL.Image.Image.show``: capture the image instead of opening a viewer."""
    if _active is not None:
        _active.add_pil(self)


def _looks_like_image(a: np.ndarray) -> bool:
    if a.size == 0 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        return False
    if a.dtype == np.uint8:
        return True
    if np.issubdtype(a.dtype, np.floating):
        return bool(np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0)
    return False


def _display(value: Any, capture: _Capture) -> None:
    """Jupyter-style display of the cell's last expression."""
    if value is None:
        return
    if isinstance(value, Image.Image):
        capture.add_pil(value)
    elif isinstance(value, np.ndarray) and _looks_like_image(value):
        arr = value
        if arr.dtype != np.uint8:
            arr = np.round(arr.astype(np.float64) * 255.0).astype(np.uint8)
        capture.add_pil(Image.fromarray(np.ascontiguousarray(arr)))
    else:
        print(repr(value))


def _compile_cell(code: str) -> tuple[types.CodeType, types.CodeType | None]:
    """Compile a cell into (body, last expression or None); raises SyntaxError."""
    # Register the source so tracebacks show the cell's own lines.
    linecache.cache[CELL_FILENAME] = (len(code), None, code.splitlines(True), CELL_FILENAME)
    tree = ast.parse(code, CELL_FILENAME, "exec")
    last: types.CodeType | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        expr = ast.Expression(tree.body.pop().value)
        last = compile(expr, CELL_FILENAME, "eval", dont_inherit=True)
    # dont_inherit: this module's `from __future__ import annotations` must not leak into cells.
    return compile(tree, CELL_FILENAME, "exec", dont_inherit=True), last


def _strip_sandbox_frames(te: traceback.TracebackException, seen: set[int]) -> None:
    """Drop executor frames from a traceback (and its chained causes) in place."""
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not f.filename.startswith(_SANDBOX_DIR)]
    )
    for other in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if other is not None:
            _strip_sandbox_frames(other, seen)


def _format_traceback(exc: BaseException) -> str:
    te = traceback.TracebackException.from_exception(exc)
    _strip_sandbox_frames(te, set())
    lines = "".join(te.format()).splitlines(True)
    if len(lines) > _TRACEBACK_MAX_LINES:
        lines = ["...\n", *lines[-_TRACEBACK_MAX_LINES:]]
    return "".join(lines)


def _finish(text: str, truncated: bool) -> str:
    if not truncated:
        return text
    return text + ("" if not text or text.endswith("\n") else "\n") + TRUNCATION_MARKER + "\n"


def run_cell(code: str, ns: dict[str, Any], max_chars: int, max_images: int) -> dict[str, Any]:
    """Execute one cell in ``ns``; return the fields of a ``CellResult`` (minus ``seconds``)."""
    global _active
    out, err = _CappedText(max_chars), _CappedText(max_chars)
    capture = _Capture(max_images)
    error_type: str | None = None
    error_message: str | None = None
    tb_text = ""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    _active = capture
    try:
        try:
            body, last = _compile_cell(code)
        except (SyntaxError, ValueError) as exc:  # ValueError: e.g. null bytes in the source
            # No frames worth showing: just the caret display of the offending line.
            tb_text = "".join(traceback.format_exception_only(type(exc), exc))
            raise
        exec(body, ns)
        if last is not None:
            _display(eval(last, ns), capture)
    except BaseException as exc:  # noqa: B036 - SystemExit etc. must not kill the worker
        error_type = type(exc).__name__
        first = str(exc).strip().splitlines()
        error_message = first[0] if first else ""
        tb_text = (tb_text or _format_traceback(exc))[-max_chars:]
    finally:
        sys.stdout, sys.stderr = saved
        _active = None
    err_text = err.getvalue()
    if capture.dropped:
        err_text += f"[sandbox] image limit ({max_images}) reached; {capture.dropped} dropped\n"
    # The traceback has priority over whatever the cell wrote to stderr before failing.
    room = max(max_chars - len(tb_text), 0)
    err_truncated = err.truncated or len(err_text) > room
    stderr = _finish(err_text[:room], err_truncated)
    if tb_text:
        stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + tb_text
    return {
        "status": "ok" if error_type is None else "error",
        "stdout": _finish(out.getvalue(), out.truncated),
        "stderr": stderr,
        "images": tuple(capture.images),
        "error_type": error_type,
        "error_message": error_message,
        "truncated": out.truncated or err_truncated,
    }


def install_display_hooks() -> None:
    """Make ``plt.show`` / ``Figure.show`` / ``Image.show`` capture instead of display."""
    plt.show = _plt_show
    Figure.show = _figure_show  # type: ignore[method-assign]
    Image.Image.show = _pil_show  # type: ignore[method-assign]


def load_session_image(spec: tuple[Any, ...], max_bytes: int | None = None
                       ) -> tuple[Image.Image, bytes]:
    """The session image in RGB and the bytes of its ``input_image.jpg``.

    ``spec`` is ``("raw", (w, h), rgb_bytes)`` or ``("encoded", data)``. An image that is
    already an RGB JPEG (search scenes) keeps its own bytes: they decode to exactly
    ``input_image``, and re-encoding a 4096-px image costs ~15 ms. MemoryError if its pixels
    would take more than ``max_bytes``.
    """
    if spec[0] == "raw":
        size = tuple(spec[1])
        img: Image.Image | None = None
    else:
        img = Image.open(io.BytesIO(spec[1]))  # reads the header only
        size = img.size
    if max_bytes is not None and 4 * size[0] * size[1] > max_bytes:  # Pillow keeps 4 B/pixel
        raise MemoryError(f"a {size[0]}x{size[1]} image does not fit in the sandbox's memory "
                          "limit")
    if img is None:
        rgb = Image.frombytes("RGB", size, spec[2])
        return rgb, _jpeg(rgb)
    rgb = img.convert("RGB")  # convert() also forces the decode
    if img.format == "JPEG" and img.mode == "RGB":
        return rgb, spec[1]
    return rgb, _jpeg(rgb)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def session_namespace(image: Image.Image, jpeg: bytes) -> dict[str, Any]:
    """Write ``input_image.jpg`` into the cwd and return a fresh ``__main__`` namespace
    holding ``input_image``."""
    with open(INPUT_IMAGE_FILE, "wb") as f:
        f.write(jpeg)
    main_mod = types.ModuleType("__main__")
    main_mod.__dict__["input_image"] = image
    sys.modules["__main__"] = main_mod  # so pickling cell-defined classes works
    return main_mod.__dict__


def prepare_namespace(image_spec: tuple[Any, ...]) -> dict[str, Any]:
    """Decode the session image, write ``input_image.jpg`` into the cwd and return a fresh
    ``__main__`` namespace (process mode: each worker decodes its own image)."""
    return session_namespace(*load_session_image(image_spec))


def serve(recv: Callable[[], bytes | None], send: Callable[[bytes], None], ns: dict[str, Any],
          max_chars: int, max_images: int) -> None:
    """Answer ``{"seq", "code"}`` requests with result lines until ``recv`` returns None.

    Only this process answers: a copy made by a cell's ``os.fork()`` that falls through to
    here exits instead, so it can neither reply for the cell nor steal the next request.
    """
    me = os.getpid()
    while True:
        msg = recv()
        if msg is None:
            return
        req = json.loads(msg)
        result = run_cell(req["code"], ns, max_chars, max_images)
        if os.getpid() != me:
            os._exit(0)
        send(dumps({"seq": req["seq"], **result_to_wire(result)}))


def _watch_parent(alive: Connection) -> None:
    """Kill this worker's process group once the parent's end of ``alive`` closes.

    Covers a parent that dies without closing the session while a cell loops forever.
    """
    try:
        alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os.killpg(0, signal.SIGKILL)


def _setup_process(scratch: str, memory_mb: int, alive: Connection) -> None:
    os.setsid()  # own process group: the parent kills cell-spawned children with it
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # C-level / subprocess output must not spam the parent's terminal
        os.dup2(devnull, fd)
    os.close(devnull)
    env = {k: os.environ[k] for k in _ENV_PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=scratch, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    os.environ.clear()  # scrubs secrets such as OPENAI_API_KEY / HF_TOKEN
    os.environ.update(env)
    os.chdir(scratch)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    threading.Thread(target=_watch_parent, args=(alive,), daemon=True).start()
    install_display_hooks()


def main(conn: Connection, alive: Connection, scratch: str, image_spec: tuple[Any, ...],
         max_chars: int, max_images: int, memory_mb: int) -> None:
    """Process-mode worker entry point: set up the process and namespace, then serve cells.

    Protocol (JSON in ``send_bytes`` frames, so the parent never unpickles what a cell could
    write): ``{"ready": pid}`` or ``{"failed": traceback}`` once, then one result per request
    (see ``serve``). Ends on EOF.
    """
    try:
        _setup_process(scratch, memory_mb, alive)
        ns = prepare_namespace(image_spec)
    except BaseException:  # noqa: B036 - report any setup failure to the parent
        conn.send_bytes(dumps({"failed": traceback.format_exc()}))
        return
    conn.send_bytes(dumps({"ready": os.getpid()}))

    def recv() -> bytes | None:
        try:
            return conn.recv_bytes()
        except (EOFError, OSError):
            return None

    serve(recv, conn.send_bytes, ns, max_chars, max_images)


def _warm_up() -> None:
    """Do once, here, what teacher code typically does: draw and save a figure, encode PNG and
    JPEG, resize and draw on an image, fit a line, measure blobs with scipy.ndimage, simplify
    with sympy. Fonts, codecs, libraries and the lazy imports and caches inside them are then
    loaded in the forkserver (or jail) and inherited by every session's worker, instead of
    being loaded again in each one."""
    try:
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1], [0, 1])
        ax.set_title("warm-up")
        ax.imshow(np.zeros((2, 2, 3), dtype=np.uint8))
        fig.savefig(io.BytesIO(), format="png", pil_kwargs=PNG_OPTIONS)
        plt.close(fig)
        small = Image.new("RGB", (64, 48), (200, 200, 200))
        small.save(io.BytesIO(), format="PNG", **PNG_OPTIONS)
        small.save(io.BytesIO(), format="JPEG", quality=95)
        noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
        encode_capture(Image.fromarray(noise))  # the JPEG path of captures
        view = small.resize((128, 96), Image.LANCZOS)
        view.thumbnail((32, 32))
        pen = ImageDraw.Draw(small)
        pen.rectangle((4, 4, 20, 20), outline=(255, 0, 0), width=2)
        pen.text((30, 30), "7", fill=(255, 0, 0), anchor="lb", font_size=14)
        np.polyfit([0.0, 1.0, 2.0], [0.0, 2.0, 4.0], 1)
        # Libraries teacher code reaches for: ~0.2 s each to import (geometry traces use sympy,
        # chart measurements scipy.ndimage).
        import sympy
        from scipy import ndimage

        mask = np.zeros((8, 8), dtype=bool)
        mask[1:3, 1:3] = mask[5:7, 4:7] = True
        labels, n = ndimage.label(mask)
        ndimage.center_of_mass(mask, labels, range(1, n + 1))
        ndimage.sum(mask, labels, range(1, n + 1))
        # simplify() and nsimplify() import most of their machinery on first use: left to the
        # workers, that costs every geometry session ~25 ms of CPU.
        a, b = sympy.S(3), sympy.Rational(7, 2)
        for expr in (sympy.sqrt(a**2 + b**2 - 2 * a * b * sympy.cos(sympy.rad(50))),
                     2 * a * sympy.sin(sympy.rad(40) / 2), sympy.pi * b**2 / 2,
                     (180 - a) / 2, sympy.sqrt(a * (a - 1) * (a - 2)) + sympy.sqrt(3) / 4):
            sympy.nsimplify(sympy.simplify(expr))
            round(float(expr), 2)
    except Exception:  # noqa: BLE001 - a warm-up failure must never break the forkserver
        pass


def _skip_main_fixup_for_workers() -> None:
    """Stop sandbox workers from re-running the parent's ``__main__`` at startup.

    multiprocessing makes every forkserver child re-import the parent's main script (the
    forkserver's own ``__main__`` preload never receives the path, CPython 3.11), which costs
    tens of ms per worker under pytest and more under a CLI that imports heavy libraries.
    Workers never need it, so drop those keys for processes carrying our name only; other
    users of the shared forkserver (process pools) keep the normal behaviour.
    """
    original = spawn.prepare
    if getattr(original, "_datagen_sandbox", False):
        return

    def prepare(data: dict[str, Any]) -> None:
        if data.get("name") == WORKER_PROCESS_NAME:
            data = {k: v for k, v in data.items() if not k.startswith("init_main_from")}
        original(data)

    prepare._datagen_sandbox = True  # type: ignore[attr-defined]
    spawn.prepare = prepare


_warm_up()
# Move everything imported so far out of the collector's reach: a session worker forked from
# here then never walks (and so never copies on write) the inherited objects, tens of MB of
# them, when its cells trigger a full collection.
gc.freeze()
_skip_main_fixup_for_workers()
