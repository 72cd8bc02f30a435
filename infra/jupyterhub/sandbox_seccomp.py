"""The seccomp filter every workspace runs under: a deny list, compiled to BPF with libseccomp (pyseccomp).

bubblewrap loads it (`bwrap --seccomp FD`) just before it starts the single-user server, so every process in
the workspace (server, kernels, terminals, anything they start) inherits it and cannot drop it. The list follows
what a hardened container runtime refuses by default (Docker's default profile): kernel interfaces a data
analysis never needs and that have been the way out of sandboxes (io_uring, keyrings, eBPF, perf, userfaultfd,
namespaces, mounts, ptrace, modules, kexec). Refused calls fail with EPERM, so programs see an ordinary
"Operation not permitted"; clone3 fails with ENOSYS because its flags sit in memory a filter cannot read, and
C libraries then fall back to clone, whose flags the filter does check. Syscalls of another architecture
(32-bit int 0x80, x32) kill the process (libseccomp's default for a foreign architecture).
"""

from __future__ import annotations

import errno
import os
from functools import cache

# name -> why it is refused (shown in docs/operators.md; the test runs each one from a real kernel).
DENIED: dict[str, str] = {
    "io_uring_setup": "io_uring: a second syscall interface, the source of many kernel exploits",
    "io_uring_enter": "io_uring",
    "io_uring_register": "io_uring",
    "add_key": "kernel keyrings",
    "keyctl": "kernel keyrings",
    "request_key": "kernel keyrings",
    "bpf": "eBPF programs",
    "perf_event_open": "performance counters (side channels, exploits)",
    "userfaultfd": "userfaultfd (turns kernel races into reliable exploits)",
    "unshare": "new namespaces (user namespaces above all)",
    "setns": "joining other namespaces",
    "mount": "mounting",
    "umount2": "unmounting",
    "pivot_root": "changing the root",
    "chroot": "changing the root",
    "fsopen": "the new mount API",
    "fsconfig": "the new mount API",
    "fsmount": "the new mount API",
    "fspick": "the new mount API",
    "move_mount": "the new mount API",
    "open_tree": "the new mount API",
    "mount_setattr": "the new mount API",
    "ptrace": "tracing other processes",
    "process_vm_readv": "reading another process's memory",
    "process_vm_writev": "writing another process's memory",
    "pidfd_getfd": "taking another process's file descriptors",
    "kcmp": "comparing kernel objects of other processes",
    "kexec_load": "loading a new kernel",
    "kexec_file_load": "loading a new kernel",
    "init_module": "kernel modules",
    "finit_module": "kernel modules",
    "delete_module": "kernel modules",
    "reboot": "rebooting",
    "swapon": "swap",
    "swapoff": "swap",
    "acct": "process accounting",
    "quotactl": "disk quotas",
    "quotactl_fd": "disk quotas",
    "syslog": "the kernel log",
    "settimeofday": "the clock",
    "clock_settime": "the clock",
    "clock_adjtime": "the clock",
    "lookup_dcookie": "kernel profiling",
    "open_by_handle_at": "opening files by handle, past the mount namespace",
    "name_to_handle_at": "file handles",
    "iopl": "I/O ports",
    "ioperm": "I/O ports",
    "vhangup": "terminals of others",
    "uselib": "obsolete",
    "ustat": "obsolete",
    "sysfs": "obsolete",
    "fanotify_init": "watching the whole filesystem",
    "nfsservctl": "obsolete",
}

# clone(2) with any of these flags makes a new namespace: refused, while threads and fork still work.
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


@cache
def filter_bpf() -> bytes:
    """The compiled filter for this machine's architecture (what `bwrap --seccomp` reads)."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    for flag in CLONE_NAMESPACE_FLAGS.values():
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("londonsde-seccomp-build", 0)
    with os.fdopen(fd, "w+b") as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


def filter_fd() -> int:
    """A fresh memfd holding the filter, positioned at the start: pass it to bwrap, which reads it to the end."""
    fd = os.memfd_create("londonsde-seccomp", 0)
    os.write(fd, filter_bpf())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
