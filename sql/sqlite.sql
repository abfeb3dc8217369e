-- Token sessions for Socket.IO, embedded store (SQLite 3.35+).
-- The embedded store owns its file and applies this itself at startup.
CREATE TABLE IF NOT EXISTS "socketio_session" (
  id               BLOB    NOT NULL PRIMARY KEY,  -- SHA-256 of the token, never the token
  data             TEXT    NOT NULL,              -- the session as one JSON object
  version          INTEGER NOT NULL DEFAULT 0,
  created          REAL    NOT NULL,              -- Unix seconds
  last_seen        REAL    NOT NULL,
  expires          REAL    NOT NULL,              -- idle deadline, at or before absolute_expires
  absolute_expires REAL    NOT NULL,
  user_id          TEXT    NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "socketio_session_expires" ON "socketio_session" (expires);
CREATE INDEX IF NOT EXISTS "socketio_session_user_id" ON "socketio_session" (user_id);
