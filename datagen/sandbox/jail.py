"""The process inside a bubblewrap jail: a warm interpreter that forks one worker per session.

``bwrap.py`` starts ``python -I -c "...jail.main(sys.argv)" CONFIG`` inside bwrap. This process
drops to its unprivileged uid (when bwrap ran as root), makes itself non-dumpable (cells of
the same uid cannot ptrace it) and a child subreaper, imports numpy / PIL / matplotlib once,
then serves the parent over JSON lines on its original stdin / stdout:

    -> {"op": "open", "image": {...}}                  <- {"ok": true} | {"ok": false, "error"}
    -> {"op": "run", "seq": n, "code": s, "timeout": t}  <- result fields (protocol.py) + "seq"
    -> {"op": "close"}                                  <- {"ok": true}

Its first line is ``{"ready": true, ...}`` or ``{"failed": traceback}``; EOF on stdin ends it.

Session workers are forks of this process. "open" sends the image (raw pixels or encoded
bytes after the request line); the jail decodes it once and keeps it, with the bytes of
``input_image.jpg``, until an "open" brings another image, so the sessions of one scene (one
per question) skip the decode. It then forks the session's worker, which inherits the decoded
image copy-on-write (a cell that draws on ``input_image`` changes its own copy only), sets its
rlimits, closes every inherited fd but its two pipes, makes ``/scratch/<n>`` its cwd and HOME,
writes ``input_image.jpg`` and serves cells. The jail enforces each cell's timeout. After a
timeout, a crash or "close" it SIGKILLs the worker's group and then every other process in
the jail's pid namespace (``kill(-1)``: all but itself and pid 1, so ``setsid`` daemons die
too), answers, and only then, before reading the next request, reaps them and empties
/scratch, /tmp and /dev/shm of what sessions wrote, stepping around the read-only binds that
land there, such as a venv in the host's /tmp (after a timeout or a crash it also forks a
fresh worker for the same image: the documented state reset). The image comes from the
parent, as trusted as the request itself; the jail refuses one whose pixels exceed a worker's
memory limit.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from datagen.sandbox.protocol import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    LineChannel,
    check_result,
    dumps,
    failure,
)
from datagen.sandbox.scratch import empty_dir

_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_WORKER_START_TIMEOUT = 60.0
_SWEEP_TIMEOUT = 5.0
_CLEAN_DIRS = ("/tmp", "/dev/shm")
_PIPE_BYTES = 1 << 20


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become ``uid``/``gid`` with no groups and no capabilities (bwrap ran as root)."""
    if uid is None or gid is None or os.getuid() != 0:
        return
    for cap in range(64):  # empty the bounding set too (needs CAP_SETPCAP, granted by bwrap)
        try:
            _prctl(_PR_CAPBSET_DROP, cap)
        except OSError:
            break  # EINVAL past the last capability the kernel knows
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # from root to non-root: clears every capability set
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise RuntimeError("could not drop root")


