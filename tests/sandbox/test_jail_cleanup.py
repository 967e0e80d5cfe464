"""Between sessions a jail empties what cells could write, and only that: a venv or checkout
in the host's temp folder (CI's clone, a throwaway venv) is bound read-only into the jail's
/tmp, and walking it after every session made opening one cost ~220 ms instead of ~15 ms."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from datagen.sandbox import Sandbox
from datagen.sandbox import bwrap as bwrap_module
from datagen.sandbox.bwrap import probe

BWRAP_UNAVAILABLE = probe()
pytestmark = pytest.mark.skipif(BWRAP_UNAVAILABLE is not None,
                                reason=f"bwrap cannot run here: {BWRAP_UNAVAILABLE}")
FILES = 4000


def test_a_venv_in_the_temp_folder_is_bound_but_never_walked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert str(tmp_path).startswith(tempfile.gettempdir() + os.sep)  # where the cost was
    venv = tmp_path / "venv"
    for i in range(FILES):  # the shape of a venv: many small files in package dirs
        d = venv / "lib" / f"pkg{i // 200}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.py").write_text("")
    real = bwrap_module._layout()
    parents = set()
    p = str(venv.parent)
    while p not in ("/", ""):
        parents.add(p)
        p = os.path.dirname(p)
    layout = bwrap_module._Layout(
        (*real.binds, str(venv)), real.optional, real.symlinks,
        tuple(sorted({*real.dirs, *parents}, key=lambda d: d.count("/"))))
    monkeypatch.setattr(bwrap_module, "_layout", lambda: layout)
    writes = ("import os\nopen('/tmp/t{i}', 'w').write('x')\nopen('/dev/shm/s{i}', 'w')\n"
              "os.makedirs('a/b/c')\nopen('a/b/c/f', 'w').write('x')\n"
              "print(sorted(os.listdir('/tmp')), sum(len(f) for _, _, f in os.walk({venv!r})))")
    walked, seen = [], []
    with Sandbox(timeout=20.0, mode="bwrap") as sandbox:
        for i in range(4):
            with sandbox.session(Image.new("RGB", (8, 8))) as s:
                r = s.run(writes.format(i=i, venv=str(venv)))
                assert r.status == "ok", r.stderr
                walked.append(s.cleanup_entries)
                seen.append(r.stdout.rsplit(" ", 1))
    top = str(venv).split("/")[2]  # the first dir of the bind's path under /tmp
    for i, (listing, count) in enumerate(seen):
        # Each session sees the bound venv whole and nothing an earlier session wrote.
        assert listing == str(sorted(["matplotlib", top, f"t{i}"])), listing
        assert int(count) == FILES
    assert walked[0] == 0  # a new jail: nothing to clean yet
    # Later sessions: the jail looked at the few entries a session wrote (~10), never at
    # the bind's 4,000; walking it is what cost ~220 ms per session with a real venv.
    assert all(w is not None and 0 < w < 50 for w in walked[1:]), walked
    assert len(list(venv.rglob("*.py"))) == FILES
