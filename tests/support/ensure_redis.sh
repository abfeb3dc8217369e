#!/usr/bin/env bash
# Print a Redis URL for the several-process tests (python-socketio's message
# queue and the session relay), starting a local redis-server if none answers.
# Reuses SESSION_TEST_REDIS_URL when set. Fails loudly when there is no Redis.
set -euo pipefail

if [ -n "${SESSION_TEST_REDIS_URL:-}" ]; then
  echo "$SESSION_TEST_REDIS_URL"
  exit 0
fi

up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v redis-cli >/dev/null || ! up; then
  if ! command -v redis-server >/dev/null; then
    echo "ensure_redis: no Redis answers on 127.0.0.1:6379 and redis-server is not installed." \
         "Install redis-server, or set SESSION_TEST_REDIS_URL=redis://host:port/0." >&2
    exit 1
  fi
  echo "ensure_redis: starting redis-server" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
  for _ in $(seq 1 40); do up && break; sleep 0.25; done
  up || { echo "ensure_redis: redis-server did not come up" >&2; exit 1; }
fi

echo "redis://127.0.0.1:6379/0"