def _devnull_onto(*fds: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def _prepare_matplotlib(cache: str | None) -> None:
    """Seed the writable MPLCONFIGDIR with the font cache the parent built once on the host,
    so importing matplotlib does not rebuild it (about a second)."""
    conf = os.environ["MPLCONFIGDIR"]
    os.makedirs(conf, exist_ok=True)
    if cache is None:
        return
    try:
        for name in os.listdir(cache):
            if name.startswith("fontlist") and name.endswith(".json"):
                shutil.copyfile(os.path.join(cache, name), os.path.join(conf, name))
    except OSError:
        pass  # matplotlib builds its own cache


def _close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"worker died with signal {os.WTERMSIG(status)}"
    return f"worker exited with code {os.waitstatus_to_exitcode(status)}"


class _ParentGone(Exception):
    """The parent closed its end of the protocol pipe."""


@dataclass
class _SessionWorker:
    """The jail's hold on the worker it forked for the current session."""

    pid: int
    pidfd: int | None
    chan: LineChannel  # reads its replies, writes its requests
    scratch: str


@dataclass
class _Image:
    """A session image as the jail keeps it between sessions."""

    frame: bytes  # as received (header line + payload): the image's identity
    image: Any  # the RGB PIL image that workers get as ``input_image``
    jpeg: bytes  # the bytes of ``input_image.jpg``


class JailServer:
    """The process inside a jail: serves the parent one session at a time (module docstring).

    The parent's side of it is ``bwrap.JailHandle``.
    """

    def __init__(self, chan: LineChannel, cfg: dict[str, Any], worker: ModuleType) -> None:
        self.chan = chan
        self.cfg = cfg
        self.worker_module = worker
        self.image: bytes | None = None  # the session's image frame (header line + pixels)
        self.loaded: _Image | None = None  # the last image decoded, kept for the next session
        self.worker: _SessionWorker | None = None  # the session's worker
        self.dirty = False  # killed processes not yet reaped, dirs not yet emptied
        self.dying: tuple[int, int] | None = None  # (pid, pidfd) of the last worker killed
        self.start_error = ""
        self.count = 0
        self.walked = 0  # entries the last cleanup looked at (reported with "open")

    def serve(self) -> None:
        try:
            while True:
                self._housekeeping()
                try:
                    req = self.chan.read_json(None)
                except (EOFError, ValueError):
                    return
                op = req.get("op")
                if op == "open":
                    size = int(req["image"]["nbytes"])
                    frame = dumps(req["image"]) + self.chan.read_exact(size, None)
                    self._kill()
                    self._cleanup()
                    self.image = frame
                    self._start_worker()
                    reply: dict[str, Any] = ({"ok": True, "walked": self.walked}
                                             if self.worker is not None
                                             else {"ok": False, "error": self.start_error})
                elif op == "run":
                    reply = {"seq": req["seq"],
                             **self._run(req["seq"], req["code"], float(req["timeout"]))}
                elif op == "close":
                    self._kill()
                    self.image = None
                    reply = {"ok": True}
                else:
                    return
                self.chan.send(reply, None)
        except (_ParentGone, OSError):
            return
        finally:
            self._kill()
            self._cleanup()

    def _housekeeping(self) -> None:
        """Work done after a reply and before the next request is read: the parent does not
        wait for it, and no request is served before it is complete."""
        self._cleanup()
        if self.image is not None and self.worker is None:
            self._start_worker()  # the reset after a timeout or crash: warm for the next run

    # -- session workers ---------------------------------------------------------------------

    def _fork(self) -> _SessionWorker | None:
        """Fork the session's worker for ``self.loaded``; it sets itself up and says ready."""
        self.count += 1
        scratch = os.path.join(self.cfg["scratch"], str(self.count))
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        for fd in (req_w, rep_w):
            _grow_pipe(fd)
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            self.start_error = f"fork failed: {exc}"
            return None
        if pid == 0:  # pragma: no cover - runs in the forked worker
            try:
                self._worker_main(req_r, rep_w, scratch)
            finally:
                os._exit(70)
        os.close(req_r)
        os.close(rep_w)
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None  # old kernel: poll waitpid instead
        return _SessionWorker(pid, pidfd, LineChannel(rep_r, req_w, MAX_REPLY_BYTES), scratch)

    def _start_worker(self) -> None:
        """Fork a worker for ``self.image`` (decoded first, unless it is the last one) and
        wait until it is ready."""
        assert self.image is not None
        if self.loaded is None or self.loaded.frame != self.image:
            self.loaded = None  # free the previous image before decoding the next
            try:
                self.loaded = self._load(self.image)
            except Exception:  # noqa: BLE001 - a bad image fails this session, not the jail
                self.start_error = traceback.format_exc()
                return
        w = self._fork()
        if w is None:
            return
        self.worker = w
        try:
            kind, value = self._await(time.monotonic() + _WORKER_START_TIMEOUT, None)
        except TimeoutError:
            kind, value = "timeout", None
        if kind == "line" and isinstance(value, dict) and value.get("ready") is True:
            return
        if kind == "line":
            self.start_error = str(value.get("failed") if isinstance(value, dict) else value)
        elif kind == "dead":
            self.start_error = _describe(value)
        elif kind == "timeout":
            self.start_error = f"worker did not start within {_WORKER_START_TIMEOUT} s"
        else:
            self.start_error = str(value)
        self._kill()
        self._cleanup()

    def _load(self, frame: bytes) -> _Image:
        """Decode an image frame and make the bytes of its ``input_image.jpg``."""
        end = frame.index(b"\n")
        head, data = json.loads(frame[:end]), frame[end + 1:]
        if head["kind"] == "raw":
            spec: tuple[Any, ...] = ("raw", tuple(head["size"]), data)
        else:
            spec = ("encoded", data)
        limit = self.cfg["memory_mb"] << 20
        image, jpeg = self.worker_module.load_session_image(spec, limit)
        return _Image(frame, image, jpeg)

    def _worker_main(self, req_r: int, rep_w: int, scratch: str) -> None:
        os.setsid()  # own group: killed as a group, and no terminal
        _close_fds_except({req_r, rep_w})
        cfg = self.cfg
        memory = cfg["memory_mb"] << 20
        for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CORE, 0),
                             (resource.RLIMIT_FSIZE, cfg["fsize"]),
                             (resource.RLIMIT_NPROC, cfg["nproc"])):
            resource.setrlimit(limit, (value, value))
        chan = LineChannel(req_r, rep_w, MAX_REQUEST_BYTES)
        try:
            assert self.loaded is not None
            os.mkdir(scratch, 0o700)
            os.chdir(scratch)
            os.environ["HOME"] = scratch
            ns = self.worker_module.session_namespace(self.loaded.image, self.loaded.jpeg)
        except BaseException:  # noqa: B036 - report any setup failure to the jail
            chan.send({"failed": traceback.format_exc()}, None)
            return
        chan.send({"ready": True}, None)

        def recv() -> bytes | None:
            try:
                return chan.read_line(None)
            except (EOFError, ValueError, OSError):
                return None

        self.worker_module.serve(recv, lambda data: chan.write(data, None), ns,
                                 cfg["max_chars"], cfg["max_images"])
        os._exit(0)

    def _run(self, seq: int, code: str, limit: float) -> dict[str, Any]:
        if self.worker is None:
            self._start_worker()
            if self.worker is None:
                return failure("crashed", "Crashed", f"worker failed to start: {self.start_error}")
        w = self.worker
        deadline = time.monotonic() + limit
        try:
            w.chan.send({"seq": seq, "code": code}, deadline)
            kind, value = self._await(deadline, seq)
        except TimeoutError:
            kind, value = "timeout", None
        except OSError:  # the worker is gone (broken pipe): collect its status
            kind, value = self._await(deadline, seq)
        if kind == "line":
            try:
                return check_result(value, self.cfg["max_chars"], self.cfg["max_images"])
            except ValueError as exc:
                kind, value = "bad", f"invalid reply from the worker: {exc}"
        self._kill()  # the rest of the reset follows the reply (_housekeeping)
        if kind == "timeout":
            return failure("timeout", "Timeout", f"cell exceeded {limit} s")
        if kind == "dead":
            return failure("crashed", "Crashed", _describe(value))
        return failure("crashed", "Crashed", str(value))

    def _await(self, deadline: float, seq: int | None) -> tuple[str, Any]:
        """Wait for the worker's next line (for ``seq``, if given), its death, or ``deadline``.

        Returns ("line", obj), ("dead", wait status), ("timeout", None) or ("bad", reason).
        Raises _ParentGone if the parent hangs up meanwhile.
        """
        w = self.worker
        assert w is not None
        poller = select.poll()
        poller.register(w.chan.read_fd, select.POLLIN)
        if w.pidfd is not None:
            poller.register(w.pidfd, select.POLLIN)
        poller.register(self.chan.read_fd, 0)  # hang-up only: a pipelined request may be there
        while True:
            try:
                while w.chan.readable():
                    obj = json.loads(w.chan.read_line(0))
                    if seq is None or (isinstance(obj, dict) and obj.get("seq") == seq):
                        return "line", obj
            except ValueError as exc:  # too long, not JSON, not UTF-8
                return "bad", f"invalid reply from the worker: {exc}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", None
            wait_ms = int(remaining * 1000) + 1
            if w.pidfd is None:
                wait_ms = min(wait_ms, 50)  # no pidfd: look at waitpid every 50 ms
            exited = w.pidfd is None
            for fd, _events in poller.poll(wait_ms):
                if fd == self.chan.read_fd:
                    raise _ParentGone
                if fd == w.pidfd:
                    exited = True
                elif fd == w.chan.read_fd:
                    try:
                        w.chan.fill()
                    except EOFError:  # every writer closed; its exit follows
                        poller.unregister(fd)
            if exited and not w.chan.readable():
                pid, status = os.waitpid(w.pid, os.WNOHANG)
                if pid == w.pid:
                    return "dead", status

    def _kill(self) -> None:
        """SIGKILL the session's worker group and every other process of the jail.
        ``_cleanup`` then reaps them and empties the writable dirs."""
        w = self.worker
        if w is not None:
            self.dirty = True
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except OSError:
                pass
            os.close(w.chan.read_fd)
            os.close(w.chan.write_fd)
            if self.dying is not None:  # not waited for yet: _sweep reaps it
                os.close(self.dying[1])
            # The pidfd stays open until _cleanup has waited for the worker's exit.
            self.dying = (w.pid, w.pidfd) if w.pidfd is not None else None
        self.worker = None
        if self.dirty:
            try:
                os.kill(-1, signal.SIGKILL)  # all we may signal but ourselves and pid 1
            except OSError:
                pass

    def _cleanup(self) -> None:
        if not self.dirty:
            return
        if self.dying is not None:
            # Sleep until the killed worker has exited (freeing a big image takes a few ms),
            # rather than poll /proc for it; _sweep then finds only what its cells started.
            pid, pidfd = self.dying
            self.dying = None
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.poll(int(_SWEEP_TIMEOUT * 1000))
            os.close(pidfd)
            try:
                os.waitpid(pid, os.WNOHANG)
            except OSError:
                pass
        _sweep()
        keep = self.cfg.get("keep", ())
        self.walked = sum(empty_dir(top, keep) for top in (self.cfg["scratch"], *_CLEAN_DIRS))
        os.makedirs(os.environ["MPLCONFIGDIR"], exist_ok=True)
        self.dirty = False


