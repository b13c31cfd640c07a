"""How ``sbt serve`` writes its log: ``[server] log_format`` ``text`` (uvicorn's own lines) or ``json``.

In ``json`` every record — sbt's, uvicorn's and its access log's — is one JSON object per line on stderr
(python-json-logger): ``time``, ``level``, ``logger``, ``message``, plus the fields a line was logged with.
The bus's delivery lines (retries, dead letters, deliveries at debug level) carry ``binding`` (the bus
target: a hook, a core subscriber or a schedule), ``event_id`` (the first event of the line) and
``event_ids`` (every event of it), so a log pipeline can follow one event across its deliveries.
"""

from __future__ import annotations

from typing import Any

__all__ = ["delivery_fields", "uvicorn_log_config"]


def uvicorn_log_config(log_format: str, level: str) -> dict[str, Any]:
    """The ``log_config`` for ``uvicorn.Config``: uvicorn's own default for ``text``; for ``json`` a
    :func:`logging.config.dictConfig` dict that sends the root logger and uvicorn's loggers through one JSON
    handler. Root stays at WARNING as in text mode; uvicorn's loggers at ``level``."""
    if log_format != "json":
        from uvicorn.config import LOGGING_CONFIG

        return LOGGING_CONFIG
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["json"], "level": "WARNING"},
        "loggers": {
            "sbt": {"level": "INFO"},
            # uvicorn's loggers propagate to root's JSON handler instead of their own text ones.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": level.upper(), "propagate": True},
        },
    }


def delivery_fields(binding: str, event_ids: list[str]) -> dict[str, Any]:
    """The ``extra`` of a bus delivery line (see the module docstring)."""
    return {"binding": binding, "event_id": event_ids[0] if event_ids else None, "event_ids": event_ids}
