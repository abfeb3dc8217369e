"""What MySQL's error codes mean to the store: retry, report the store unavailable, or raise as a bug.

The one place that reads error codes (never message text; docs/decisions.md).
"""

from __future__ import annotations

import pymysql
from pymysql.constants import ER

from application.errors import StoreUnavailable

# Errors after which the statement certainly did not take effect: the server
# rolled it back (deadlock, lock wait timeout) or we never reached it.
ROLLED_BACK = {ER.LOCK_DEADLOCK, ER.LOCK_WAIT_TIMEOUT}
NOT_SENT = {2002, 2003, 1040, 1203}  # cannot connect (socket, TCP), too many connections
# A Galera node that is not part of the primary component, or still joining, refuses every
# statement with 1047 (ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node for application use").
NODE_NOT_READY = {1047}
# The connection died under the statement; it may or may not have run.
CONNECTION_LOST = {2006, 2013, 2055, 1927, 4031}  # gone, lost, lost reading, killed, idle timeout
SHUTTING_DOWN = {1053, 1077, 1078, 1079, 1080}  # server shutdown in progress
# "The store is unreachable right now". With REFUSED and NOT_PERMITTED below, the
# only errors reported as StoreUnavailable; any other is a bug (ours or the
# server's) and is raised as such, not disguised.
UNAVAILABLE = ROLLED_BACK | NOT_SENT | CONNECTION_LOST | SHUTTING_DOWN | NODE_NOT_READY
# Signs that the node in use cannot serve us now, whatever the statement: with several nodes
# the store moves to the next one (connection.py). A read-only server (1290) is one of them
# only then: a standby not yet promoted, while a lone server's read-only mode is a refusal.
NODE_DOWN = NOT_SENT | CONNECTION_LOST | SHUTTING_DOWN | NODE_NOT_READY
# MySQL refused us: the account, the database, a grant or the server's mode is
# wrong. Nothing ran, and retrying cannot help until someone changes the URL,
# the grants or the server, so these are reported at once, never retried.
REFUSED = {
    ER.DBACCESS_DENIED_ERROR,  # 1044: no access to that database (or it does not exist)
    ER.ACCESS_DENIED_ERROR,  # 1045: wrong user or password
    ER.BAD_DB_ERROR,  # 1049: no such database
    ER.HOST_IS_BLOCKED,  # 1129: too many failed connects from this host
    ER.HOST_NOT_PRIVILEGED,  # 1130: this host may not connect
    ER.USER_LIMIT_REACHED,  # 1226: an account resource limit
    ER.NOT_SUPPORTED_AUTH_MODE,  # 1251
    ER.OPTION_PREVENTS_STATEMENT,  # 1290: e.g. a read-only server (a replica, a primary being failed over)
    1698,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR (e.g. root over TCP where only the Unix socket is allowed)
    ER.MUST_CHANGE_PASSWORD_LOGIN,  # 1862: the password expired
    3118,  # MySQL 8: account locked
    4151,  # MariaDB: account locked
    2059,  # CR_AUTH_PLUGIN_CANNOT_LOAD: the account's authentication plugin is not supported by the driver
}
# A statement needs a privilege the account lacks (e.g. `migrate` without CREATE).
NOT_PERMITTED = {
    ER.TABLEACCESS_DENIED_ERROR,  # 1142
    ER.COLUMNACCESS_DENIED_ERROR,  # 1143
    ER.SPECIFIC_ACCESS_DENIED_ERROR,  # 1227
}
# The deliberate signals of our own statements (statements.py): a JSON function that
# yields NULL for a key the server cannot address makes strict mode refuse the NOT NULL
# `data` column; a session that would grow past its size limit overflows `version`.
UNADDRESSABLE_KEY = ER.BAD_NULL_ERROR  # 1048
TOO_LARGE = 1690  # ER_DATA_OUT_OF_RANGE: BIGINT UNSIGNED value is out of range


def error_code(exc: BaseException | None) -> int | None:
    """The MySQL error number of ``exc``, or None for anything else."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _text(exc: BaseException) -> str:
    """The message of ``exc`` on one line: the server's own words for a MySQL error, without the code.

    Server messages name the user, host and database, never the password.
    """
    said = exc.args[1] if error_code(exc) is not None and len(exc.args) > 1 else exc
    text = " ".join(str(said).split()) or type(exc).__name__
    if isinstance(exc, pymysql.err.MySQLError) and isinstance(cause := exc.__cause__, OSError):
        # The driver's "Can't connect" (2003) keeps the reason in its cause: refused, timed out, unknown host.
        text += f" ({' '.join(str(cause).split()) or type(cause).__name__})"
    return text


def said(exc: BaseException) -> str:
    """``(1045) Access denied for user ...``, or ``ConnectionResetError: ...`` for an error without a code."""
    code = error_code(exc)
    return f"({code}) {_text(exc)}" if code else f"{type(exc).__name__}: {_text(exc)}"


def describe_mysql_error(exc: pymysql.err.MySQLError) -> str:
    """One line for a MySQL error the store did not name (a bug, or something unforeseen): ``MySQL error 1054: ...``."""
    code = error_code(exc)
    return f"MySQL error {code}: {_text(exc)}" if code else f"MySQL error ({type(exc).__name__}): {_text(exc)}"


def unavailable(exc: BaseException, where: str, timeout: float) -> StoreUnavailable:
    """StoreUnavailable for an error known to be about reaching the server ``where``, in its own words."""
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"MySQL at {where} did not answer within {timeout} s")
    if error_code(exc) in NOT_SENT:
        return StoreUnavailable(f"cannot reach MySQL at {where}: {said(exc)}")
    return StoreUnavailable(f"MySQL at {where} failed: {said(exc)}")


def store_error(exc: BaseException, where: str, timeout: float) -> StoreUnavailable | None:
    """The named error for a failure of the store itself, or None for any other error.

    Decides, by error code, what counts as "the store is unavailable":
    unreachable, lost, shutting down, retried to the end, or refusing this
    account. None means a bug (ours or the server's), raised as it is.
    """
    code = error_code(exc)
    if code in REFUSED or code in NOT_PERMITTED:
        return StoreUnavailable(f"MySQL at {where} refused: {said(exc)}")
    if isinstance(exc, pymysql.err.InterfaceError | OSError) or code in UNAVAILABLE:
        return unavailable(exc, where, timeout)
    return None
