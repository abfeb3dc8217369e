-- Upgrades a sessions table made before the mailbox; the embedded store applies it
-- at startup when the columns are missing (then sql/sqlite.sql creates the mailbox).
ALTER TABLE "socketio_session" ADD COLUMN mail_last_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "socketio_session" ADD COLUMN mail_waiting INTEGER NOT NULL DEFAULT 0;
