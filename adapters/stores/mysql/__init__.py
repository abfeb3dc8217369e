"""The MySQL/MariaDB store: one job per module.

``config`` (the URL and bounds), ``connection`` (the pool, retries, time
bounds), ``errors`` (what error codes mean), ``statements`` (the SQL, from one
description of each row operation), ``batching`` (group commit and read
coalescing), ``schema`` (check, migrate, purge), ``store`` (the port methods),
``seed_import`` (the old package's table).
"""

from adapters.stores.mysql.config import MySQLConfig
from adapters.stores.mysql.errors import describe_mysql_error
from adapters.stores.mysql.statements import hexkey, json_path
from adapters.stores.mysql.store import MySQLStore

__all__ = ["MySQLConfig", "MySQLStore", "describe_mysql_error", "hexkey", "json_path"]
