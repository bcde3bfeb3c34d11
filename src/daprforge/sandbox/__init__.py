"""Running untrusted Python: bubblewrap namespaces, seccomp, rlimits, cgroups, a supervisor.

See docs/code-executor.md for the design and the threat model.
"""

from daprforge.sandbox.errors import SandboxBusy, SandboxUnavailable
from daprforge.sandbox.limits import Limits
from daprforge.sandbox.supervisor import INSECURE_ENV, Sandbox, Slot, find_bwrap
from daprforge.sandbox.verdicts import STATUSES, Execution, Status

__all__ = [
    "INSECURE_ENV",
    "STATUSES",
    "Execution",
    "Limits",
    "Sandbox",
    "SandboxBusy",
    "SandboxUnavailable",
    "Slot",
    "Status",
    "find_bwrap",
]
