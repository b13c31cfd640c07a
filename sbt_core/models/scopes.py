"""Scope names of the control-plane routes (SBT CognitoAuth's resource servers, plus sbt's own)."""

USER_READ = "user/user_read"
USER_WRITE = "user/user_write"
TENANT_READ = "tenant/tenant_read"
TENANT_WRITE = "tenant/tenant_write"
METER_READ = "meter/meter_read"
METER_WRITE = "meter/meter_write"
USAGE_READ = "usage/usage_read"
USAGE_WRITE = "usage/usage_write"
EVENT_READ = "event/event_read"
EVENT_WRITE = "event/event_write"

#: Every scope above, grouped by resource server as Cognito declares them.
RESOURCE_SERVERS: dict[str, tuple[str, ...]] = {
    "user": ("user_read", "user_write"),
    "tenant": ("tenant_read", "tenant_write"),
    "meter": ("meter_read", "meter_write"),
    "usage": ("usage_read", "usage_write"),
    "event": ("event_read", "event_write"),
}

ALL = tuple(f"{server}/{scope}" for server, names in RESOURCE_SERVERS.items() for scope in names)
