"""Cleanup of what cells wrote: files, links and locked trees go; nothing raises."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from datagen.sandbox.scratch import remove

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
