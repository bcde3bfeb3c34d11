"""What one run may use, and the server's ceiling on what a request may ask for."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Limits:
    """Limits of one sandboxed run. Every one is enforced outside the learner's
    interpreter (rlimits set before the code starts, cgroups, the supervisor's clock)."""

    cpu_seconds: float = 2.0
    """CPU time of the whole sandbox (cgroup), and of each process (RLIMIT_CPU)."""
    wall_seconds: float = 5.0
    """Real time from start to kill, whatever the program does (sleeping, reading)."""
    memory_mb: int = 128
    """Memory of the whole sandbox (cgroup, swap included) and address space per process."""
    output_kb: int = 64
    """Bytes of stdout and of stderr kept, each; more stops the run (output_limit)."""
    processes: int = 16
    """Processes and threads at once (pids cgroup and RLIMIT_NPROC)."""
    file_size_kb: int = 4096
    """Largest file the program may write (RLIMIT_FSIZE)."""
    open_files: int = 64
    """Open file descriptors per process (RLIMIT_NOFILE)."""
    tmp_mb: int = 16
    """Size of the writable /tmp (and of /dev/shm): tmpfs, gone after the run."""

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"{field.name} must be positive")

    def capped(self, ceiling: Limits) -> Limits:
        """These limits, none above ``ceiling``'s."""
        return replace(
            self,
            **{
                field.name: min(getattr(self, field.name), getattr(ceiling, field.name))
                for field in fields(self)
            },
        )
