"""sbt provider 'stripe' (IBilling). Its hooks are written in the provider's own issue."""

from sbt_core import Provider


class StripeBilling(Provider):
    """IBilling provider 'stripe' (not implemented yet: selecting it fails at start-up)."""
