"""Component files that must stop the sidecar at startup (reference §7.1-7.4, §1.3), and a
runner that starts all of them at once. Used by ``test_components.py``; ``conftest.py`` starts
the runs early so they overlap other tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ._support import POSTGRES_URL, component, run_until_exit, write_components

APP_ID = "compapp"


def _pg(name: str, **md: Any) -> dict[str, Any]:
    return component(name, "state.postgresql", metadata={"connectionString": POSTGRES_URL, **md})


FAILURES: dict[str, tuple[Any, tuple[str, ...]]] = {
    # case id: (file content: component dict(s) or raw text, words the error must contain
    #           - one tuple entry means "this word", a "|" means "any of")
    "unsupported-type": (component("bad", "state.doesnotexist"), ("state.doesnotexist",)),
    "sqlite-missing-connection-string": (component("bad", "state.sqlite"), ("connectionString",)),
    "postgres-missing-connection-string": (
        component("bad", "state.postgresql", metadata={"tableName": "x"}),
        ("connectionString",),
    ),
    "bad-yaml": ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: [bad\n", ()),
    "key-prefix-with-separator": (
        component("bad", "state.in-memory", metadata={"keyPrefix": "a||b"}),
        ("keyPrefix",),
    ),
    "sqlite-bad-table-name": (
        component(
            "bad",
            "state.sqlite",
            metadata={"connectionString": ":memory:", "tableName": "bad-name;"},
        ),
        ("tableName",),
    ),
    "sqlite-busy-timeout-pragma": (
        component(
            "bad",
            "state.sqlite",
            metadata={"connectionString": "file:x.db?_pragma=busy_timeout(1000)"},
        ),
        ("connectionString|busy_timeout",),
    ),
    "postgres-timeout-below-1s": (_pg("bad", timeout="500ms"), ("timeout",)),
    "secret-ref-without-secret-store": (
        component(
            "bad",
            "state.sqlite",
            metadata={"connectionString": {"secretKeyRef": {"name": "db", "key": "db"}}},
        ),
        ("connectionString|secretKeyRef|secret",),
    ),
    "env-ref-to-dapr-variable": (
        component("bad", "state.sqlite", metadata={"connectionString": {"envRef": "DAPR_CONF_DB"}}),
        ("connectionString|DAPR_CONF_DB",),
    ),
    "secret-store-missing-secrets-file": (
        component("bad", "secretstores.local.file"),
        ("secretsFile|secrets file",),
    ),
}


async def run_failure_cases(tmp: Path) -> dict[str, tuple[int, str, str]]:
    """Start one sidecar per case concurrently; case -> (exit code, output, broken file name)."""

    async def run(case: str, content: Any) -> tuple[str, tuple[int, str, str]]:
        case_dir = tmp / case
        res = case_dir / "resources"
        res.mkdir(parents=True)
        # a valid component next to the broken one: the error must point at the right file
        write_components(res / "aaa-valid.yaml", component("okstore", "state.in-memory"))
        filename = f"broken-{case}.yaml"
        if isinstance(content, str):
            (res / filename).write_text(content)
        else:
            write_components(res / filename, content)
        code, output = await run_until_exit(
            case_dir, app_id=APP_ID, resources=[res], env={"DAPR_CONF_DB": str(case_dir / "x.db")}
        )
        return case, (code, output, filename)

    results = await asyncio.gather(*(run(case, content) for case, (content, _) in FAILURES.items()))
    return dict(results)
