"""Run the real CLI with its stdout on a pseudo-terminal, as a user's shell would."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TerminalRun:
    """What the terminal showed, what went to stderr, and the exit code."""

    code: int
    shown: bytes
    stderr: bytes


def run_on_terminal(args: list[str], env: dict[str, str],
                    on_output: Callable[[int], None] | None = None,
                    timeout: float = 240) -> TerminalRun:
    """``python -m datagen.cli *args`` with stdout on a pty (so rich draws its bar).

    ``on_output`` is called after each read with the bytes shown so far, from the reading
    thread: a test can look at the build's folder while the bar is being drawn.
    """
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "datagen.cli", *args], env=env,
                            stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)
            if on_output is not None:
                on_output(sum(map(len, chunks)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    os.close(leader)
    return TerminalRun(proc.returncode, b"".join(chunks), stderr)
