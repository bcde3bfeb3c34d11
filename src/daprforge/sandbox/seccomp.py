"""The seccomp filter bwrap installs (``--seccomp FD``) just before it starts Python.

Namespaces leave some kernel objects shared with the host and with other sandboxes; this
filter closes them (the list follows isolate's "system call restrictions" and the anchors'
attack battery). A denylist on purpose: Python and its standard library must keep working,
and every denied call fails with EPERM (ENOSYS for clone3, so glibc falls back to clone,
whose flags we can inspect), which learner code sees as an ordinary OSError. System calls of
another architecture (x32, i386) kill the process: libseccomp's default for a foreign arch.
"""

from __future__ import annotations

import errno
import os

from daprforge.sandbox.errors import SandboxUnavailable

# Namespace flags of clone(2)/unshare(2): no new namespace from inside the sandbox.
_CLONE_NAMESPACES = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)
_F_SETLK, _F_SETLKW = 6, 7
_F_OFD_SETLK, _F_OFD_SETLKW = 37, 38
_AF_VSOCK = 40

DENIED: tuple[str, ...] = (
    # Keyrings are not namespaced: a covert channel between runs, and kernel attack surface.
    "keyctl",
    "add_key",
    "request_key",
    # Other processes' memory.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # Filesystems and namespaces.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    # Kernel attack surface with no use for a learner's program.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "syslog",
    "uselib",
    "vhangup",
    "lookup_dcookie",
    "fanotify_init",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "personality",
    # File locks reach inodes shared with the host (the read-only Python binary).
    "flock",
)


def build_filter() -> bytes:
    """The compiled BPF program (what ``bwrap --seccomp`` reads). Raises
    SandboxUnavailable when libseccomp cannot be loaded."""
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]  # ctypes binding, untyped
    except (ImportError, RuntimeError, OSError) as error:
        raise SandboxUnavailable(f"libseccomp is not usable: {error}") from error
    deny = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in dict.fromkeys(DENIED):
        rules.add_rule(deny, name)
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NAMESPACES:
        rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    for command in (_F_SETLK, _F_SETLKW, _F_OFD_SETLK, _F_OFD_SETLKW):
        rules.add_rule(deny, "fcntl", seccomp.Arg(1, seccomp.EQ, command))
    rules.add_rule(deny, "socket", seccomp.Arg(0, seccomp.EQ, _AF_VSOCK))
    with os.fdopen(os.memfd_create("seccomp", os.MFD_CLOEXEC), "w+b") as program:
        rules.export_bpf(program)
        program.seek(0)
        return program.read()
