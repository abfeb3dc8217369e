-- Token sessions for Socket.IO (MySQL 8.0+ and MariaDB 10.5+).
--
-- Apply once, as a user allowed to create tables:
--     python -m entrypoints.cli migrate          (uses SESSION_STORE_URL)
--  or mysql <database> < sql/mysql.sql
-- The package never creates these tables on its own. To use another table name,
-- set SESSION_TABLE and print the matching DDL with `python -m entrypoints.cli schema`
-- (the mailbox table is always named after the sessions table: <table>_mailbox).
-- A table made before the mailbox existed is upgraded by `migrate`
-- (sql/mysql_upgrade_mailbox.sql, then the mailbox table below).
CREATE TABLE IF NOT EXISTS `socketio_session` (
  -- SHA-256 of the token. The token itself is never stored, so a dump of
  -- this table cannot be replayed.
  `id`               BINARY(32)      NOT NULL,
  -- The session as one JSON object.
  `data`             MEDIUMTEXT      CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  -- Counts the writes the session has seen.
  `version`          BIGINT UNSIGNED NOT NULL DEFAULT 0,
  -- Unix seconds.
  `created`          DOUBLE          NOT NULL,
  `last_seen`        DOUBLE          NOT NULL,
  -- The idle deadline, kept at or before absolute_expires: the session is
  -- over from this instant on. The purge walks this index.
  `expires`          DOUBLE          NOT NULL,
  `absolute_expires` DOUBLE          NOT NULL,
  -- The owner the application recorded on login, if any.
  `user_id`          VARCHAR(191)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  -- The mailbox, as a handshake needs it without another query: the id of the
  -- newest message ever sent to this session, and how many wait in
  -- socketio_session_mailbox. Changed only in the same transaction as the
  -- mailbox rows, with this row locked first.
  `mail_last_id`     BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `mail_waiting`     INT UNSIGNED    NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  KEY `socketio_session_expires` (`expires`),
  KEY `socketio_session_user_id` (`user_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages that wait for their session until its client acknowledges them.
-- The foreign key ends them with their session (logout, expiry, purge) and
-- moves them with it when its token rotates: the session's id is its token's
-- digest, which changes on login.
CREATE TABLE IF NOT EXISTS `socketio_session_mailbox` (
  `session`          BINARY(32)      NOT NULL,
  -- The session's own count of messages sent to it (its mail_last_id then):
  -- stable, increasing in send order, never reused.
  `id`               BIGINT UNSIGNED NOT NULL,
  `event`            VARCHAR(191)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  -- The payload as JSON text.
  `payload`          MEDIUMTEXT      CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  -- Unix seconds. A message is dropped at `expires` (SESSION_MAILBOX_TTL), acknowledged or not.
  `sent_at`          DOUBLE          NOT NULL,
  `expires`          DOUBLE          NOT NULL,
  PRIMARY KEY (`session`, `id`),
  KEY `expires` (`expires`),
  CONSTRAINT `socketio_session_mail_fk` FOREIGN KEY (`session`) REFERENCES `socketio_session` (`id`)
    ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
