"""Service settings from the environment (and a ``.env`` file), via pydantic-settings.

Generated services subclass :class:`ServiceSettings` to add their own fields. The names
match what ``dapr run`` and the Dapr injector set (``APP_ID``, ``DAPR_HTTP_PORT``, ...).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    app_id: str = "app"
    """The service's name in logs and the API title (``APP_ID``, set by ``dapr run``)."""
    log_level: str = "INFO"
    log_json: bool = True
    """One JSON object per log line; turn off for readable local output."""
    max_body_size: int = Field(default=1024 * 1024, ge=0)
    """Largest request body accepted, in bytes; larger ones get 413."""
    api_key: SecretStr | None = None
    """When set, routes guarded by ``require_api_key`` need it in ``X-API-Key``."""

    dapr_http_endpoint: str | None = None
    dapr_http_port: int | None = None
    dapr_api_token: SecretStr | None = None
    dapr_timeout: float = Field(default=10.0, gt=0)
    """Seconds each attempt of a sidecar call may take."""
    ready_timeout: float = Field(default=2.0, gt=0)
    """Seconds each readiness check may take before /ready counts it as failing."""

    @property
    def dapr_endpoint(self) -> str | None:
        """The sidecar URL, or None to let the client read the environment itself."""
        if self.dapr_http_endpoint:
            return self.dapr_http_endpoint
        if self.dapr_http_port:
            return f"http://127.0.0.1:{self.dapr_http_port}"
        return None
