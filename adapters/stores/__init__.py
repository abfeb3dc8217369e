"""Session stores: implementations of :class:`application.ports.SessionStore`."""
