-- Token sessions for Socket.IO, embedded store (SQLite 3.35+).
-- The embedded store owns its file and applies this itself at startup (and
-- sql/sqlite_upgrade_mailbox.sql to a file made before the mailbox).
CREATE TABLE IF NOT EXISTS "socketio_session" (
  id               BLOB    NOT NULL PRIMARY KEY,  -- SHA-256 of the token, never the token
  data             TEXT    NOT NULL,              -- the session as one JSON object
  version          INTEGER NOT NULL DEFAULT 0,
  created          REAL    NOT NULL,              -- Unix seconds
  last_seen        REAL    NOT NULL,
  expires          REAL    NOT NULL,              -- idle deadline, at or before absolute_expires
  absolute_expires REAL    NOT NULL,
  user_id          TEXT    NULL,
  mail_last_id     INTEGER NOT NULL DEFAULT 0,    -- id of the newest message ever sent to it
  mail_waiting     INTEGER NOT NULL DEFAULT 0     -- messages waiting in socketio_session_mailbox
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "socketio_session_expires" ON "socketio_session" (expires);
CREATE INDEX IF NOT EXISTS "socketio_session_user_id" ON "socketio_session" (user_id);
-- Messages that wait for their session until its client acknowledges them; they
-- end with it and move with it when its token rotates (the store turns
-- foreign keys on for its connection).
CREATE TABLE IF NOT EXISTS "socketio_session_mailbox" (
  session  BLOB    NOT NULL REFERENCES "socketio_session" (id) ON DELETE CASCADE ON UPDATE CASCADE,
  id       INTEGER NOT NULL,                      -- the session's count of messages: stable, increasing
  event    TEXT    NOT NULL,
  payload  TEXT    NOT NULL,                      -- JSON text
  sent_at  REAL    NOT NULL,                      -- Unix seconds
  expires  REAL    NOT NULL,                      -- dropped then, acknowledged or not
  PRIMARY KEY (session, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "socketio_session_mailbox_expires" ON "socketio_session_mailbox" (expires);
