"""The service kit: what every generated FastAPI service is built from. See docs/runtime.md."""

from daprforge.service.app import create_app
from daprforge.service.background import BackgroundTasks
from daprforge.service.dependencies import DaprDep, SettingsDep, get_dapr, get_settings
from daprforge.service.errors import problem
from daprforge.service.health import ReadyCheck, add_ready_check
from daprforge.service.logs import JsonFormatter, configure_logging
from daprforge.service.metrics import Metrics
from daprforge.service.security import DaprTokenVerifier, require_api_key, require_dapr_token
from daprforge.service.settings import ServiceSettings

__all__ = [
    "BackgroundTasks",
    "DaprDep",
    "DaprTokenVerifier",
    "JsonFormatter",
    "Metrics",
    "ReadyCheck",
    "ServiceSettings",
    "SettingsDep",
    "add_ready_check",
    "configure_logging",
    "create_app",
    "get_dapr",
    "get_settings",
    "problem",
    "require_api_key",
    "require_dapr_token",
]
