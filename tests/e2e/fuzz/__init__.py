"""Fuzz the wire protocol through a real server with what a broken or hostile client may send.

Hypothesis drives one long-lived python-socketio client per test against a real uvicorn
server, on the embedded SQLite store and on MariaDB, with the per-socket ``getToken`` limit
raised so that it does not answer everything with "Too Many Requests". An example is a short
sequence of events (in the burst test, a burst of concurrent ones) with payloads of every
shape: wrong types, nested junk, NaN and Infinity, bytes, huge strings and integers, unicode
with 4-byte emoji and lone surrogates, tokens of every length and alphabet, SQL and JSON-path
metacharacters, extra arguments (tests/support/wire_strategies.py). The test keeps a model of
the sessions its socket holds (token, data, owner), so most answers are checked exactly, not
only for their shape.

The modules:

- ``invariants``: what must hold after every event and every example, and the checks for it;
- ``model``: what the fuzzing socket's sessions hold, and the answer the server owes next;
- ``wire``: the fuzzing socket, which sends each event and checks the answer against both;
- ``conftest``: one server per store for the package, and a fresh fuzzing socket per test;
- ``test_given``: the Hypothesis tests, with the examples they always run;
- ``test_guarantees``: regular tests, one per guarantee at the edges of the protocol.

Running
-------
The default run (100 examples per test: 5 tests x 2 stores = 1,000 cases, about a minute)::

    .venv/bin/pytest tests/e2e/fuzz -q

The full run (1,200 examples per test: 12,000 cases; prints the count per test)::

    HYPOTHESIS_PROFILE=full .venv/bin/pytest tests/e2e/fuzz -q --hypothesis-show-statistics

``FUZZ_EXAMPLES=N`` sets the number of examples per test for either run. MariaDB is found
through ``SESSION_TEST_MYSQL_URL``, as for the other end-to-end tests.
"""
