"""A pool of cgroup v1 slots (memory, pids, cpuacct) reused from run to run.

Creating and removing a cgroup per run costs milliseconds and ``rmdir`` fails with EBUSY for
a while after the last process left, so the pool makes one directory per concurrent slot at
start-up, resets its counters before each run, checks it is empty after, and removes them all
at shutdown. Slots live under the cgroup this process is in (its delegated subtree), so runs
still count against whatever limits the container has.

Runs are born in their slot: each slot keeps a small spawner process inside its cgroups
(spawner.py), because moving a process into a cgroup v1 hierarchy waits for an RCU grace
period. Limits are set relative to what the slot holds before the run (the spawner, cached
pages, PID-namespace inits the kernel has not released yet), so a run gets exactly its own.

cgroup v2 hosts, or containers without a writable cgroup tree, get no pool: limits then rest
on rlimits and the wall clock alone (logged at start-up).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from daprforge.sandbox.limits import Limits

_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpuacct")
_UNLIMITED = "-1"
_PREFIX = "daprforge-sandbox-"
# The slot's spawner lives in its cgroups, and so does the run's started sandbox (bwrap's two
# processes and the interpreter, up before its run): room for them on top of what the
# learner's program gets (memory: what the slot holds before the run, at most this much).
_RESIDENT_ALLOWANCE = 32 * 1024 * 1024
_MIB = 1024 * 1024
_counter = itertools.count()


@dataclass
class Usage:
    cpu_ms: int
    memory_kb: int
    oom_killed: bool


class CgroupSlot:
    """One cgroup per controller, for one run at a time."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._oom_kills = 0
        self._baseline = 0
        self._run_memory = 0
        self.resident: set[int] = set()
        """Pids that live in the slot between runs (its spawner): never killed by a run."""
        self.procs_fds: tuple[int, ...] = tuple(
            os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for path in paths.values()
        )

    def prepare(self, limits: Limits) -> None:
        """Set the limits and reset the counters once the run's sandbox is started, just
        before its program (blocking: sysfs writes, microseconds)."""
        memory = self.paths["memory"]
        # What the slot holds now (the spawner, the started sandbox) comes on top of the
        # run's own limit, so the program gets its full memory_mb and reports only its own
        # use. File pages cached by earlier runs are not added: the kernel reclaims them
        # when the run needs the room.
        self._baseline = int((memory / "memory.usage_in_bytes").read_text())
        resident = min(max(0, self._baseline - self._file_pages()), _RESIDENT_ALLOWANCE)
        self._run_memory = limits.memory_mb * _MIB
        wanted = str(self._run_memory + resident)
        # memsw may never be below the memory limit, and standby left both unlimited.
        (memory / "memory.limit_in_bytes").write_text(wanted)
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(wanted)
        # pids.current counts the spawner, the started sandbox (bwrap's two processes and the
        # interpreter, which is the program's first process), and the init of recent runs'
        # PID namespaces for a moment after they are gone (the kernel releases them lazily):
        # the program's other processes go on top of whatever is counted now.
        counted = int((self.paths["pids"] / "pids.current").read_text())
        (self.paths["pids"] / "pids.max").write_text(str(counted + limits.processes - 1))
        (memory / "memory.max_usage_in_bytes").write_text("0")
        (self.paths["cpuacct"] / "cpuacct.usage").write_text("0")
        self._oom_kills = self._oom_kill_count()

    def standby(self) -> None:
        """Between runs: no process of the last one left, and none of its limits, which
        must not govern the start of the next sandbox (only our code runs in it until its
        run begins and :meth:`prepare` sets that run's). Blocking (sysfs)."""
        self.empty()
        memory = self.paths["memory"]
        swap = memory / "memory.memsw.limit_in_bytes"
        # memsw may never be below the memory limit: open it up first.
        if swap.exists():
            swap.write_text(_UNLIMITED)
        (memory / "memory.limit_in_bytes").write_text(_UNLIMITED)
        (self.paths["pids"] / "pids.max").write_text("max")

    def _file_pages(self) -> int:
        found = 0
        for line in (self.paths["memory"] / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key in ("total_active_file", "total_inactive_file"):
                found += int(value)
        return found

    def cpu_ns(self) -> int:
        return int((self.paths["cpuacct"] / "cpuacct.usage").read_text())

    def collect(self) -> Usage:
        """After the run: usage, and no process left (killed if any is)."""
        self.empty()
        return Usage(
            cpu_ms=self.cpu_ns() // 1_000_000,
            # The kernel rounds the limit to pages: never report more than the run's limit.
            memory_kb=min(max(0, self._peak() - self._baseline), self._run_memory) // 1024,
            oom_killed=self._oom_kill_count() > self._oom_kills,
        )

    def _peak(self) -> int:
        return int((self.paths["memory"] / "memory.max_usage_in_bytes").read_text())

    def pids(self, spared: int | None = None) -> list[int]:
        """Processes of a run still in the slot (the resident spawner excluded, and the
        process ``spared`` with its descendants: a sandbox waiting for its run)."""
        found: set[int] = set()
        for path in self.paths.values():
            found.update(int(pid) for pid in (path / "cgroup.procs").read_text().split())
        found -= self.resident
        if spared is not None:
            found -= _family(spared, found)
        return sorted(found)

    def empty(self, within: float = 2.0) -> None:
        """Kill whatever is still in the slot (the PID namespace should have done it)."""
        deadline = time.monotonic() + within
        while pids := self.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"cgroup slot still holds processes {pids}")
            time.sleep(0.005)

    def _oom_kill_count(self) -> int:
        for line in (self.paths["memory"] / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        """After the spawner is gone: kill anything left, remove the directories."""
        self.resident.clear()
        for fd in self.procs_fds:
            os.close(fd)
        self.empty()
        for path in self.paths.values():
            _rmdir_patiently(path)


class CgroupPool:
    """``size`` slots under ``<controller>/<own cgroup>/daprforge-sandbox-<pid>-<n>/``."""

    def __init__(self, slots: list[CgroupSlot], parents: list[Path]) -> None:
        self.slots = slots
        self.parents = parents

    @classmethod
    def create(cls, size: int) -> CgroupPool | None:
        """The pool, or None when this machine gives us no writable cgroup v1 tree.
        Blocking (mkdir in cgroupfs)."""
        own = _own_cgroups()
        if any(name not in own or not (_ROOT / name).is_dir() for name in CONTROLLERS):
            return None
        bases = [_ROOT / c / own[c].lstrip("/") for c in CONTROLLERS]
        for base in bases:
            _remove_stale(base)
        name = f"{_PREFIX}{os.getpid()}-{next(_counter)}"
        parents = [base / name for base in bases]
        made: list[Path] = []
        slots: list[CgroupSlot] = []
        try:
            for parent in parents:
                parent.mkdir()
                made.append(parent)
            for index in range(size):
                paths = {}
                for controller, parent in zip(CONTROLLERS, parents, strict=True):
                    path = parent / str(index)
                    path.mkdir()
                    made.append(path)
                    paths[controller] = path
                slots.append(CgroupSlot(paths))
        except OSError:
            for slot in slots:
                with contextlib.suppress(OSError):
                    slot.close()
            for path in reversed(made):
                with contextlib.suppress(OSError):
                    path.rmdir()
            return None
        return cls(slots, parents)

    def close(self) -> None:
        for slot in self.slots:
            slot.close()
        for parent in self.parents:
            _rmdir_patiently(parent)


def _rmdir_patiently(path: Path) -> None:
    """Remove a cgroup directory; the kernel may hold a just-emptied cgroup for a moment
    (EBUSY), so retry for up to about two seconds. Gone already is fine."""
    for _ in range(200):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def _family(root: int, pids: set[int]) -> set[int]:
    """``root`` and those of ``pids`` that descend from it."""
    parents: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The name (field 2) may hold spaces and parentheses: fields start after its ")".
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
    family = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return family


def _remove_stale(base: Path) -> None:
    """Pools of processes that died without closing them (killed, crashed): their empty
    slots are removed; a slot that still holds processes is left alone."""
    for parent in base.glob(f"{_PREFIX}*"):
        pid = parent.name.removeprefix(_PREFIX).partition("-")[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for slot in parent.iterdir():
            if slot.is_dir():
                with contextlib.suppress(OSError):
                    slot.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def _own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup (v1 lines)."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller:
                found[controller] = path
    return found
