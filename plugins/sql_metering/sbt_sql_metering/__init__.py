"""sbt provider ``sql`` (IMetering): ``memory``'s exact semantics in PostgreSQL (many processes) or SQLite.

Select it with ``[providers.metering] type = "sql"``; settings are :class:`SqlMeteringSettings`.
"""

from .provider import SqlMetering
from .settings import SqlMeteringSettings

__all__ = ["SqlMetering", "SqlMeteringSettings"]
