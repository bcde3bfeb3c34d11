"""The read-only root a sandbox sees: the Python runtime and the libraries it links, no more.

Found once, at start-up, from the interpreter itself (its binary, its standard library, the
ELF program interpreter and what the dynamic loader resolves for the interpreter and the
standard library's extension modules), never from a hard-coded list of distribution paths.
The prefix itself is not bound: for a distribution's Python it is ``/usr``, with every
program and package of the host in it.
Everything is bound read-only; host symlinks on the way (``/lib -> usr/lib`` on merged-/usr
systems) are recreated as symlinks inside, so paths resolve as they do on the host.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from daprforge.sandbox.errors import SandboxUnavailable

_PT_INTERP = 3
# "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
_RESOLVED = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
_MAX_LINKS = 32


@dataclass(frozen=True)
class PythonRuntime:
    executable: str
    """The real interpreter binary (not a venv symlink)."""
    prefix: str
    """``sys.base_prefix``, real path (its ``bin`` holds the interpreter only, inside)."""
    hidden: tuple[str, ...]
    """Directories inside the prefix covered by an empty tmpfs (site-packages)."""
    binds: tuple[str, ...]
    """Host directories bound read-only at the same path."""
    symlinks: tuple[tuple[str, str], ...] = field(default=())
    """(target, path): symlinks recreated inside the sandbox."""
    files: tuple[str, ...] = field(default=())
    """Single host files bound read-only (the interpreter, the loader cache)."""


def find_runtime(executable: str | None = None) -> PythonRuntime:
    """The mounts the interpreter ``executable`` (default: this one) needs. Blocking: call it
    once, at start-up (in a thread from async code)."""
    exe = os.path.realpath(executable or getattr(sys, "_base_executable", None) or sys.executable)
    if not os.access(exe, os.X_OK):
        raise SandboxUnavailable(f"the Python interpreter {exe} is not executable")
    prefix = os.path.realpath(sys.base_prefix)
    if not _inside(exe, prefix):
        raise SandboxUnavailable(f"the interpreter {exe} is not under sys.base_prefix {prefix}")
    stdlib = os.path.realpath(sysconfig.get_paths(vars={"base": prefix})["stdlib"])
    elves = [exe, *_extension_modules(stdlib)]
    loader = _program_interpreter(exe)
    needed = {loader} if loader else set()
    for elf in elves:
        needed |= _resolved_libraries(loader, elf)
    plan = _Plan(stdlib)
    for library in sorted(needed):
        plan.expose(library)
    site = os.path.join(stdlib, "site-packages")
    cache = "/etc/ld.so.cache"
    binds = plan.binds()
    return PythonRuntime(
        executable=exe,
        prefix=prefix,
        hidden=(site,) if os.path.isdir(site) else (),
        binds=binds,
        # A symlink inside a bound directory comes with it.
        symlinks=tuple(
            sorted(
                (target, path)
                for path, target in plan.symlinks.items()
                if not any(_inside(path, bound) for bound in binds)
            )
        ),
        files=(exe, cache) if os.path.isfile(cache) else (exe,),
    )


def _inside(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _extension_modules(stdlib: str) -> list[str]:
    dynload = Path(stdlib) / "lib-dynload"
    return sorted(str(path) for path in dynload.glob("*.so")) if dynload.is_dir() else []


def _program_interpreter(elf: str) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF file (None for a static binary)."""
    with open(elf, "rb") as file:
        header = file.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise SandboxUnavailable(f"{elf} is not a 64-bit little-endian ELF binary")
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        for index in range(phnum):
            file.seek(phoff + index * phentsize)
            kind, _flags, offset, _vaddr, _paddr, size = struct.unpack("<IIQQQQ", file.read(40))
            if kind == _PT_INTERP:
                file.seek(offset)
                return file.read(size).rstrip(b"\0").decode()
    return None


def _resolved_libraries(loader: str | None, elf: str) -> set[str]:
    """What the dynamic loader maps for ``elf`` (``ld.so --list``, i.e. ldd without the
    shell script)."""
    if loader is None:
        return set()
    listed = subprocess.run(
        [loader, "--list", elf], capture_output=True, text=True, check=False, timeout=30
    )
    if listed.returncode != 0:
        raise SandboxUnavailable(f"cannot list the libraries of {elf}: {listed.stderr.strip()}")
    return {match.group(1) for match in _RESOLVED.finditer(listed.stdout)}


class _Plan:
    """Binds and symlinks that make host paths resolve the same way inside."""

    def __init__(self, stdlib: str) -> None:
        self._directories: set[str] = {stdlib}
        self.symlinks: dict[str, str] = {}

    def expose(self, path: str) -> None:
        """Make ``path`` resolve inside as on the host: every symlink met on the way is
        recreated, the directory holding the final real file is bound."""
        for _ in range(_MAX_LINKS):
            link = self._first_symlink(path)
            if link is None:
                self._directories.add(os.path.dirname(path))
                return
            at, rest = link
            target = os.readlink(at)
            self.symlinks[at] = target
            path = os.path.normpath(os.path.join(os.path.dirname(at), target, rest))
        raise SandboxUnavailable(f"too many symlinks resolving {path}")

    @staticmethod
    def _first_symlink(path: str) -> tuple[str, str] | None:
        parts = Path(path).parts
        for depth in range(2, len(parts) + 1):
            current = os.path.join(*parts[:depth])
            if os.path.islink(current):
                return current, os.path.join(*parts[depth:]) if depth < len(parts) else ""
        return None

    def binds(self) -> tuple[str, ...]:
        # A directory inside another bound one is already there.
        kept = sorted(self._directories)
        return tuple(
            path
            for path in kept
            if not any(_inside(path, other) and path != other for other in kept)
        )
