"""sbt provider 'memory' (IMetering). Its hooks are written in the provider's own issue."""

from sbt_core import Provider


class MemoryMetering(Provider):
    """IMetering provider 'memory' (not implemented yet: selecting it fails at start-up)."""
