"""Parent side of the sandbox: ``Sandbox`` picks the mode, ``Session`` drives one trajectory.

"bwrap" mode lives in ``bwrap.py`` (jails) and ``jail.py``. "process" mode is here: workers
are children of the multiprocessing forkserver (safe with other threads running, and nested
inside forkserver-based process pools), which preloads ``datagen.sandbox.worker`` so a worker
starts in ~20 ms with numpy/PIL/matplotlib warm. Either way only JSON comes back from a cell
process (``protocol.py``). This module itself stays light: it never imports matplotlib or numpy.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import tempfile
import threading
import time
import weakref
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import TYPE_CHECKING, Any

from datagen.sandbox import bwrap
from datagen.sandbox.bwrap import JailPool, JailSession
from datagen.sandbox.protocol import (
    MAX_REPLY_BYTES,
    WORKER_PROCESS_NAME,
    CellResult,
    CellStatus,
    dumps,
    result_from_wire,
)
from datagen.sandbox.scratch import remove

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

_MODES = ("auto", "bwrap", "process")
_WORKER_MODULE = "datagen.sandbox.worker"
# Generous: the first worker of a process waits for the forkserver to import numpy/matplotlib,
# which can take seconds on a loaded 2-core box. Not counted against any cell's timeout.
_STARTUP_TIMEOUT = 120.0
_preload_lock = threading.Lock()


def planned_mode() -> str:
    """What ``Sandbox(mode="auto")`` runs on this machine, in one phrase for the log:
    ``"bwrap (<walls>)"`` or ``"process (<why not bwrap>; ...)"``. Starts no jail (the probe
    is cached)."""
    reason = bwrap.probe()
    if reason is None:
        return f"bwrap ({bwrap.walls()})"
    return f"process ({reason}; cells are not isolated from the host)"


def forkserver_context() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, with the sandbox worker module added to its preload list.

    A process has one forkserver; whoever starts it first decides what it preloads. Process
    pools that should share it with sandboxes (the build's shard pool) take their context from
    here, so sandbox workers still start warm (~10 ms instead of ~0.4 s).
    """
    ctx = multiprocessing.get_context("forkserver")
    server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    with _preload_lock:
        current = list(getattr(server, "_preload_modules", None) or ["__main__"])
        if _WORKER_MODULE not in current:
            if getattr(server, "_forkserver_pid", None) is not None:
                log.warning("forkserver already running without %s preloaded; sandbox "
                            "workers will start slowly", _WORKER_MODULE)
            # Keep what others asked for (e.g. "__main__"); only append ours.
            ctx.set_forkserver_preload([*current, _WORKER_MODULE])
    multiprocessing.forkserver.ensure_running()  # start preloading now, in the background
    return ctx  # type: ignore[return-value]


def _worker_entry(*args: Any) -> None:
    # Runs in the worker. A tiny indirection so the parent never imports the heavy worker
    # module just to pickle a reference to its main().
    from datagen.sandbox import worker

    worker.main(*args)


def _image_spec(image: PILImage | bytes) -> tuple[Any, ...]:
    """Normalise the session image into something cheap to ship to the worker."""
    from PIL import Image

    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        Image.open(io.BytesIO(data))  # header-only check: fail here, not in the worker
        return ("encoded", data)
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        return ("raw", rgb.size, rgb.tobytes())  # raw pixels: exact colours, no re-encode
    raise TypeError(f"image must be a PIL Image or encoded bytes, not {type(image).__name__}")


