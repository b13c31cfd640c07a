"""The control-plane HTTP API (Starlette, served by uvicorn): :func:`build_app`.

``build_app(control_plane, route_groups=())`` mounts one route per enabled route binding with sbt-aws's
paths and envelopes, the core routes (``/health``, ``/openapi.json``, ``/events``, and the local auth
provider's ``/.well-known/jwks.json`` and ``/oauth2/token``), and any extra route groups, all behind the
same body limit, JWT authorizer, scope check and error mapping.
"""

from .app import BodyLimitMiddleware, ControlPlaneLike, Operation, build_app, error_response

__all__ = ["BodyLimitMiddleware", "ControlPlaneLike", "Operation", "build_app", "error_response"]
