"""Component loading: reference §7.1 (component YAML: secretKeyRef + auth.secretStore, envRef,
scopes, template tags, ignoreErrors, default version of state.postgresql), §7.2-7.4 (required
metadata, tableName rules, timeout, busy_timeout), §1.3 (keyPrefix containing `||`).

Startup failures must exit non-zero with an error naming the file and the field (daprforge's
contract); all failing configurations start concurrently to keep the suite fast.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from ._db import pg_query, sqlite_query
from ._failures import FAILURES, run_failure_cases
from ._support import (
    EARLY,
    POSTGRES_URL,
    Sidecar,
    assert_kit_error,
    assert_no_content,
    component,
    new_key,
    start_sidecar,
    write_components,
)

pytestmark = pytest.mark.own_process

APP_ID = "compapp"

# ------------------------------------------------------------------ configurations that load


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def comp_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    tmp = tmp_path_factory.mktemp("components")
    dbs = tmp / "dbs"
    dbs.mkdir()
    secrets_file = tmp / "secrets.json"
    secrets_file.write_text(
        json.dumps({"dbpath": str(dbs / "by-key.db"), "dbpath2": str(dbs / "by-name.db")})
    )
    res = tmp / "resources"
    write_components(
        res / "secrets.yaml",
        component(
            "localsecrets", "secretstores.local.file", metadata={"secretsFile": str(secrets_file)}
        ),
    )
    write_components(
        res / "secret-ref.yaml",
        component(
            "ref-store",
            "state.sqlite",
            secret_store="localsecrets",
            metadata={"connectionString": {"secretKeyRef": {"name": "dbpath", "key": "dbpath"}}},
        ),
    )
    write_components(
        res / "secret-ref-default-key.yaml",
        component(
            "ref-store-default-key",
            "state.sqlite",
            secret_store="localsecrets",
            metadata={"connectionString": {"secretKeyRef": {"name": "dbpath2"}}},
        ),
    )
    write_components(
        res / "env-ref.yaml",
        component(
            "envref-store",
            "state.sqlite",
            metadata={"connectionString": {"envRef": "CONF_DB_PATH"}},
        ),
    )
    write_components(
        res / "template.yaml",
        component(
            "template-store",
            "state.sqlite",
            metadata={"connectionString": str(dbs / "tmpl-{appID}.db")},
        ),
    )
    write_components(
        res / "scoped.yaml",
        component("scoped-mine", "state.in-memory", scopes=[APP_ID, "another"]),
        component("scoped-other", "state.in-memory", scopes=["someone-else"]),
    )
    write_components(
        res / "broken-but-ignored.yaml",
        component("ignored-broken", "state.sqlite", ignore_errors=True),
    )
    write_components(
        res / "multi-doc.yaml",
        component("multi-a", "state.in-memory"),
        component("multi-b", "state.in-memory"),
    )
    write_components(
        res / "sqlite-variants.yaml",
        component("memory-sqlite", "state.sqlite", metadata={"connectionString": ":memory:"}),
        component("url-alias", "state.sqlite", metadata={"url": str(dbs / "url-alias.db")}),
        component(
            "custom-table",
            "state.sqlite",
            metadata={
                "connectionString": str(dbs / "custom.db"),
                "tableName": "my_state",
                "metadataTableName": "my_meta",
            },
        ),
    )
    (res / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "dapr.io/v1alpha1",
                "kind": "Configuration",
                "metadata": {"name": "appconfig"},
                "spec": {"tracing": {"samplingRate": "0"}},
            }
        )
    )
    (res / "notes.txt").write_text("not: [a component\n")
    second = tmp / "second"
    write_components(second / "second.yaml", component("second-dir-store", "state.in-memory"))

    env = {"CONF_DB_PATH": str(dbs / "from-env.db")}
    process = await start_sidecar(tmp, app_id=APP_ID, resources=[res, second], env=env)
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            sc = Sidecar(process.url, "ref-store", APP_ID, "sqlite", client, process)
            sc.backend["dbs"] = str(dbs)
            yield sc
    finally:
        await process.stop()


LOADED_STATE_STORES = [
    "memory-sqlite",
    "url-alias",
    "custom-table",
    "ref-store",
    "ref-store-default-key",
    "envref-store",
    "template-store",
    "scoped-mine",
    "multi-a",
    "multi-b",
    "second-dir-store",
]


@pytest.mark.parametrize("store", LOADED_STATE_STORES)
async def test_store_is_loaded_and_works(comp_sidecar: Sidecar, store: str) -> None:
    key = new_key()
    assert_no_content(await comp_sidecar.save([{"key": key, "value": store}], store=store))
    assert (await comp_sidecar.get(key, store=store)).json() == store


@pytest.mark.parametrize(
    ("store", "db_file"),
    [
        ("ref-store", "by-key.db"),
        ("ref-store-default-key", "by-name.db"),
        ("envref-store", "from-env.db"),
        ("template-store", f"tmpl-{APP_ID}.db"),
        ("url-alias", "url-alias.db"),
    ],
)
async def test_connection_string_resolution(
    comp_sidecar: Sidecar, store: str, db_file: str
) -> None:
    key = new_key()
    assert_no_content(await comp_sidecar.save([{"key": key, "value": 1}], store=store))
    assert (Path(comp_sidecar.backend["dbs"]) / db_file).is_file()


async def test_sqlite_table_names(comp_sidecar: Sidecar) -> None:
    key = new_key()
    assert_no_content(await comp_sidecar.save([{"key": key, "value": 1}], store="custom-table"))
    rows = sqlite_query(
        str(Path(comp_sidecar.backend["dbs"]) / "custom.db"),
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    )
    assert {"my_meta", "my_state"} <= {r[0] for r in rows}, rows
    stored = sqlite_query(
        str(Path(comp_sidecar.backend["dbs"]) / "custom.db"),
        "SELECT key FROM my_state WHERE key LIKE ?",
        [f"%{key}"],
    )
    assert stored == [(f"{APP_ID}||{key}",)]


@pytest.mark.parametrize("store", ["scoped-other", "ignored-broken"])
async def test_store_not_loaded(comp_sidecar: Sidecar, store: str) -> None:
    resp = await comp_sidecar.get("k", store=store)
    assert_kit_error(
        resp,
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        "DAPR_STATE_NOT_FOUND",
        f"state store {store} is not found",
    )


async def test_metadata_lists_loaded_components_only(comp_sidecar: Sidecar) -> None:
    meta = (await comp_sidecar.client.get("/v1.0/metadata")).json()
    names = sorted(c["name"] for c in meta["components"])
    assert names == sorted([*LOADED_STATE_STORES, "localsecrets"])
    types = {c["name"]: c["type"] for c in meta["components"]}
    assert types["localsecrets"] == "secretstores.local.file"
    assert types["ref-store"] == "state.sqlite"
    assert types["multi-a"] == "state.in-memory"


# ------------------------------------------------------------------ configurations that fail


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def startup_failures(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[int, str, str]]:
    # usually already running since the session started (see conftest.early_starts)
    task = EARLY.pop("failures", None)
    if task is not None:
        return await task
    return await run_failure_cases(tmp_path_factory.mktemp("failures"))


@pytest.mark.parametrize("case", list(FAILURES))
async def test_invalid_component_fails_startup(
    startup_failures: dict[str, tuple[int, str, str]], case: str
) -> None:
    code, output, filename = startup_failures[case]
    assert code != -999, f"sidecar kept running with {filename}:\n{output}"
    assert code != 0, f"sidecar exited 0 with {filename}:\n{output}"
    assert filename in output, f"error does not name {filename}:\n{output}"
    for words in FAILURES[case][1]:
        assert any(w in output for w in words.split("|")), (
            f"error does not mention {words}:\n{output}"
        )


@pytest.mark.postgres
async def test_postgresql_without_version_is_v1(tmp_path: Path, pg_prefix: str) -> None:
    """A version-less state.postgresql resolves to v1 (§7.1), which has the query API (§1.9);
    v1 accepts a schema-qualified tableName (§7.2)."""
    res = tmp_path / "resources"
    table = f"{pg_prefix}_nover"
    doc = component(
        "statestore",
        "state.postgresql",
        version=None,
        metadata={
            "connectionString": POSTGRES_URL,
            "tableName": f"public.{table}",
            "metadataTableName": f"{table}_meta",
        },
    )
    write_components(res / "pg.yaml", doc)
    process = await start_sidecar(tmp_path, app_id="nover", resources=[res])
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            sc = Sidecar(process.url, "statestore", "nover", "postgresql-v1", client, process)
            key = new_key()
            await sc.save_ok(key, {"tag": key})
            resp = await sc.query({"filter": {"EQ": {"tag": key}}})
            assert resp.status_code == 200, resp.text
            assert [r["key"] for r in resp.json()["results"]] == [key]
            assert (await sc.get_etag(key)).isdigit()  # v1 etag = xmin
            rows = pg_query(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = %s", [table]
            )
            assert rows == [("public",)]
    finally:
        await process.stop()
