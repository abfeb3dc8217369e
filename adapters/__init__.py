"""Adapters: the Socket.IO transport and the session stores (MySQL, SQLite, memory)."""
