"""Where the MySQL store connects, and its bounds: read from a ``mysql://`` URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from attrs import frozen

from adapters.stores.ddl import DEFAULT_TABLE

_UNREADABLE_URL = (
    "cannot read user:password@host:port/database from the mysql:// URL: the port must be a number up to 65535, and"
    " a user or password holding # / ? @ : must be percent-encoded (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A)"
)


Node = tuple[str, int]


@frozen
class MySQLConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    # Every node the URL names (``h1:3306,h2:3306,...``), in order; empty means just host:port.
    # The store uses one at a time and moves to the next when it stops answering (connection.py).
    hosts: tuple[Node, ...] = ()
    user: str = "root"
    password: str = ""
    database: str = "test"
    table: str = DEFAULT_TABLE
    pool_size: int = 10
    # The longest one operation may take, waiting for a pooled connection and
    # retries included, before it reports StoreUnavailable instead of hanging
    # (a stopped or frozen server must not stall the clients).
    operation_timeout: float = 1.5
    connect_timeout: float = 1.0
    recycle: int = 3600
    # How long InnoDB lets a statement wait for a row lock before error 1205 (retried).
    lock_wait_timeout: int = 1
    # On a Galera cluster, reads wait until the node has applied every write the cluster
    # acknowledged before they started (wsrep_sync_wait = 1): a session written through one
    # node is read back through another. False only to measure what it costs.
    causal_reads: bool = True

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes to try, in order (one for a single-host URL)."""
        return self.hosts or ((self.host, self.port),)

    @property
    def where(self) -> str:
        """``host:port`` (every node, comma-separated, for several), for messages: never the credentials."""
        return ",".join(node_name(node) for node in self.nodes)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MySQLConfig:
        """``mysql://user:password@host:port/database`` (user, password, port optional).

        Several nodes are comma-separated: ``mysql://user:password@h1:3306,h2:3306,h3/database``.
        """
        url, nodes = _several_nodes(url)
        if nodes:
            overrides = {"hosts": nodes, **overrides}
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ValueError(f"not a mysql:// URL: scheme {parts.scheme!r}")
        # Neither message echoes any part of the URL: any piece of it may be a piece of the password.
        try:
            port = parts.port
        except ValueError:
            raise ValueError(_UNREADABLE_URL) from None
        # urlsplit ends the credentials at the first `#`, `/` or `?`: the rest of a password holding
        # one lands in the fragment, the path or the query, and a numeric start of it passes as the
        # port. Our URLs have no query or fragment, and no database name holds `@`.
        if parts.query or parts.fragment or "@" in parts.path:
            raise ValueError(_UNREADABLE_URL)
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("the mysql:// URL names no database (mysql://user:pass@host:3306/DATABASE)")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
            **overrides,
        )


def node_name(node: Node) -> str:
    """``host:port`` (``[v6]:port``), for messages and the health check."""
    host, port = node
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _several_nodes(url: str) -> tuple[str, tuple[Node, ...]]:
    """``url`` with only its first node, and every node it names, when it names more than one.

    urlsplit reads one host; the user and password end at the last ``@`` of
    the authority (a password's own ``@`` is percent-encoded).
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    credentials, at, hostlist = authority.rpartition("@")
    if not sep or "," not in hostlist:
        return url, ()
    nodes: list[Node] = []
    for item in hostlist.split(","):
        try:
            parsed = urlsplit(f"//{item}")
            port = parsed.port
        except ValueError:
            raise ValueError(_UNREADABLE_URL) from None
        if not item or not parsed.hostname:
            raise ValueError("a mysql:// URL naming several nodes needs host[:port] for each, comma-separated")
        nodes.append((parsed.hostname, port or 3306))
    first = hostlist.split(",")[0]
    return f"{scheme}://{credentials}{at}{first}{slash}{tail}", tuple(nodes)
