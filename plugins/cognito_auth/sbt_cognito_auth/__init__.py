"""sbt provider ``cognito``: IAuth on Amazon Cognito (sbt-aws's CognitoAuth, in Python with boto3).

Entry point ``[project.entry-points.sbt] cognito = "sbt_cognito_auth:CognitoAuth"``; settings are
:class:`CognitoSettings`; ``sbt cognito bootstrap`` creates a pool and prints the config block.
"""

from .provider import CognitoAuth
from .settings import CognitoSettings, is_loopback_url

__all__ = ["CognitoAuth", "CognitoSettings", "is_loopback_url"]
