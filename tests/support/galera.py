"""A private 3-node MariaDB Galera cluster on this machine, to kill, stop and restart node by node.

Each node is a ``mariadbd`` of the test's own: its data directory, Unix socket, pid file and error
log under one folder, and four free ports on 127.0.0.1 (MySQL, Galera group communication,
incremental state transfer, rsync state transfer). Node 1 bootstraps the cluster; nodes 2 and 3
join it by a full state transfer (rsync). Nodes are numbered 1 to 3, as in the Galera docs.

    with GaleraCluster(tmp_path / "galera") as cluster:
        cluster.sql(1, "CREATE TABLE t (id INT PRIMARY KEY)")
        cluster.kill(2)                       # SIGKILL, as a crashed host
        cluster.wait_until(1, cluster_size=2)
        cluster.start(2)                      # rejoins (IST or SST), Synced, cluster size 3
        store_url = cluster.url               # mysql://user:pw@127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/db

Fault tests stop these nodes, never the shared server on 3306 nor another test's private one: every
process signalled is one this object started (its own process group, or the pid in its own pid file
when its command line names its own configuration file).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql
import pytest
from attrs import define, field, frozen

from tests.support.server import REPO, free_port

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
ENSURE_SCRIPT = REPO / "tests" / "support" / "ensure_galera.sh"
NODES = (1, 2, 3)
SYNC_TIMEOUT = 60.0  # a state transfer takes 2-5 s here; long enough for a loaded 2-core machine
_SOCKET_PATH_MAX = 100  # a Unix socket path must fit in 108 bytes
# Galera's defaults evict a node that stopped answering after evs.suspect_timeout (PT5S): until then
# every commit, and every read with wsrep_sync_wait, waits on the survivors (measured here: 6.0-6.3 s
# from SIGKILL to the next commit). With these, 3.0-3.4 s, idle or beside 4 busy loops.
# Galera's rules (gcomm/src/evs_proto.cpp), checked at start (a set it refuses may stop mariadbd with
# an unrelated-looking "Failed to read thread schedparams: System error: 3 (No such process)"):
# keepalive_period <= suspect_timeout / 3, inactive_check_period <= suspect_timeout / 2,
# keepalive_period <= install_timeout <= inactive_timeout; install_timeout defaults to inactive_timeout / 2.
# One rule it does not check: install_timeout well above suspect_timeout. After an eviction the
# survivors agree on the new view, and each must hear the other within install_timeout, or it
# declares it inactive and ends alone, non-primary (the two then stayed non-primary: quorum lost).
# The set used here before (suspect PT2S, inactive PT3S, so install PT1.5S) lost quorum after a
# SIGKILL in CI ("install timer expired"), and here whenever a survivor stalled during the change
# (SIGSTOP, as a loaded host pauses a process): quorum kept 0 of 5 times with a 1.0 s stall, 1 of 10
# with 1.5 s. These keep Galera's inactive and install timeouts: kept 10 of 10 with 1.5 s, 4 of 5 with
# 1.9 s. A stall past suspect_timeout evicts the stalled survivor too (kept 2 of 3 at 2.5 s, Galera's
# defaults 3 of 3): the price of a quick eviction.
QUICK_EVICTION = (
    "evs.keepalive_period=PT0.5S",
    "evs.suspect_timeout=PT2S",
    "evs.inactive_timeout=PT15S",
    "evs.install_timeout=PT7.5S",
)

Rows = tuple[tuple[Any, ...], ...]


class NodeNotSynced(RuntimeError):
    """A node did not reach the state asked for in time, or its ``mariadbd`` exited; says why from its log."""


def _binary(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)


def _missing() -> list[str]:
    needs: list[tuple[str, bool]] = [
        (str(PROVIDER), PROVIDER.exists()),
        ("rsync", _binary("rsync") is not None),
        ("ss or lsof", _binary("ss") is not None or _binary("lsof") is not None),
        ("wsrep_sst_rsync", _binary("wsrep_sst_rsync") is not None),
        ("mariadbd", _binary("mariadbd") is not None),
        ("mariadb-install-db", _binary("mariadb-install-db") is not None),
    ]
    return [name for name, present in needs if not present]


def ensure_installed() -> None:
    """Install what the cluster needs (tests/support/ensure_galera.sh), or fail the test saying what to install."""
    if not _missing():
        return
    result = subprocess.run([str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    still = _missing()
    if result.returncode != 0 or still:
        lines = result.stderr.strip().splitlines()
        pytest.fail(lines[-1] if lines else f"Galera cluster tests: {', '.join(still)} missing", pytrace=False)


def _os_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


@frozen
class NodeStatus:
    """What a node says of itself, from its wsrep status variables."""

    state: str  # wsrep_local_state_comment: Synced, Joining, Joined, Donor/Desynced…
    cluster_size: int  # wsrep_cluster_size
    cluster_status: str  # wsrep_cluster_status: Primary, non-Primary or Disconnected
    cluster_uuid: str  # wsrep_cluster_state_uuid: one history; a second bootstrap would start another

    @property
    def synced(self) -> bool:
        return self.state == "Synced" and self.cluster_status == "Primary"


def _unique_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@define
class GaleraNode:
    """One ``mariadbd`` of the cluster; its files live in ``workdir``."""

    number: int
    workdir: Path
    port: int
    group_port: int
    ist_port: int
    sst_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket(self) -> Path:
        return self.workdir / "mariadbd.sock"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "mariadbd.pid"

    @property
    def config(self) -> Path:
        return self.workdir / "my.cnf"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self, cluster_address: str, provider_options: tuple[str, ...]) -> None:
        options = ";".join(
            (
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.group_port}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                # The ring buffer that serves IST to a node coming back; preallocated, so kept small.
                "gcache.size=32M",
                *provider_options,
            )
        )
        # Read with --defaults-file only: the rsync SST script reads the same file, and must never
        # see /etc/mysql/my.cnf (datadir=/var/lib/mysql, the shared server's).
        lines = [
            "[mysqld]",
            *([f"user={_os_user()}"] if os.geteuid() == 0 else []),  # mariadbd refuses root without it
            f"datadir={self.datadir}",
            f"socket={self.socket}",
            f"pid-file={self.pid_file}",
            f"log-error={self.error_log}",
            f"port={self.port}",
            "bind-address=127.0.0.1",
            "skip-name-resolve",
            # As the shared server, so the store sees the same defaults.
            "character-set-server=utf8mb4",
            "collation-server=utf8mb4_general_ci",
            "innodb_buffer_pool_size=64M",
            "innodb_log_file_size=32M",
            "binlog_format=ROW",
            "default_storage_engine=InnoDB",
            "innodb_autoinc_lock_mode=2",
            "wsrep_on=ON",
            f"wsrep_provider={PROVIDER}",
            "wsrep_cluster_name=socketio_session_test",
            f"wsrep_cluster_address={cluster_address}",
            f"wsrep_node_name=node{self.number}",
            f"wsrep_node_address=127.0.0.1:{self.group_port}",
            "wsrep_sst_method=rsync",
            f"wsrep_sst_receive_address=127.0.0.1:{self.sst_port}",
            f'wsrep_provider_options="{options}"',
            "",
        ]
        self.config.write_text("\n".join(lines))

    def launch(self, *, new_cluster: bool, env: dict[str, str]) -> None:
        with self.error_log.open("ab") as log:
            self.process = subprocess.Popen(
                [_binary("mariadbd") or "mariadbd", f"--defaults-file={self.config}"]
                + (["--wsrep-new-cluster"] if new_cluster else []),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own process group: a kill takes the SST script and rsync daemon it runs along.
                start_new_session=True,
            )

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def wait_exit(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill_leftover(self) -> None:
        """SIGKILL the pid in the pid file, if that process runs this node's configuration (no other)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.config).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_lines(self) -> list[str]:
        try:
            return self.error_log.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_lines()[-lines:]) or "(empty)"

    def log_errors(self, lines: int = 8) -> list[str]:
        # A failed state transfer is explained in the donor's log (rsync's own messages), not the joiner's.
        return [line for line in self.log_lines() if "[ERROR]" in line or line.startswith("rsync")][-lines:]

    def connect(self, database: str | None = None) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        # As the operating-system user over the Unix socket (unix_socket authentication): the
        # cluster's administrator, never reachable over TCP.
        return pymysql.connect(
            unix_socket=str(self.socket),
            user=_os_user(),
            database=database,
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
            write_timeout=30,
        )

    def status(self) -> NodeStatus:
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SHOW GLOBAL STATUS WHERE Variable_name IN"
                " ('wsrep_local_state_comment', 'wsrep_cluster_size', 'wsrep_cluster_status',"
                " 'wsrep_cluster_state_uuid')"
            )
            values = {str(name): str(value) for name, value in cursor.fetchall()}
        return NodeStatus(
            state=values.get("wsrep_local_state_comment", ""),
            cluster_size=int(values.get("wsrep_cluster_size", "0") or 0),
            cluster_status=values.get("wsrep_cluster_status", ""),
            cluster_uuid=values.get("wsrep_cluster_state_uuid", ""),
        )


