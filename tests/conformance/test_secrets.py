"""Secrets API: reference §4.1 (routes, errors; 401 for an unknown store, §12 item 3), §4.2
(`secretstores.local.file`: nestedSeparator, multiValued, missing secret -> 500, §12 item 4),
§4.3 (`secretstores.local.env`: missing variable -> "", DAPR_*/APP_API_TOKEN hidden, prefix),
§4.1 + §8.2 (Configuration `spec.secrets.scopes` -> 403 ERR_PERMISSION_DENIED, bulk filtered)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from ._support import (
    Sidecar,
    assert_json_content_type,
    component,
    describe,
    error_body,
    start_sidecar,
    write_components,
)

pytestmark = pytest.mark.own_process

SECRETS = {
    "simple": "v1",
    "db": {"user": "admin", "password": "p@ss:w/rd"},
    "nested": {"a": {"b": "deep"}},
    "list": ["x", "y"],
}
ENV = {
    "CONF_SECRET_VAR": "hello-env",
    "CONFSECRET_INNER": "inner-value",
    "DAPR_CONF_HIDDEN": "must-not-leak",
    "dapr_conf_lower": "must-not-leak-either",
    "APP_API_TOKEN": "app-token-must-not-leak",
}

SCOPES_CONFIG = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Configuration",
    "metadata": {"name": "secretscopes"},
    "spec": {
        "secrets": {
            "scopes": [
                {
                    "storeName": "filestore-scoped",
                    "defaultAccess": "deny",
                    "allowedSecrets": ["simple", "db:user"],
                },
                {
                    "storeName": "envstore-scoped",
                    "defaultAccess": "allow",
                    "deniedSecrets": ["CONF_SECRET_VAR"],
                },
            ]
        }
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secrets_sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    tmp = tmp_path_factory.mktemp("secrets")
    secrets_file = tmp / "secrets.json"
    secrets_file.write_text(json.dumps(SECRETS))
    resources = tmp / "resources"
    write_components(
        resources / "secretstores.yaml",
        component("envstore", "secretstores.local.env"),
        component("envprefixed", "secretstores.local.env", metadata={"prefix": "CONFSECRET_"}),
        component(
            "filestore", "secretstores.local.file", metadata={"secretsFile": str(secrets_file)}
        ),
        component(
            "filestore-dot",
            "secretstores.local.file",
            metadata={"secretsFile": str(secrets_file), "nestedSeparator": "."},
        ),
        component(
            "filestore-multi",
            "secretstores.local.file",
            metadata={"secretsFile": str(secrets_file), "multiValued": "true"},
        ),
        # relative to the sidecar's working directory (§4.2); spawn_sidecar runs it in `tmp`
        component(
            "filestore-rel", "secretstores.local.file", metadata={"secretsFile": "secrets.json"}
        ),
        component(
            "filestore-scoped",
            "secretstores.local.file",
            metadata={"secretsFile": str(secrets_file)},
        ),
        component("envstore-scoped", "secretstores.local.env"),
    )
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(SCOPES_CONFIG))
    process = await start_sidecar(
        tmp,
        app_id="secrets-app",
        resources=[resources],
        env=ENV,
        cwd=tmp,
        extra_args=["--config", str(config)],
    )
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            yield Sidecar(process.url, "", "secrets-app", "other", client, process)
    finally:
        await process.stop()


async def get_secret(sc: Sidecar, store: str, key: str) -> dict[str, Any]:
    resp = await sc.client.get(f"/v1.0/secrets/{store}/{key}")
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    body = resp.json()
    assert isinstance(body, dict)
    return body


async def get_bulk(sc: Sidecar, store: str) -> dict[str, dict[str, str]]:
    resp = await sc.client.get(f"/v1.0/secrets/{store}/bulk")
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    body = resp.json()
    assert isinstance(body, dict)
    return body


async def test_env_secret(secrets_sidecar: Sidecar) -> None:
    assert await get_secret(secrets_sidecar, "envstore", "CONF_SECRET_VAR") == {
        "CONF_SECRET_VAR": "hello-env"
    }


async def test_env_missing_variable_is_empty_string(secrets_sidecar: Sidecar) -> None:
    assert await get_secret(secrets_sidecar, "envstore", "CONF_NOT_SET_ANYWHERE") == {
        "CONF_NOT_SET_ANYWHERE": ""
    }


@pytest.mark.parametrize("name", ["DAPR_CONF_HIDDEN", "dapr_conf_lower", "APP_API_TOKEN"])
async def test_env_sensitive_variables_are_hidden(secrets_sidecar: Sidecar, name: str) -> None:
    assert await get_secret(secrets_sidecar, "envstore", name) == {name: ""}


async def test_env_prefix(secrets_sidecar: Sidecar) -> None:
    assert await get_secret(secrets_sidecar, "envprefixed", "INNER") == {"INNER": "inner-value"}


async def test_env_bulk(secrets_sidecar: Sidecar) -> None:
    bulk = await get_bulk(secrets_sidecar, "envstore")
    assert bulk["CONF_SECRET_VAR"] == {"CONF_SECRET_VAR": "hello-env"}
    assert bulk["CONFSECRET_INNER"] == {"CONFSECRET_INNER": "inner-value"}
    leaked = [k for k in bulk if k.upper().startswith("DAPR_") or k.upper() == "APP_API_TOKEN"]
    assert leaked == []
    assert all(v == {k: v[k]} for k, v in bulk.items())


async def test_env_bulk_with_prefix_strips_it(secrets_sidecar: Sidecar) -> None:
    bulk = await get_bulk(secrets_sidecar, "envprefixed")
    assert bulk == {"INNER": {"INNER": "inner-value"}}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("simple", "v1"),
        ("db:user", "admin"),
        ("db:password", "p@ss:w/rd"),
        ("nested:a:b", "deep"),
        ("list:0", "x"),
        ("list:1", "y"),
    ],
)
async def test_file_store_flattens_with_colon(
    secrets_sidecar: Sidecar, key: str, value: str
) -> None:
    assert await get_secret(secrets_sidecar, "filestore", key) == {key: value}


async def test_file_store_nested_separator(secrets_sidecar: Sidecar) -> None:
    assert await get_secret(secrets_sidecar, "filestore-dot", "db.password") == {
        "db.password": "p@ss:w/rd"
    }
    assert await get_secret(secrets_sidecar, "filestore-dot", "nested.a.b") == {
        "nested.a.b": "deep"
    }
    resp = await secrets_sidecar.client.get("/v1.0/secrets/filestore-dot/db:password")
    error_body(resp, 500, "ERR_SECRET_GET")


async def test_file_store_multi_valued(secrets_sidecar: Sidecar) -> None:
    sc = secrets_sidecar
    assert await get_secret(sc, "filestore-multi", "db") == {
        "user": "admin",
        "password": "p@ss:w/rd",
    }
    assert await get_secret(sc, "filestore-multi", "nested") == {"a:b": "deep"}
    assert await get_secret(sc, "filestore-multi", "simple") == {"simple": "v1"}


@pytest.mark.parametrize("store", ["filestore", "filestore-multi"])
async def test_file_store_missing_secret_is_500(secrets_sidecar: Sidecar, store: str) -> None:
    resp = await secrets_sidecar.client.get(f"/v1.0/secrets/{store}/no-such-secret")
    body = error_body(resp, 500, "ERR_SECRET_GET")
    assert "no-such-secret" in body["message"], body


async def test_file_store_nested_object_is_not_a_secret_when_single_valued(
    secrets_sidecar: Sidecar,
) -> None:
    resp = await secrets_sidecar.client.get("/v1.0/secrets/filestore/db")
    error_body(resp, 500, "ERR_SECRET_GET")


async def test_file_store_bulk(secrets_sidecar: Sidecar) -> None:
    assert await get_bulk(secrets_sidecar, "filestore") == {
        "simple": {"simple": "v1"},
        "db:user": {"db:user": "admin"},
        "db:password": {"db:password": "p@ss:w/rd"},
        "nested:a:b": {"nested:a:b": "deep"},
        "list:0": {"list:0": "x"},
        "list:1": {"list:1": "y"},
    }


async def test_file_store_bulk_multi_valued(secrets_sidecar: Sidecar) -> None:
    bulk = await get_bulk(secrets_sidecar, "filestore-multi")
    assert bulk["simple"] == {"simple": "v1"}
    assert bulk["db"] == {"user": "admin", "password": "p@ss:w/rd"}
    assert bulk["nested"] == {"a:b": "deep"}


async def test_file_store_relative_path(secrets_sidecar: Sidecar) -> None:
    assert await get_secret(secrets_sidecar, "filestore-rel", "db:user") == {"db:user": "admin"}


async def test_url_encoded_secret_name(secrets_sidecar: Sidecar) -> None:
    assert await get_secret(secrets_sidecar, "filestore", "db%3Apassword") == {
        "db:password": "p@ss:w/rd"
    }


@pytest.mark.parametrize("path", ["/v1.0/secrets/nostore/key", "/v1.0/secrets/nostore/bulk"])
async def test_unknown_secret_store_is_401(secrets_sidecar: Sidecar, path: str) -> None:
    resp = await secrets_sidecar.client.get(path)
    body = error_body(resp, 401, "ERR_SECRET_STORE_NOT_FOUND")
    assert body["message"] == "failed finding secret store with key nostore"


async def test_scopes_allowed_secrets(secrets_sidecar: Sidecar) -> None:
    sc = secrets_sidecar
    assert await get_secret(sc, "filestore-scoped", "simple") == {"simple": "v1"}
    assert await get_secret(sc, "filestore-scoped", "db:user") == {"db:user": "admin"}
    resp = await sc.client.get("/v1.0/secrets/filestore-scoped/db:password")
    body = error_body(resp, 403, "ERR_PERMISSION_DENIED")
    # daprd: `access denied by policy to get %q from %q` (the reference gives no message text)
    assert "db:password" in body["message"], body
    assert "filestore-scoped" in body["message"], body
    assert await get_bulk(sc, "filestore-scoped") == {
        "simple": {"simple": "v1"},
        "db:user": {"db:user": "admin"},
    }


async def test_scopes_denied_secrets(secrets_sidecar: Sidecar) -> None:
    sc = secrets_sidecar
    resp = await sc.client.get("/v1.0/secrets/envstore-scoped/CONF_SECRET_VAR")
    error_body(resp, 403, "ERR_PERMISSION_DENIED")
    assert await get_secret(sc, "envstore-scoped", "CONFSECRET_INNER") == {
        "CONFSECRET_INNER": "inner-value"
    }
    bulk = await get_bulk(sc, "envstore-scoped")
    assert "CONF_SECRET_VAR" not in bulk
    assert bulk["CONFSECRET_INNER"] == {"CONFSECRET_INNER": "inner-value"}