def _grow_pipe(fd: int) -> None:
    """Let a whole image (or a reply with PNGs) sit in a pipe: fewer wake-ups."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (OSError, AttributeError):
        pass


def _sweep() -> None:
    """Wait until every process of this pid namespace but this one and pid 1 is gone, reaping
    them. ``JailServer._kill`` already sent them SIGKILL (``kill(-1)``, atomic with respect to
    fork); stragglers get it again."""
    keep = {1, os.getpid()}
    deadline = time.monotonic() + _SWEEP_TIMEOUT
    while True:
        others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in keep]
        if not others or time.monotonic() > deadline:
            return
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, os.WNOHANG)  # our child (we are the subreaper) or not yet
            except OSError:
                pass
        time.sleep(0.0002)  # a killed worker needs a millisecond or two to release its memory


def main(argv: list[str]) -> int:
    cfg = json.loads(argv[-1])
    _drop_privileges(cfg.get("uid"), cfg.get("gid"))
    if "--probe" in argv:
        os.write(1, dumps({"probe": "ok", "uid": os.getuid()}))
        return 0
    # Keep the protocol pipes away from 0/1/2, so nothing a library prints can corrupt them.
    proto_in, proto_out = os.dup(0), os.dup(1)
    _devnull_onto(0, 1, 2)
    chan = LineChannel(proto_in, proto_out, MAX_REQUEST_BYTES)
    try:
        _prctl(_PR_SET_DUMPABLE, 0)  # same-uid cells cannot ptrace or read /proc/<jail>/...
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of a session come back here
        sys.dont_write_bytecode = True
        _prepare_matplotlib(cfg.get("mpl_cache"))
        from datagen.sandbox import worker

        worker.install_display_hooks()
    except BaseException:  # noqa: B036 - report any startup failure to the parent
        chan.send({"failed": traceback.format_exc()}, None)
        return 1
    chan.send({"ready": True, "pid": os.getpid(), "uid": os.getuid()}, None)
    JailServer(chan, cfg, worker).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
