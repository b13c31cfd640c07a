"""sbt provider 'cognito' (IAuth). Its hooks are written in the provider's own issue."""

from sbt_core import Provider


class CognitoAuth(Provider):
    """IAuth provider 'cognito' (not implemented yet: selecting it fails at start-up)."""
