"""sbt: a SaaS Builder Toolkit control plane in Python.

The contract (hookspecs mirroring SBT's IAuth, IBilling and IMetering) is at the centre; providers are
plugins discovered through the ``sbt`` entry-point group. Import what a plugin author needs from here::

    from sbt_core import hookimpl, Provider, ProviderContext
    from sbt_core.models import Meter, UsageEvent
"""

from importlib import metadata as _metadata

from ._markers import hookimpl
from .errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    NotImplementedHookError,
    PayloadTooLargeError,
    PluginError,
    ProviderError,
    SbtError,
    StartupError,
    UnauthorizedError,
    UnavailableError,
)
from .provider import NoSettings, Provider, ProviderContext

try:
    __version__ = _metadata.version("sbt-core")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "BadRequestError", "ConfigError", "ConflictError", "ForbiddenError", "NoSettings", "NotFoundError",
    "NotImplementedHookError", "PayloadTooLargeError", "PluginError", "Provider", "ProviderContext",
    "ProviderError", "SbtError", "StartupError", "UnauthorizedError", "UnavailableError", "__version__",
    "hookimpl",
]
