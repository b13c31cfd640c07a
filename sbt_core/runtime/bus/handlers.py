"""What a bus target runs: a binding's hook as a handler (:func:`hook_handler`, and its batch form
:func:`batch_handler`), the handler's result as JSON for the log, and the error policy of delivery
(:func:`is_retryable`, :func:`error_text`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import BadRequestError, ProviderError, SbtError
from ...hookspecs import BATCH_FORMS, CONTRACT, EventArgument, parse_each
from ...models import Event, to_json

if TYPE_CHECKING:
    from ...plugins import Providers

__all__ = ["BatchHandler", "Handler", "batch_handler", "error_text", "hook_handler", "is_retryable", "result_json"]

#: Delivers one event; its return value is recorded in the log, an exception is a failed attempt.
Handler = Callable[[Event], Any]


def hook_handler(providers: Providers, hook: str) -> Handler:
    """A handler calling event hook ``hook`` on its selected provider (errors as :meth:`Providers.call`)."""
    to_kwargs = CONTRACT[hook].event_kwargs
    call = providers.call

    def handle(event: Event) -> Any:
        return call(hook, **to_kwargs(event))

    handle.__qualname__ = f"hook:{hook}"
    return handle


#: Delivers many events in one call: one outcome per event, in order (None: delivered).
BatchHandler = Callable[[list[Event]], list[Exception | None]]


def batch_handler(providers: Providers, hook: str) -> BatchHandler | None:
    """A handler calling the batch form of event hook ``hook`` (see ``BATCH_FORMS``) for many events at
    once, or None when the hook has none or the selected provider does not implement it.

    It answers one outcome per event, in order: None (delivered) or the exception of that event — a
    detail the hook cannot take (parsed as the single hook would), or the provider's refusal as a
    :class:`BadRequestError`. An exception raised by the call itself concerns the whole batch.
    """
    row = CONTRACT[hook]
    if row.batch_hook is None or not providers.implements(row.batch_hook):
        return None
    batch, argument, call = row.batch_hook, BATCH_FORMS[row.batch_hook].argument, providers.call
    to_kwargs = row.event_kwargs
    if isinstance(to_kwargs, EventArgument):
        parse, parse_many = to_kwargs.parse, to_kwargs.parse_many
    else:
        def parse(event: Event) -> Any:
            return next(iter(to_kwargs(event).values()))

        parse_many = parse_each(parse)

    def refusals(items: list[Any]) -> list[Exception | None]:
        """The batch hook called on ``items``: per item, None (recorded) or the provider's refusal."""
        answers = call(batch, **{argument: items})
        if len(answers) != len(items):
            raise ProviderError(f"{batch} answered {len(answers)} outcomes for {len(items)} events")
        return [None if answer is None else BadRequestError(str(answer)) for answer in answers]

    def handle(events: list[Event]) -> list[Exception | None]:
        try:  # the usual case, every event parses: the whole batch at once
            items = parse_many(events)
        except Exception:  # noqa: BLE001 - some event does not: find which, one at a time
            pass
        else:
            return refusals(items)
        outcomes: list[Exception | None] = [None] * len(events)
        items, positions = [], []
        for i, event in enumerate(events):
            try:
                items.append(parse(event))
            except Exception as exc:  # noqa: BLE001 - this event's own failure, as the single hook would see it
                outcomes[i] = exc
                continue
            positions.append(i)
        if items:
            for i, refusal in zip(positions, refusals(items), strict=True):
                outcomes[i] = refusal
        return outcomes

    handle.__qualname__ = f"batch:{batch}"
    return handle


def result_json(result: Any) -> Any:
    """A handler's return value as JSON for the event log: records in their camelCase form; anything
    that is not JSON-serialisable becomes its ``repr``."""
    data = to_json(result)
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        return repr(result)
    return data


def error_text(exc: BaseException) -> str:
    """The message an error leaves in the log: an SbtError's own (safe to show) message, else the type
    and text of the unexpected exception."""
    if isinstance(exc, SbtError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def is_retryable(exc: BaseException) -> bool:
    """Retry SbtErrors that say so (``ProviderError``) and anything unexpected; never a BadRequestError."""
    return exc.retryable if isinstance(exc, SbtError) else True
