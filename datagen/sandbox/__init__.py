"""Code executor for teacher-written Python cells (the CodeDance "sandbox").

A teacher model writes code cells that analyse an image; each cell runs here and its outputs
(stdout, stderr, images) go back to the teacher as observations. Usage::

    with Sandbox(timeout=15.0) as sandbox:          # one per process, reused
        with sandbox.session(image) as session:      # one per trajectory
            result = session.run("print(input_image.size)")

Contract inside a session (models are trained against it):

* Before the first cell the cwd is a fresh scratch dir (``tempfile.mkdtemp``) holding
  ``input_image.jpg`` (RGB JPEG, quality 95); the namespace (``__name__ == "__main__"``)
  has ``input_image``, an RGB PIL Image decoded from the original pixels (not from the JPEG,
  so colours are exact). numpy / PIL / matplotlib (Agg) are importable; cells import them.
* Variables and imports persist across the cells of a session.
* Images: ``plt.show()`` captures every open figure as PNG and closes them;
  ``Figure.show()`` captures that figure; ``PIL.Image.Image.show()`` captures the image.
  A last-line expression that is a PIL Image, or an ndarray that looks like an image (2-D, or
  3-D with 3/4 channels; uint8, or float in [0, 1]), is captured; any other non-None value
  has its repr printed (like Jupyter). At most ``max_images`` per cell.
* stdout / stderr are each capped at ``max_output_chars`` and end with
  "... [output truncated]" when cut (``truncated=True``).
* An exception gives status "error" with ``error_type`` / ``error_message`` and a short
  traceback in stderr, showing ``<cell>`` line numbers and no executor frames. The
  namespace is KEPT after an exception (Jupyter semantics). SyntaxError works the same way.
* Timeout (``timeout`` s of wall time, per run() or Sandbox default): the worker and its
  whole process group are killed; status "timeout". A dead worker (segfault, ``os._exit``,
  OOM kill): status "crashed", message with the exit code or signal.
* State reset: after a timeout or crash the session transparently starts a fresh worker,
  so the next run() sees a RESET namespace (only ``input_image``), a new scratch dir with a
  new ``input_image.jpg``, and no earlier files. Rebuilding the lost state by replaying
  earlier cells was rejected: replays can have side effects and can time out again.
  Output (stdout/stderr/images) of a timed-out or crashed cell is lost.
* Limits: ``RLIMIT_AS`` = ``memory_mb`` (huge allocations raise MemoryError); os.environ is
  scrubbed to PATH, HOME (= scratch dir), LANG, MPLBACKEND=Agg and single-thread BLAS vars.

Process model: each session's worker is a child of multiprocessing's (process-wide, shared)
forkserver, which the Sandbox asks to preload ``datagen.sandbox.worker`` (numpy, PIL,
matplotlib, single-thread BLAS); a session then costs ~10 ms. Create the Sandbox before any
other forkserver pool is started in the same process, or workers start slowly (~0.3 s; a
warning is logged). As usual with multiprocessing, the main module must be import-safe.

Isolation is only process-level (``mode == "process"``): cells run as the same user and can
read the filesystem and ``/proc`` (including other processes' environments). A hardened
backend (bubblewrap + seccomp, ``mode == "bwrap"``) will keep this interface.
"""

from datagen.sandbox.session import (
    CellResult,
    CellStatus,
    Sandbox,
    Session,
    forkserver_context,
)

__all__ = ["CellResult", "CellStatus", "Sandbox", "Session", "forkserver_context"]
