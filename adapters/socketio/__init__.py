"""The Socket.IO transport: the old package's getToken/gotToken protocol and more."""

from adapters.socketio.transport import InvalidPayload, SocketSessions

__all__ = ["InvalidPayload", "SocketSessions"]
