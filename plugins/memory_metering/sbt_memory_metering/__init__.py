"""sbt provider ``memory`` (IMetering): an exact, fast metering engine in one process's memory.

Select it with ``[providers.metering] type = "memory"``; settings are :class:`MemoryMeteringSettings`.
"""

from ._engine import ColumnsResult, IngestResult
from .provider import MemoryMetering
from .settings import MemoryMeteringSettings

__all__ = ["ColumnsResult", "IngestResult", "MemoryMetering", "MemoryMeteringSettings"]
