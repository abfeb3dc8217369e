"""The Socket.IO transport: the old package's getToken/gotToken protocol and more."""

from adapters.socketio.chaining import HandlerConflict
from adapters.socketio.transport import SocketSessions
from application.errors import InvalidPayload  # where it lived before; kept importable from here

__all__ = ["HandlerConflict", "InvalidPayload", "SocketSessions"]
