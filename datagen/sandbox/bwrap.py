"""Parent side of "bwrap" mode: the jail's command line, the probe, and a pool of warm jails.

A jail is ``bwrap ... -- python -I -c <run jail.main>`` (see ``jail.py``): started once,
it pays the numpy / matplotlib import (~0.5-1.5 s) and then serves many sessions, one at a
time, each in a freshly forked worker. The jail sees a read-only root holding only what the
interpreter needs, sized tmpfs mounts for /scratch, /tmp and /dev/shm, its own /proc and
/dev, no network and no host environment.

When the parent is root, bwrap runs privileged (no user namespace) and the jail drops to a
uid/gid of its own (``_UID_BASE`` + a per-process block + a slot per jail) right at start:
an unprivileged bwrap could not bind the interpreter when it lives under root's 0700 home
(pyenv), and a non-root uid makes ``RLIMIT_NPROC`` count. Otherwise bwrap runs unprivileged
in a new user namespace as the caller's uid.

This module stays light (standard library only); the parent never imports the worker.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import functools
import importlib.metadata
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from datagen.sandbox.binary import find_bwrap
from datagen.sandbox.limits import JailCgroup, memory_limit_kind
from datagen.sandbox.protocol import (
    MAX_REPLY_BYTES,
    CellResult,
    LineChannel,
    dumps,
    result_from_wire,
)
from datagen.sandbox.seccomp import filter_program, filter_status, open_program_fd

log = logging.getLogger(__name__)

SCRATCH = "/scratch"
_SCRATCH_BYTES = 256 << 20  # tmpfs size of /scratch; also RLIMIT_FSIZE
_TMP_BYTES = 64 << 20
_SHM_BYTES = 32 << 20  # multiprocessing's semaphores live here
_NPROC = 64  # RLIMIT_NPROC of a session worker (its uid is the jail's own)
_MPL_DEST = "/run/datagen-mplcache"
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",  # nothing there: no shell, no binaries
    "HOME": SCRATCH,
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/matplotlib",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_UID_BASE = 200_000
_UIDS_PER_PROCESS = 16
STARTUP_TIMEOUT = 120.0  # a cold jail on a loaded 2-core box; not counted against any cell
_PROBE_TIMEOUT = 60.0
_PIPE_BYTES = 1 << 20
_SYSTEM_PREFIXES = ("/", "/usr", "/usr/local")


# -- the jail's file system ------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    binds: tuple[str, ...]  # host paths bound read-only at the same path
    optional: tuple[str, ...]  # the same, when they exist
    symlinks: tuple[tuple[str, str], ...]  # (target, path)
    dirs: tuple[str, ...]  # parents to create, mode 0755 (bwrap would make them 0700)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _package_root() -> str:
    import datagen

    return os.path.dirname(os.path.dirname(os.path.realpath(datagen.__file__)))


@functools.cache
def _layout() -> _Layout:
    """What of the host the jail sees: the interpreter, the venv, datagen, shared libraries."""
    binds: list[str] = []
    symlinks: list[tuple[str, str]] = []
    base = os.path.realpath(sys.base_prefix)
    if base in _SYSTEM_PREFIXES:  # a distro Python: bind its stdlib, not all of /usr
        binds.append(os.path.realpath(sysconfig.get_path("stdlib")))
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        libpython = os.path.join(libdir, sysconfig.get_config_var("LDLIBRARY") or "")
        if os.path.isfile(libpython):
            binds.append(os.path.realpath(libpython))
    else:
        binds.append(base)
    if os.path.realpath(sys.prefix) != base:
        binds.append(os.path.realpath(sys.prefix))  # the venv
    binds.append(os.path.join(_package_root(), "datagen"))  # editable installs, checkouts
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for lib in (f"/usr/lib/{multiarch}" if multiarch else "", "/usr/lib64"):
        if lib and os.path.isdir(lib) and not os.path.islink(lib):
            binds.append(lib)
    optional = ["/etc/ld.so.cache", "/usr/share/fonts", "/usr/local/share/fonts",
                "/usr/lib/locale/C.utf8"]
    for top in ("/lib", "/lib64"):
        if os.path.islink(top):  # merged /usr
            symlinks.append((os.readlink(top), top))
        elif os.path.isdir(top):
            optional.append(f"{top}/{multiarch}" if top == "/lib" and multiarch else top)
    # The interpreter as the parent names it, through every symlink to the real file.
    path = os.path.abspath(sys.executable)
    for _ in range(40):
        if not _under(path, binds):
            if os.path.islink(path):
                symlinks.append((os.readlink(path), path))
            else:
                binds.append(path)
        if not os.path.islink(path):
            break
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    unique = list(dict.fromkeys(binds))
    binds = [b for b in unique if not _under(b, [o for o in unique if o != b])]
    dests = binds + optional + [p for _, p in symlinks] + [_MPL_DEST]
    parents = {os.path.dirname(p) for p in dests}
    for p in list(parents):
        while p not in ("/", ""):
            parents.add(p)
            p = os.path.dirname(p)
    dirs = sorted((p for p in parents if p not in ("/", "") and not _under(p, binds)),
                  key=lambda p: p.count("/"))
    return _Layout(tuple(binds), tuple(optional), tuple(symlinks), tuple(dirs))


def _mpl_cache() -> str | None:
    """A matplotlib font cache built once per machine and matplotlib version.

    A jail cannot keep one (its MPLCONFIGDIR is a fresh tmpfs), and building one costs about
    a second per start, so the jail copies this one in before importing matplotlib.
    """
    try:
        version = importlib.metadata.version("matplotlib")
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        final = root / "codedance-datagen" / f"mpl-{version}"
        if any(final.glob("fontlist-*.json")):
            return str(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=".mpl-build-", dir=final.parent))
        env = {"MPLCONFIGDIR": str(build), "HOME": str(build), "MPLBACKEND": "Agg",
               "PATH": os.environ.get("PATH", os.defpath)}
        subprocess.run([sys.executable, "-I", "-c", "import matplotlib.font_manager"],
                       env=env, check=True, capture_output=True, timeout=300)
        for f in build.iterdir():
            f.chmod(0o644)
        build.chmod(0o755)
        try:
            build.rename(final)
        except OSError:  # another process was first
            shutil.rmtree(build, ignore_errors=True)
        return str(final) if any(final.glob("fontlist-*.json")) else None
    except (OSError, RuntimeError, subprocess.SubprocessError,
            importlib.metadata.PackageNotFoundError) as exc:
        log.info("no shared matplotlib font cache for sandbox jails (%s); each jail builds "
                 "its own", exc)
        return None


def _command(config: dict[str, Any], probe: bool = False,
             seccomp_fd: int | None = None) -> list[str]:
    """The bwrap command line of a jail (or of a probe) with ``config`` for jail.py, and the
    seccomp program on ``seccomp_fd`` when given."""
    bwrap = find_bwrap()
    if isinstance(bwrap, str):
        raise FileNotFoundError(bwrap)
    layout = _layout()
    argv = [bwrap.path]
    if os.geteuid() == 0:  # privileged bwrap, no user namespace: the jail drops to its uid
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                 "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
                 "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        argv += ["--unshare-all", "--cap-drop", "ALL"]
    argv += ["--die-with-parent", "--new-session", "--clearenv"]
    for key, value in _ENV.items():
        argv += ["--setenv", key, value]
    # The tmpfs mounts come first: a checkout or venv that lives under /tmp (CI clones there)
    # is then bound on top of the jail's empty /tmp instead of being hidden by it.
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(_SCRATCH_BYTES), "--tmpfs", SCRATCH,
             "--perms", "1777", "--size", str(_TMP_BYTES), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm"]
    for d in layout.dirs:
        argv += ["--perms", "0755", "--dir", d]
    for b in layout.binds:
        argv += ["--ro-bind", b, b]
    for b in layout.optional:
        argv += ["--ro-bind-try", b, b]
    for target, path in layout.symlinks:
        argv += ["--symlink", target, path]
    if config.get("mpl_cache_host"):
        argv += ["--ro-bind", config["mpl_cache_host"], _MPL_DEST]
    argv += ["--remount-ro", "/", "--chdir", "/"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    jail_cfg = {k: v for k, v in config.items() if k != "mpl_cache_host"}
    # -I: no PYTHON* variables, no user site, no cwd on sys.path. datagen's own parent dir
    # goes first on it, so an uninstalled checkout works as well as an (editable) install.
    boot = (f"import sys; sys.path.insert(0, {_package_root()!r}); "
            "from datagen.sandbox.jail import main; sys.exit(main(sys.argv))")
    argv += ["--", sys.executable, "-I", "-c", boot, json.dumps(jail_cfg)]
    if probe:
        argv.insert(-1, "--probe")
    return argv


# -- uids -------------------------------------------------------------------------------------

_slot_lock = threading.RLock()  # RLock: a GC-run session finalizer may re-enter
_slots_used: set[int] = set()


def _take_slot() -> int:
    with _slot_lock:
        slot = next(i for i in range(len(_slots_used) + 1) if i not in _slots_used)
        _slots_used.add(slot)
        return slot


def _give_slot(slot: int) -> None:
    with _slot_lock:
        _slots_used.discard(slot)


def _uid(slot: int) -> int | None:
    """The uid the jail of ``slot`` drops to (when the parent is root), else None.

    Distinct per live jail of this process; other processes get other blocks, so parallel
    builds do not share an RLIMIT_NPROC count (a collision is harmless, merely shared).
    """
    if os.geteuid() != 0:
        return None
    block = os.getpid() % 50_000
    return _UID_BASE + block * _UIDS_PER_PROCESS + slot % _UIDS_PER_PROCESS


def jail_config(memory_mb: int, max_chars: int, max_images: int, slot: int = 0
                ) -> dict[str, Any]:
    uid = _uid(slot)
    layout = _layout()
    # Read-only binds that land on the jail's writable mounts (a venv in the host's /tmp):
    # the jail's cleanup between sessions must step around them, not walk them.
    writable = (SCRATCH, "/tmp", "/dev/shm")
    keep = [p for p in (*layout.binds, *layout.optional, *(p for _, p in layout.symlinks))
            if _under(p, list(writable))]
    return {"uid": uid, "gid": uid, "memory_mb": memory_mb, "max_chars": max_chars,
            "max_images": max_images, "nproc": _NPROC, "fsize": _SCRATCH_BYTES,
            "scratch": SCRATCH, "keep": keep}


# -- probe ------------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probe_results: dict[tuple[str, int, str], str | None] = {}


def probe() -> str | None:
    """None if a jail (with the seccomp filter, when there is one) can start on this machine,
    else why not. Cached per process and bwrap binary."""
    bwrap = find_bwrap()
    if isinstance(bwrap, str):
        return bwrap
    key = (bwrap.path, os.geteuid(), sys.executable)
    with _probe_lock:
        if key not in _probe_results:
            _probe_results[key] = _run_probe()
        return _probe_results[key]


def walls() -> str:
    """What a jail started now stands behind, for the log, the run summary and the card."""
    bwrap = find_bwrap()
    binary = bwrap if isinstance(bwrap, str) else bwrap.describe()
    return f"{binary}; seccomp filter {filter_status()}; memory {memory_limit_kind()}"


def _run_probe() -> str | None:
    program = filter_program()
    fd = open_program_fd(program) if program is not None else None
    try:
        argv = _command(jail_config(64, 100, 1), probe=True, seccomp_fd=fd)
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env={},
                           timeout=_PROBE_TIMEOUT, pass_fds=() if fd is None else (fd,))
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"cannot run bwrap: {exc}"
    finally:
        if fd is not None:
            os.close(fd)
    if r.returncode == 0 and r.stdout.startswith(b'{"probe":"ok"'):
        return None
    err = r.stderr.decode(errors="replace").strip().splitlines()
    return f"bwrap probe failed (exit {r.returncode}): {err[-1] if err else 'no message'}"


# -- starting processes -----------------------------------------------------------------------


class _Launcher:
    """Starts jails from one long-lived thread.

    ``--die-with-parent`` is PR_SET_PDEATHSIG, which fires when the *thread* that forked bwrap
    ends: a jail started from a short-lived worker thread would die with it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._owner = -1

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._owner != os.getpid():  # first use, or we are a forked child
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._loop, args=(self._queue,), daemon=True,
                                 name="datagen-sandbox-launcher").start()
                self._owner = os.getpid()
            future: concurrent.futures.Future[subprocess.Popen[bytes]] = (
                concurrent.futures.Future())
            self._queue.put((future, argv, kwargs))
        return future.result()

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            future, argv, kwargs = jobs.get()
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:  # noqa: B036 - handed to the caller
                future.set_exception(exc)


