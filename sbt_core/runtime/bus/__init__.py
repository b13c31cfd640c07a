"""The event bus (DESIGN.md section 3): :class:`Bus` with a transport seam (:class:`Transport`;
:class:`InProcessTransport` is the embedded default) and its HTTP routes (:func:`dead_letter_routes`)."""

from .core import Bus, DeadLetter, TargetInfo
from .handlers import Handler, error_text, hook_handler, is_retryable
from .routes import dead_letter_routes
from .transport import InProcessTransport, Message, Transport

__all__ = ["Bus", "DeadLetter", "Handler", "InProcessTransport", "Message", "TargetInfo", "Transport",
           "dead_letter_routes", "error_text", "hook_handler", "is_retryable"]