class _ProcessWorker:
    """Process mode: the parent's handle on one session's worker, its pipes and scratch dir."""

    def __init__(self, ctx: Any, image_spec: tuple[Any, ...], sandbox: Sandbox) -> None:
        self.scratch = tempfile.mkdtemp(prefix="datagen-sandbox-")
        self.conn, child_conn = ctx.Pipe()
        alive_r, self.alive_w = ctx.Pipe(duplex=False)
        self.ready = False
        self.exitcode: int | None = None
        self.process: BaseProcess = ctx.Process(
            target=_worker_entry,
            args=(child_conn, alive_r, self.scratch, image_spec, sandbox.max_output_chars,
                  sandbox.max_images, sandbox.memory_mb),
            daemon=True,  # the interpreter's exit hooks terminate, rather than join, it
            name=WORKER_PROCESS_NAME,
        )
        try:
            self.process.start()
        except BaseException:
            for conn in (self.conn, self.alive_w):
                conn.close()
            remove(self.scratch)
            raise
        finally:
            # Only the worker may hold these, so its death shows up as EOF here.
            child_conn.close()
            alive_r.close()

    def wait_ready(self) -> None:
        """Block until the worker has loaded the image and namespace."""
        if self.ready:
            return
        ready = wait([self.conn, self.process.sentinel], _STARTUP_TIMEOUT)
        if not ready:
            raise RuntimeError(f"sandbox worker did not start within {_STARTUP_TIMEOUT} s")
        try:
            if self.conn not in ready:
                raise EOFError
            msg = json.loads(self.conn.recv_bytes(MAX_REPLY_BYTES))
        except (EOFError, OSError, ValueError) as exc:
            self.process.join(1.0)
            raise RuntimeError(f"sandbox worker died at startup ({_describe_exit(self)})"
                               ) from exc
        if not isinstance(msg, dict) or "ready" not in msg:
            detail = msg.get("failed") if isinstance(msg, dict) else msg
            raise RuntimeError(f"sandbox worker failed to start:\n{detail}")
        self.ready = True

    def kill(self) -> None:
        """Kill the worker's process group, reap it, release fds, remove the scratch dir."""
        pid = self.process.pid
        if pid is not None:
            for kill in (os.killpg, os.kill):  # group first: also cell-spawned children
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.process.join(5.0)
        for conn in (self.conn, self.alive_w):
            conn.close()
        self.exitcode = self.process.exitcode
        if self.exitcode is not None:
            self.process.close()
        remove(self.scratch)


def _describe_exit(w: _ProcessWorker) -> str:
    code = w.exitcode if w.exitcode is not None else w.process.exitcode
    if code is None:
        return "worker died"
    if code < 0:
        return f"worker died with signal {-code}"
    return f"worker exited with code {code}"