_launcher = _Launcher()


# -- one jail -----------------------------------------------------------------------------------


class JailHandle:
    """The parent's handle on a running jail: bwrap and, inside it, ``jail.JailServer``."""

    def __init__(self, memory_mb: int, max_chars: int, max_images: int,
                 mpl_cache: str | None) -> None:
        self.slot = _take_slot()
        self.cgroup = JailCgroup(f"datagen-jail-{os.getpid()}-{self.slot}", memory_mb)
        config = jail_config(memory_mb, max_chars, max_images, self.slot)
        if mpl_cache:
            config.update(mpl_cache_host=mpl_cache, mpl_cache=_MPL_DEST)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        program = filter_program()
        fd = open_program_fd(program) if program is not None else None
        try:
            self.process = _launcher.popen(
                _command(config, seccomp_fd=fd), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr, env={}, close_fds=True,
                pass_fds=() if fd is None else (fd,))
        except BaseException:
            self._stderr.close()
            self.cgroup.remove()
            _give_slot(self.slot)
            raise
        finally:
            if fd is not None:
                os.close(fd)  # bwrap holds its own copy
        assert self.process.stdin is not None and self.process.stdout is not None
        try:  # room for a whole image: session() need not wait for a busy jail to read it
            fcntl.fcntl(self.process.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:
            pass
        self.chan = LineChannel(self.process.stdout.fileno(), self.process.stdin.fileno(),
                                MAX_REPLY_BYTES)
        self.ready = False
        self.dead = False
        self.sessions = 0
        self.unread = 0  # replies a closed session left unread (its "close" ack)

    @property
    def pid(self) -> int:
        """Host pid of the bwrap process."""
        return self.process.pid

    def alive(self) -> bool:
        return not self.dead and self.process.poll() is None

    def poll_ready(self) -> bool:
        """True once the jail has said it is ready; never blocks."""
        if not self.ready and not self.dead:
            try:
                self.wait_ready(time.monotonic())
            except (TimeoutError, RuntimeError):
                pass
        return self.ready

    def wait_ready(self, deadline: float | None = None) -> None:
        """Block until the jail is ready (RuntimeError if it failed; TimeoutError at deadline
        when one is given, else RuntimeError after STARTUP_TIMEOUT)."""
        if self.ready:
            return
        if self.dead:
            raise RuntimeError("sandbox jail is gone")
        limit = deadline if deadline is not None else time.monotonic() + STARTUP_TIMEOUT
        try:
            msg = self.chan.read_json(limit)
        except TimeoutError:
            if deadline is not None:
                raise
            self.kill()
            raise RuntimeError(f"sandbox jail did not start within {STARTUP_TIMEOUT} s"
                               ) from None
        except (EOFError, OSError, ValueError):
            msg = {}
        if isinstance(msg, dict) and msg.get("ready") is True:
            self.cgroup.adopt(self.process.pid)  # before any session worker is forked
            self.ready = True
            return
        detail = msg.get("failed") if isinstance(msg, dict) else None
        self.kill()
        raise RuntimeError(f"sandbox jail failed to start: {detail or self.stderr_tail()}")

    def settle(self, deadline: float) -> None:
        """Read the replies earlier sessions did not wait for; ValueError if one failed."""
        while self.unread:
            reply = self.chan.read_json(deadline)
            self.unread -= 1
            if not (isinstance(reply, dict) and reply.get("ok") is True):
                raise ValueError(f"sandbox jail could not end a session: {reply!r}")

    def stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-2000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            text = ""
        return text or f"exit code {self.process.poll()}"

    def kill(self) -> None:
        """Kill bwrap (the jail and everything in it die with it) and release its resources."""
        if self.dead:
            return
        self.dead = True
        try:
            self.process.kill()
        except OSError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            log.warning("sandbox jail %d did not exit after SIGKILL", self.process.pid)
        for f in (self.process.stdin, self.process.stdout, self._stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self.cgroup.remove()
        _give_slot(self.slot)


# -- the pool -----------------------------------------------------------------------------------


class JailPool:
    """Idle jails of one Sandbox, handed to one session at a time.

    The first jail starts at once (in the background: ``Popen`` returns in milliseconds).
    Sessions beyond the idle ones start extra jails rather than wait, so a caller holding
    several sessions can never deadlock; at most ``max_idle`` (= cpu count) are kept when
    released. A jail is retired after ``recycle_after`` sessions or when it misbehaves, and a
    replacement starts in the background when no idle jail is left.
    """

    def __init__(self, memory_mb: int, max_chars: int, max_images: int,
                 max_idle: int | None = None, recycle_after: int = 500) -> None:
        self._params = (memory_mb, max_chars, max_images, _mpl_cache())
        self._max_idle = max_idle or os.cpu_count() or 1
        self._recycle_after = recycle_after
        self._lock = threading.RLock()  # a session finalizer run by the GC may re-enter
        self._idle: list[JailHandle] = []
        self._busy: set[JailHandle] = set()
        self._closed = False
        self._idle.append(JailHandle(*self._params))

    def acquire(self) -> JailHandle:
        with self._lock:
            if self._closed:
                raise RuntimeError("sandbox is closed")
            dead = [j for j in self._idle if not j.alive()]
            self._idle = [j for j in self._idle if j.alive()]
            jail = self._idle.pop() if self._idle else JailHandle(*self._params)
            self._busy.add(jail)
        for j in dead:
            j.kill()
        return jail

    def release(self, jail: JailHandle, reusable: bool) -> None:
        """Take ``jail`` back from a session; ``reusable`` if it was left clean."""
        with self._lock:
            self._busy.discard(jail)
            keep = (reusable and not self._closed and jail.alive()
                    and jail.sessions < self._recycle_after and len(self._idle) < self._max_idle)
            if keep:
                self._idle.append(jail)
            elif not self._closed and not self._idle:
                self._idle.append(JailHandle(*self._params))  # warm up the next one now
        if not keep:
            jail.kill()

    def close(self) -> None:
        """Kill every jail, idle or in use. Idempotent."""
        with self._lock:
            self._closed = True
            jails = [*self._idle, *self._busy]
            self._idle.clear()
            self._busy.clear()
        for j in jails:
            j.kill()


# -- one session ------------------------------------------------------------------------------

_GUARD_MARGIN = 5.0  # the jail enforces cell timeouts; the parent waits this much longer
_CLOSE_TIMEOUT = 10.0


def _image_to_wire(spec: tuple[Any, ...]) -> tuple[dict[str, Any], bytes]:
    """(header, payload): the pixels travel as raw bytes after the request line."""
    if spec[0] == "raw":
        return {"kind": "raw", "size": list(spec[1]), "nbytes": len(spec[2])}, spec[2]
    return {"kind": "encoded", "nbytes": len(spec[1])}, spec[1]


class JailSession:
    """The bwrap backend of one ``Session``: a jail from the pool, used by this session only.

    The jail keeps the image and restarts the session's worker itself after a timeout or a
    crash. If the jail itself dies or stops answering, it is killed and the next run() takes
    another jail: the same state reset.
    """

    def __init__(self, pool: JailPool, image_spec: tuple[Any, ...], max_chars: int,
                 max_images: int) -> None:
        self._pool = pool
        self._image = _image_to_wire(image_spec)
        self._max_chars = max_chars
        self._max_images = max_images
        self._seq = 0
        self._opened = False  # "open" sent to the current jail
        self._pending = False  # ...and its reply not read yet
        # Entries the jail's cleanup looked at before this session opened (a jail that walked
        # a read-only bind, such as a venv in the host's /tmp, would say tens of thousands).
        self.walked: int | None = None
        self._jail: JailHandle | None = pool.acquire()
        if self._jail.poll_ready():  # usual case: an idle warm jail; start the worker now
            self._send_open(self._jail)

    @property
    def pid(self) -> int | None:
        return self._jail.pid if self._jail is not None else None

    def _send_open(self, jail: JailHandle) -> None:
        head, payload = self._image
        jail.chan.write(dumps({"op": "open", "image": head}) + payload,
                        time.monotonic() + STARTUP_TIMEOUT)
        jail.sessions += 1
        self._opened = self._pending = True

    def _finish_open(self, jail: JailHandle) -> None:
        self._pending = False
        deadline = time.monotonic() + STARTUP_TIMEOUT
        jail.settle(deadline)
        reply = jail.chan.read_json(deadline)
        if not (isinstance(reply, dict) and reply.get("ok") is True):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise RuntimeError(f"sandbox worker failed to start:\n{error}")
        walked = reply.get("walked")
        self.walked = walked if isinstance(walked, int) else None

    def _ready_jail(self) -> JailHandle:
        """The session's jail, started and with this session's worker open."""
        if self._jail is None:
            self._jail = self._pool.acquire()
            self._opened = self._pending = False
        jail = self._jail
        jail.wait_ready()
        if not self._opened:
            self._send_open(jail)
        if self._pending:
            self._finish_open(jail)
        return jail

    def run(self, code: str, limit: float) -> CellResult:
        for attempt in range(2):  # a jail that died while idle gets one replacement
            try:
                jail = self._ready_jail()
                break
            except (RuntimeError, TimeoutError, EOFError, OSError, ValueError) as exc:
                self._drop()
                if attempt:
                    raise RuntimeError(f"sandbox jail failed to start: {exc}") from exc
            except BaseException:
                self._drop()
                raise
        self._seq += 1
        start = time.perf_counter()
        try:
            deadline = time.monotonic() + limit + _GUARD_MARGIN
            jail.settle(deadline)
            jail.chan.send({"op": "run", "seq": self._seq, "code": code, "timeout": limit},
                           deadline)
            reply = jail.chan.read_json(deadline)
            if not isinstance(reply, dict) or reply.get("seq") != self._seq:
                raise ValueError("reply out of order")
            return result_from_wire(reply, time.perf_counter() - start, self._max_chars,
                                    self._max_images)
        except (TimeoutError, EOFError, OSError, ValueError) as exc:
            seconds = time.perf_counter() - start
            timed_out = isinstance(exc, TimeoutError)
            message = self._drop()  # the session's state goes with the jail
        except BaseException:
            # E.g. KeyboardInterrupt mid-cell: the request/reply pairing is unknown.
            self._drop()
            raise
        if timed_out:
            return CellResult("timeout", "", "", (), "Timeout", f"cell exceeded {limit} s",
                              False, seconds)
        return CellResult("crashed", "", "", (), "Crashed", message, False, seconds)

    def _drop(self) -> str:
        """Kill the current jail (and with it the session's state); describe how it ended."""
        jail, self._jail = self._jail, None
        if jail is None:
            return "sandbox jail died"
        code = jail.process.poll()
        self._pool.release(jail, reusable=False)
        return f"sandbox jail died (exit code {code})" if code is not None else (
            "sandbox jail stopped answering")

    def close(self) -> None:
        """End the session: ask the jail to sweep it away and hand the jail back to the pool
        without waiting; the jail answers before serving its next session. Idempotent."""
        jail, self._jail = self._jail, None
        if jail is None:
            return
        reusable = jail.alive()
        if reusable and self._opened:
            try:
                jail.chan.send({"op": "close"}, time.monotonic() + _CLOSE_TIMEOUT)
                jail.unread += 1 + self._pending  # the close ack (and an unread open reply)
                self._pending = False
            except (TimeoutError, OSError):
                reusable = False
        self._pool.release(jail, reusable)
