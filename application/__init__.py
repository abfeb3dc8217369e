"""Use cases: the handshake and the session handle, over ports for the store and clock.

Imports the domain and the standard library only, so any transport (Socket.IO,
a plain websocket, HTTP) can drive it.
"""
