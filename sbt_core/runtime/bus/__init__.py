"""The event bus (docs/design.md section 3): :class:`Bus` with a transport seam (:class:`Transport`:
:class:`SqliteTransport`, durable, what ``sbt serve`` uses; :class:`InProcessTransport`, in memory), a
dead-letter store seam (:class:`DeadLetterStore`: :class:`MemoryDeadLetters`, or :class:`SqlDeadLetters`
that outlives the process) and its HTTP routes (:func:`dead_letter_routes`)."""

from .core import Bus, DeadLetterReason, DeliveryObserver, TargetInfo
from .dead_letters import DeadLetter, DeadLetterStore, MemoryDeadLetters, SqlDeadLetters
from .handlers import Handler, error_text, hook_handler, is_retryable
from .routes import dead_letter_routes
from .sqlite_transport import SqliteTransport
from .transport import InProcessTransport, Message, Transport

__all__ = ["Bus", "DeadLetter", "DeadLetterReason", "DeadLetterStore", "DeliveryObserver", "Handler",
           "InProcessTransport", "MemoryDeadLetters", "Message", "SqlDeadLetters", "SqliteTransport", "TargetInfo",
           "Transport", "dead_letter_routes", "error_text", "hook_handler", "is_retryable"]