def _make_nodes(workdir: Path) -> tuple[GaleraNode, ...]:
    nodes = []
    for number in NODES:
        port, group_port, ist_port, sst_port = _unique_ports(4)
        nodes.append(GaleraNode(number, workdir / f"node{number}", port, group_port, ist_port, sst_port))
    return tuple(nodes)


@define
class GaleraCluster:
    """Three ``mariadbd`` in one Galera cluster, under ``workdir``; started by ``open()`` or ``with``.

    ``url`` names all three nodes (what ``SESSION_STORE_URL`` takes for a cluster), ``node_url(i)`` one.
    The database and its TCP user are created on node 1 and replicated. ``provider_options`` are
    appended to ``wsrep_provider_options`` (e.g. ``QUICK_EVICTION``).
    """

    workdir: Path
    database: str = "socketio_session_test"
    user: str = "socketio_session_test"
    password: str = "socketio_session_test"
    provider_options: tuple[str, ...] = ()
    sync_timeout: float = SYNC_TIMEOUT
    nodes: tuple[GaleraNode, ...] = field(init=False)
    env: dict[str, str] = field(init=False, factory=dict)  # the nodes' environment (PATH)

    def __attrs_post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.nodes = _make_nodes(self.workdir)
        if len(str(self.nodes[0].socket)) > _SOCKET_PATH_MAX:
            raise ValueError(f"{self.workdir} is too deep for a Unix socket path; use a shorter folder")

    @property
    def ports(self) -> tuple[int, ...]:
        """The MySQL ports of nodes 1, 2 and 3."""
        return tuple(node.port for node in self.nodes)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"mysql://{self.user}:{self.password}@{hosts}/{self.database}"

    def node_url(self, i: int) -> str:
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.node(i).port}/{self.database}"

    def node(self, i: int) -> GaleraNode:
        if i not in NODES:
            raise ValueError(f"Galera nodes are numbered 1 to 3, not {i}")
        return self.nodes[i - 1]

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> GaleraCluster:
        """Install node 1, bootstrap the cluster on it, join nodes 2 and 3, create the database and user."""
        ensure_installed()
        cluster_address = "gcomm://" + ",".join(f"127.0.0.1:{node.group_port}" for node in self.nodes)
        for node in self.nodes:
            node.datadir.mkdir(parents=True)
            node.write_config(cluster_address, self.provider_options)
        self.env = self._environment()
        # Only node 1 needs system tables: the joiners receive node 1's whole data directory by SST.
        first = self.nodes[0]
        self._install(first)
        try:
            first.launch(new_cluster=True, env=self.env)
            self.wait_until(1, cluster_size=1)
            self._create_database_and_user()
            # One joiner at a time: two joining at once churn their group connections for seconds
            # ("reconnecting to …", "declaring … stable") and wait for the one donor in turn anyway.
            for node in self.nodes[1:]:
                node.launch(new_cluster=False, env=self.env)
                self.wait_until(node.number, cluster_size=node.number)
            for i in NODES:
                self.wait_until(i, cluster_size=len(NODES))
        except BaseException:
            self.close()
            raise
        return self

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if os.geteuid() != 0:
            return env
        # The joiner's rsync SST runs an rsync daemon as the server's user. Started by root, that
        # daemon switches to "nobody" for the transfer, which may not write the joiner's data
        # directory: the donor's rsync stops with 'mkdir "mysql" (in rsync_sst) failed: Permission
        # denied (13)' and the joiner aborts. The rsync below, first on the nodes' PATH, keeps root.
        bin_dir = self.workdir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        wrapper = bin_dir / "rsync"
        rsync = _binary("rsync") or "/usr/bin/rsync"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'case " $* " in *" --daemon "*) exec {rsync} "$@" --dparam=uid=0 --dparam=gid=0 ;; esac\n'
            f'exec {rsync} "$@"\n'
        )
        wrapper.chmod(0o755)
        # mariadbd puts <basedir>/bin ("/usr//bin") first on the PATH of its SST script unless the
        # PATH already holds that string; naming it after our folder keeps our rsync first.
        env["PATH"] = os.pathsep.join((str(bin_dir), "/usr//bin", env.get("PATH", "/usr/bin:/bin")))
        return env

    def _install(self, node: GaleraNode) -> None:
        result = subprocess.run(
            [
                _binary("mariadb-install-db") or "mariadb-install-db",
                "--no-defaults",
                f"--datadir={node.datadir}",
                *([f"--user={_os_user()}"] if os.geteuid() == 0 else []),
                # root (and the OS user) log in over the Unix socket only.
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--innodb-log-file-size=32M",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def _create_database_and_user(self) -> None:
        for statement in (
            f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'",
            f"GRANT ALL PRIVILEGES ON `{self.database}`.* TO '{self.user}'@'127.0.0.1'",
        ):
            self.sql(1, statement)

    def start(self, i: int) -> None:
        """Start a stopped or killed node; it rejoins the running nodes (IST, or SST after a crash), never bootstraps.

        Returns once the node is Synced and the cluster has all three nodes again.
        """
        node = self.node(i)
        if node.running:
            raise RuntimeError(f"node {i} is already running")
        if not any(other.running for other in self.nodes):
            raise RuntimeError(f"node {i} cannot rejoin: no node of the cluster is running")
        node.launch(new_cluster=False, env=self.env)
        self.wait_until(i, cluster_size=len(NODES))
        for other in self.nodes:
            if other.running and other is not node:
                self.wait_until(other.number, cluster_size=len(NODES))

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (and any state transfer it runs), as a crashed host; returns once it is gone."""
        node = self.node(i)
        node.signal(signal.SIGKILL)
        node.wait_exit(30)
        node.process = None

    def stop(self, i: int, timeout: float = 60) -> None:
        """Shut node ``i`` down cleanly (SIGTERM: it leaves the cluster and saves its position for IST)."""
        node = self.node(i)
        node.signal(signal.SIGTERM)
        if not node.wait_exit(timeout):
            node.signal(signal.SIGKILL)
            node.wait_exit(30)
            raise RuntimeError(f"node {i} did not shut down within {timeout}s; killed. {self._explain(i)}")
        node.process = None

    def close(self) -> None:
        """Stop every node (SIGTERM, SIGKILL past 30 s); also any leftover found by pid file. Removes no file."""
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in self.nodes:
            if not node.wait_exit(max(0.0, deadline - time.monotonic())):
                node.signal(signal.SIGKILL)
                node.wait_exit(30)
            node.process = None
            node.kill_leftover()

    def __enter__(self) -> GaleraCluster:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- looking at nodes ------------------------------------------------------------------------

    def status(self, i: int) -> NodeStatus:
        """wsrep_local_state_comment, wsrep_cluster_size and wsrep_cluster_status of node ``i``, over its socket."""
        return self.node(i).status()

    def sql(self, i: int, statement: str, args: tuple[Any, ...] = ()) -> Rows:
        """Run one statement on node ``i`` as its administrator (Unix socket, autocommit); returns the rows."""
        with self.node(i).connect() as conn, conn.cursor() as cursor:
            cursor.execute(statement, args or None)
            return tuple(cursor.fetchall())

    def admin(self, i: int, database: str | None = None) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A connection to node ``i`` as its administrator (Unix socket, autocommit), for several statements."""
        return self.node(i).connect(database)

    def client(self, i: int) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A connection to node ``i`` over TCP as the tests' user, in the tests' database (autocommit)."""
        return pymysql.connect(
            host="127.0.0.1",
            port=self.node(i).port,
            user=self.user,
            password=self.password,
            database=self.database,
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
            write_timeout=30,
        )

    def wait_until(
        self,
        i: int,
        *,
        cluster_size: int = len(NODES),
        state: str = "Synced",
        timeout: float | None = None,
    ) -> NodeStatus:
        """Wait until node ``i`` is in ``state`` and Primary in a cluster of ``cluster_size``; NodeNotSynced if not."""
        node = self.node(i)
        timeout = self.sync_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last: NodeStatus | str = "not answering"
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise NodeNotSynced(f"node {i} (mariadbd) exited with {node.process.returncode}. {self._explain(i)}")
            try:
                last = node.status()
            except pymysql.err.MySQLError as error:
                last = f"not answering ({error})"
            if isinstance(last, NodeStatus) and (
                last.state == state and last.cluster_size == cluster_size and last.cluster_status == "Primary"
            ):
                return last
            if time.monotonic() >= deadline:
                raise NodeNotSynced(
                    f"node {i} not {state} in a cluster of {cluster_size} within {timeout:.0f}s"
                    f" (last: {last}). {self._explain(i)}"
                )
            time.sleep(0.2)

    def _explain(self, i: int) -> str:
        parts = [f"Node {i}'s error log ({self.node(i).error_log}) ends:\n{self.node(i).log_tail()}"]
        for other in self.nodes:
            if other.number != i and (errors := other.log_errors()):
                parts.append(f"Errors in node {other.number}'s log ({other.error_log}):\n" + "\n".join(errors))
        return "\n".join(parts)


def galera_cluster(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[GaleraCluster]:
    """The body of a cluster fixture: starts a cluster in a fresh temp folder, yields it, stops it.

        @pytest.fixture(scope="module")
        def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
            yield from galera_cluster(tmp_path_factory)

    ``options`` go to ``GaleraCluster`` (e.g. ``provider_options=QUICK_EVICTION``).
    """
    started = time.monotonic()
    with GaleraCluster(tmp_path_factory.mktemp("galera"), **options) as cluster:
        print(f"\ngalera: 3 nodes Synced in {time.monotonic() - started:.1f}s (MySQL ports {cluster.ports})")
        yield cluster
