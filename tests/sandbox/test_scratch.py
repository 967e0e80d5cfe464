"""Cleanup of what cells wrote: files, links and locked trees go; nothing raises; what the jail
only reads (a venv bound into its /tmp) is neither removed nor walked."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from datagen.sandbox.scratch import empty_dir, remove

NOBODY = 65534


def test_remove_takes_files_links_and_trees(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_text("x")
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (tree / "link").symlink_to(target)
    remove(str(tree))
    assert not tree.exists() and target.read_text() == "keep"  # a link is not followed
    link = tmp_path / "link"
    link.symlink_to(target)
    remove(str(link))
    assert not link.is_symlink() and target.exists()
    remove(str(target))
    assert not target.exists()
    remove(str(tmp_path / "never-was"))  # nothing there: no error


def _a_locked_tree_goes() -> bool:
    """What a cell may do: a dir it cannot list inside one it cannot write. Remove it all."""
    top = tempfile.mkdtemp()
    tree = os.path.join(top, "tree")
    os.makedirs(os.path.join(tree, "sub"))
    Path(tree, "sub", "f.txt").write_text("x")
    os.chmod(os.path.join(tree, "sub"), 0)
    os.chmod(tree, stat.S_IRUSR | stat.S_IXUSR)
    remove(tree)
    gone = not os.path.exists(tree)
    remove(top)
    return gone


def test_a_locked_tree_goes_for_a_plain_user() -> None:
    # Permissions bind only a plain uid (the jail's cells run as one), so root tests as nobody.
    if os.geteuid() != 0:
        assert _a_locked_tree_goes()
        return
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = 0 if _a_locked_tree_goes() else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _venv_like(root: Path, files: int) -> Path:
    venv = root / "venv"
    for i in range(files):
        d = venv / f"pkg{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.py").write_text("")
    return venv


def test_empty_dir_steps_around_what_it_must_keep(tmp_path: Path) -> None:
    top = tmp_path / "tmp"
    venv = _venv_like(top / "ci" / "clone", 500)  # as bound into the jail's /tmp
    (top / "ci" / "stray.txt").write_text("a session wrote here")
    (top / "mine" / "deep").mkdir(parents=True)
    (top / "mine" / "deep" / "f").write_text("x")
    seen = empty_dir(str(top), keep=[str(venv)])
    assert sorted(p.name for p in top.iterdir()) == ["ci"]
    assert sorted(p.name for p in (top / "ci").iterdir()) == ["clone"]
    assert len(list(venv.rglob("*.py"))) == 500  # kept, and not even looked at:
    assert seen < 10, seen
    # Without being told, the same call walks (and removes) all of it: the count tells.
    assert empty_dir(str(top)) > 500 and not any(top.iterdir())
