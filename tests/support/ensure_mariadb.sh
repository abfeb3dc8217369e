#!/usr/bin/env bash
# Print a MySQL URL for the integration and end-to-end tests, making sure the
# server behind it is up and that the tests have a database and user of their
# own (they never write into `test`). Reuses SESSION_TEST_MYSQL_URL when set.
# Fails loudly, never silently, when no server can be found.
set -euo pipefail

if [ -n "${SESSION_TEST_MYSQL_URL:-}" ]; then
  echo "$SESSION_TEST_MYSQL_URL"
  exit 0
fi

db=socketio_session_test
user=socketio_session_test
password=socketio_session_test
host=127.0.0.1
port=3306

client=$(command -v mariadb || command -v mysql || true)
if [ -z "$client" ]; then
  echo "ensure_mariadb: no mariadb/mysql client on PATH. Install MariaDB (apt-get install mariadb-server)" \
       "or set SESSION_TEST_MYSQL_URL=mysql://user:password@host:port/database." >&2
  exit 1
fi

up() { "$client" -uroot --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1; }

if ! up; then
  daemon=$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd /usr/sbin/mysqld 2>/dev/null | head -n1 || true)
  if [ -z "$daemon" ]; then
    echo "ensure_mariadb: no MariaDB/MySQL server is running and none is installed." \
         "Install mariadb-server, or set SESSION_TEST_MYSQL_URL." >&2
    exit 1
  fi
  echo "ensure_mariadb: starting $daemon" >&2
  start-stop-daemon --start --oknodo --background --exec "$daemon" >&2
  for _ in $(seq 1 60); do up && break; sleep 0.5; done
  if ! up; then
    echo "ensure_mariadb: started $daemon but it does not answer as root over the local socket." >&2
    exit 1
  fi
fi

# root may only log in over the Unix socket; the tests use a TCP user of their own.
"$client" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password';
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`$db\`.* TO '$user'@'localhost';
SQL

echo "mysql://$user:$password@$host:$port/$db"
