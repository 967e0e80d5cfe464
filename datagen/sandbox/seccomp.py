"""The jail's seccomp filter: the kernel interfaces a cell never needs, refused.

bwrap loads a compiled BPF program before it starts the jail's interpreter (``--seccomp FD``),
so the jail process, every session worker and whatever a cell starts run under it. The filter
allows everything by default and refuses, with ``EPERM``, the calls that widen a process's reach
(new namespaces, mounts, tracing other processes, kernel keyrings, BPF, performance counters,
userfaultfd, loading kernels or modules, rebooting, swap). numpy, PIL and matplotlib use none
of them. ``clone3`` gets ``ENOSYS``: its flags sit in a struct a filter cannot read, and the C
library then falls back to ``clone``, whose flags are checked. Syscalls of another ABI (i386,
x32 on x86-64) are killed by libseccomp's default bad-arch action, unless the ABI is added
below, where the same rules apply.

The program is built with ``pyseccomp`` (ctypes over the system's libseccomp2). Without
libseccomp the jail runs without the filter, and ``filter_status()`` says so for the log and
the card.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

__all__ = ["DENIED", "filter_program", "filter_status", "open_program_fd"]

# Refused outright with EPERM.
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fspick",
    "mount_setattr", "unshare", "setns",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "open_by_handle_at", "name_to_handle_at",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)
# clone() flags that make a new namespace (CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
# NEWUSER, NEWPID, NEWNET): a clone carrying any of them is refused, a plain fork is not.
_NAMESPACE_FLAGS = (0x00000080, 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                    0x20000000, 0x40000000)


def _build() -> bytes:
    import pyseccomp as sc  # RuntimeError at import when libseccomp is missing

    f = sc.SyscallFilter(sc.ALLOW)
    native = sc.system_arch()
    if native == sc.Arch.X86_64:
        f.add_arch(sc.Arch.X32)  # same rules for the x32 ABI (i386 stays killed)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            f.add_rule(deny, name)
        except (OSError, ValueError):  # a syscall this architecture does not have
            continue
    for flag in _NAMESPACE_FLAGS:
        # clone's flags are its first argument on x86-64 and aarch64 (s390 swaps them).
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


@functools.cache
def _compiled() -> tuple[bytes | None, str]:
    try:
        program = _build()
    except (ImportError, RuntimeError, OSError, AttributeError) as exc:
        return None, f"off: libseccomp is not available ({exc})"
    return program, "on"


def filter_program() -> bytes | None:
    """The compiled BPF program (cached per process), or None without libseccomp."""
    return _compiled()[0]


def filter_status() -> str:
    """``"on"``, or ``"off: <why>"``."""
    return _compiled()[1]


def open_program_fd(program: bytes) -> int:
    """A readable fd positioned at the start of ``program``, for ``bwrap --seccomp FD``.

    bwrap reads it to the end, so every launch needs a fresh one; the caller closes it once
    bwrap has started.
    """
    fd = os.memfd_create("datagen-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