class _ProcessSession:
    """The "process" backend of one ``Session``: a forkserver worker, respawned after a
    timeout or crash. Kept apart from Session so a finalizer can reference it."""

    def __init__(self, sandbox: Sandbox, image_spec: tuple[Any, ...]) -> None:
        self._sandbox = sandbox
        self._image_spec = image_spec
        self._seq = 0
        # Start now, wait on first run(): the worker loads while the caller does other work.
        self.worker: _ProcessWorker | None = self._spawn()

    def _spawn(self) -> _ProcessWorker:
        return _ProcessWorker(self._sandbox._ctx, self._image_spec, self._sandbox)

    @property
    def pid(self) -> int | None:
        return self.worker.process.pid if self.worker is not None else None

    @property
    def scratch_dir(self) -> str | None:
        return self.worker.scratch if self.worker is not None else None

    def run(self, code: str, limit: float) -> CellResult:
        sb = self._sandbox
        w = self.worker
        if w is None:
            w = self.worker = self._spawn()
        try:
            w.wait_ready()
            self._seq += 1
            start = time.perf_counter()
            try:
                w.conn.send_bytes(dumps({"seq": self._seq, "code": code}))
                ready = wait([w.conn, w.process.sentinel], limit)
                if w.conn in ready:
                    # Worker death usually shows as EOF here. Only JSON is read back: a cell
                    # that finds this pipe can write to it, so nothing from it is unpickled.
                    reply = json.loads(w.conn.recv_bytes(MAX_REPLY_BYTES))
                    if not isinstance(reply, dict) or reply.get("seq") != self._seq:
                        raise ValueError("reply out of order")
                    return result_from_wire(reply, time.perf_counter() - start,
                                            sb.max_output_chars, sb.max_images)
                if ready:  # ...but a cell's os.fork() child may still hold the pipe open
                    raise EOFError
                status: CellStatus = "timeout"
                error_type, message = "Timeout", f"cell exceeded {limit} s"
            except (EOFError, OSError):
                status, error_type, message = "crashed", "Crashed", ""
            except ValueError as exc:  # not JSON, too long, out of order: the cell forged it
                status, error_type = "crashed", "Crashed"
                message = f"invalid reply from the worker: {exc}"
        except BaseException:
            # Startup failure or e.g. KeyboardInterrupt mid-cell: the worker's state (or the
            # request/reply pairing on the pipe) is unknown, so drop it; next run() respawns.
            self.close()
            raise
        seconds = time.perf_counter() - start
        self.close()  # kills the group (also on timeout), reaps, removes scratch
        if status == "crashed" and not message:
            message = _describe_exit(w)
        # Respawn right away so the next run() finds a warm worker.
        self.worker = self._spawn()
        return CellResult(status=status, stdout="", stderr="", images=(), error_type=error_type,
                          error_message=message, truncated=False, seconds=seconds)

    def close(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.kill()


class Session:
    """One trajectory: state persists across run() calls. Context manager (closes the worker).

    After a timeout or crash the next run() gets a fresh worker: namespace reset, a new
    scratch dir, ``input_image`` reloaded.
    """

    def __init__(self, sandbox: Sandbox, image_spec: tuple[Any, ...]) -> None:
        self._sandbox = sandbox
        self._closed = False
        self._backend: _ProcessSession | JailSession
        if sandbox._pool is not None:
            self._backend = JailSession(sandbox._pool, image_spec, sandbox.max_output_chars,
                                        sandbox.max_images)
        else:
            self._backend = _ProcessSession(sandbox, image_spec)
        # Kill the worker even if the caller forgets close() (GC or interpreter exit).
        self._finalizer = weakref.finalize(self, self._backend.close)

    @property
    def pid(self) -> int | None:
        """Host PID of what runs this session's cells: the worker (= its process group) in
        "process" mode, the jail's bwrap process in "bwrap" mode. None if none is running."""
        return self._backend.pid

    @property
    def scratch_dir(self) -> str | None:
        """The worker's scratch dir (its cwd) on the host, in "process" mode. None in "bwrap"
        mode: the scratch dir lives in the jail's own tmpfs, invisible from the host."""
        if isinstance(self._backend, _ProcessSession):
            return self._backend.scratch_dir
        return None

    @property
    def cleanup_entries(self) -> int | None:
        """In "bwrap" mode, the entries the jail's cleanup looked at before this session
        opened (known once a cell has run; a few per file the last session wrote). None in
        "process" mode."""
        if isinstance(self._backend, JailSession):
            return self._backend.walked
        return None

    def run(self, code: str, timeout: float | None = None) -> CellResult:
        """Run one cell; wait at most ``timeout`` s (default: the Sandbox's)."""
        if self._closed:
            raise RuntimeError("session is closed")
        if not isinstance(code, str):
            raise TypeError(f"code must be str, not {type(code).__name__}")
        limit = float(self._sandbox.timeout if timeout is None else timeout)
        return self._backend.run(code, limit)

    def close(self) -> None:
        """Kill the worker (if alive) and remove its scratch dir. Idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Sandbox:
    """Runs sessions in the mode picked at construction; create one per process and reuse it.
    Context manager.

    ``mode``: "bwrap" (jails; RuntimeError if they cannot start here), "process" (forkserver
    workers, no isolation from the host) or "auto" (bwrap if a probe launch works, else
    process, logged at ``fallback_level`` with the reason: WARNING unless the caller knows
    the code is its own). ``self.mode`` is the mode that runs and
    ``self.walls`` what stands around its cells (which bwrap, the seccomp filter, the memory
    limit), e.g. "bundled bubblewrap 0.11.0 (no system bwrap); seccomp filter on; memory
    RLIMIT_AS per process".
    """

    mode: str
    walls: str

    def __init__(self, timeout: float = 15.0, max_output_chars: int = 10_000,
                 memory_mb: int = 4096, max_images: int = 8, mode: str = "auto",
                 fallback_level: int = logging.WARNING) -> None:
        if timeout <= 0 or max_output_chars <= 0 or memory_mb <= 0 or max_images < 0:
            raise ValueError("timeout, max_output_chars and memory_mb must be positive")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
        self.timeout = float(timeout)
        self.max_output_chars = max_output_chars
        self.memory_mb = memory_mb
        self.max_images = max_images
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        self._pool: JailPool | None = None
        self.mode = "process"
        # What the cells run behind, for the log, the run summary and the card.
        self.walls = "forked processes, no isolation from the host"
        if mode != "process":
            reason = bwrap.probe()
            if reason is None:
                self._pool = JailPool(memory_mb, max_output_chars, max_images)
                self.mode = "bwrap"
                self.walls = bwrap.walls()
                # Jails die with this process anyway; this also covers a forgotten close().
                weakref.finalize(self, self._pool.close)
            elif mode == "bwrap":
                raise RuntimeError(f"sandbox mode 'bwrap' is unavailable: {reason}")
            else:
                log.log(fallback_level, "sandbox: bwrap mode unavailable (%s); using process "
                        "mode, which does NOT isolate cells from the host", reason)
        if self.mode == "process":
            self._ctx = forkserver_context()

    def session(self, image: PILImage | bytes) -> Session:
        """Start a session whose worker has ``image`` preloaded (PIL Image or encoded bytes)."""
        spec = _image_spec(image)
        with self._lock:
            if self._closed:
                raise RuntimeError("sandbox is closed")
            s = Session(self, spec)
            self._sessions.add(s)
        return s

    def close(self) -> None:
        """Close every session still open, then stop the jails (the shared forkserver of
        process mode is left running). Idempotent."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions)
        for s in sessions:
            s.close()
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
