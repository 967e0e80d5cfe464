"""Wire format between the parent and the processes that run cells: JSON lines, never pickle.

Everything that comes back from a cell process is untrusted (the cell may have found its pipe
and written anything to it), so it is only ever parsed as JSON, size-capped while reading, and
checked field by field before it becomes a ``CellResult``. Images travel as base64 strings.

This module is imported on both sides (parent, jail, process-mode worker) and stays light:
standard library only.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import select
import time
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MAX_REPLY_BYTES", "MAX_REQUEST_BYTES", "WORKER_PROCESS_NAME", "CellResult",
           "CellStatus", "LineChannel", "check_result", "dumps", "failure", "result_from_wire",
           "result_to_wire"]

# The worker module recognises our processes by this name (see worker._skip_main_fixup...).
WORKER_PROCESS_NAME = "datagen-sandbox-worker"

CellStatus = Literal["ok", "error", "timeout", "crashed"]
_STATUSES = ("ok", "error", "timeout", "crashed")

# A reply holds at most max_images images (PNG or JPEG); 64 MiB of JSON is far above any
# real cell's output.
MAX_REPLY_BYTES = 64 << 20
# Requests come from the parent (trusted) but carry the raw session image.
MAX_REQUEST_BYTES = 256 << 20
# run_cell's stdout/stderr never exceed max_chars plus the truncation marker and a newline or
# two; allow a little more, reject anything beyond.
_TEXT_SLACK = 64


@dataclass(frozen=True, slots=True)
class CellResult:
    """Outcome of one cell, as shown to the teacher."""

    status: CellStatus
    stdout: str
    stderr: str
    images: tuple[bytes, ...]
    error_type: str | None
    error_message: str | None
    truncated: bool
    seconds: float


def dumps(obj: Any) -> bytes:
    """One JSON line (ASCII, so no raw newline can appear inside it)."""
    return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


def result_to_wire(fields: dict[str, Any]) -> dict[str, Any]:
    """``run_cell``'s dict with its image bytes turned into base64 strings."""
    wire = dict(fields)
    wire["images"] = [base64.b64encode(png).decode("ascii") for png in fields["images"]]
    return wire


def failure(status: CellStatus, error_type: str, message: str) -> dict[str, Any]:
    """Wire fields of a cell that produced no output (timeout, crash)."""
    return {"status": status, "stdout": "", "stderr": "", "images": [],
            "error_type": error_type, "error_message": message, "truncated": False}


def check_result(obj: Any, max_chars: int, max_images: int) -> dict[str, Any]:
    """Validate wire fields of a result; return them normalised. Raises ValueError."""
    if not isinstance(obj, dict):
        raise ValueError("result is not an object")
    status = obj.get("status")
    if status not in _STATUSES:
        raise ValueError(f"bad status {status!r}")
    out: dict[str, Any] = {"status": status}
    for key in ("stdout", "stderr"):
        text = obj.get(key)
        if not isinstance(text, str) or len(text) > max_chars + _TEXT_SLACK:
            raise ValueError(f"bad {key}")
        out[key] = text
    for key in ("error_type", "error_message"):
        value = obj.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > max_chars):
            raise ValueError(f"bad {key}")
        out[key] = value
    if not isinstance(obj.get("truncated"), bool):
        raise ValueError("bad truncated")
    out["truncated"] = obj["truncated"]
    images = obj.get("images")
    if not isinstance(images, list) or len(images) > max_images:
        raise ValueError("bad images")
    if not all(isinstance(i, str) for i in images):
        raise ValueError("bad images")
    out["images"] = images
    return out


def result_from_wire(obj: Any, seconds: float, max_chars: int, max_images: int) -> CellResult:
    """Checked wire fields to a ``CellResult`` (image bytes decoded). Raises ValueError."""
    fields = check_result(obj, max_chars, max_images)
    try:
        images = tuple(base64.b64decode(i, validate=True) for i in fields.pop("images"))
    except binascii.Error as exc:
        raise ValueError("bad image encoding") from exc
    return CellResult(images=images, seconds=seconds, **fields)


class LineChannel:
    """JSON lines over a pair of pipe fds, with deadlines and a cap on what is read.

    Holds plain fd numbers and never closes them on its own (no finalizer): a forked cell
    process closes the fds it must not keep, and a late finalizer must not close a number the
    cell has reused since.
    """

    def __init__(self, read_fd: int, write_fd: int, max_line: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_line = max_line
        os.set_blocking(read_fd, False)  # waits go through poll(), with deadlines
        os.set_blocking(write_fd, False)
        self._buf = bytearray()
        self._scanned = 0

    def readable(self) -> bool:
        """True if a whole line is already buffered."""
        return self._buf.find(b"\n", self._scanned) >= 0

    def read_line(self, deadline: float | None) -> bytes:
        """The next line (without newline). TimeoutError at ``deadline`` (monotonic), EOFError
        when the writer is gone, ValueError when the line exceeds ``max_line``."""
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > self.max_line:
                raise ValueError(f"line longer than {self.max_line} bytes")
            if not wait_readable(self.read_fd, deadline):
                raise TimeoutError
            self.fill()

    def fill(self) -> None:
        """Read what is available now (the fd must be readable). EOFError at end of file."""
        try:
            chunk = os.read(self.read_fd, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            raise EOFError
        self._buf += chunk

    def read_exact(self, size: int, deadline: float | None) -> bytes:
        """The next ``size`` bytes (a binary payload announced by the line before it)."""
        if size < 0 or size > self.max_line:
            raise ValueError(f"payload of {size} bytes refused")
        while len(self._buf) < size:
            if not wait_readable(self.read_fd, deadline):
                raise TimeoutError
            self.fill()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        self._scanned = 0
        return data

    def read_json(self, deadline: float | None) -> Any:
        try:
            return json.loads(self.read_line(deadline))
        except UnicodeDecodeError as exc:
            raise ValueError("reply is not UTF-8") from exc

    def write(self, data: bytes, deadline: float | None) -> None:
        """Write all of ``data``; TimeoutError if the reader does not drain the pipe in time."""
        view = memoryview(data)
        while view:
            if not _wait(self.write_fd, select.POLLOUT, deadline):
                raise TimeoutError
            try:
                n = os.write(self.write_fd, view[: 1 << 20])
            except BlockingIOError:
                continue
            view = view[n:]

    def send(self, obj: Any, deadline: float | None) -> None:
        self.write(dumps(obj), deadline)


def wait_readable(fd: int, deadline: float | None) -> bool:
    return _wait(fd, select.POLLIN, deadline)


def _wait(fd: int, events: int, deadline: float | None) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    while True:
        if deadline is None:
            timeout_ms = None
        else:
            timeout_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
        if poller.poll(timeout_ms):
            return True  # ready, or hung up / error: the read or write reports which
        if deadline is not None and time.monotonic() >= deadline:
            return False
