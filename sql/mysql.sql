-- Token sessions for Socket.IO (MySQL 8.0+ and MariaDB 10.5+).
--
-- Apply once, as a user allowed to create tables:
--     python -m entrypoints.cli migrate          (uses SESSION_STORE_URL)
--  or mysql <database> < sql/mysql.sql
-- The package never creates this table on its own. To use another table name,
-- set SESSION_TABLE and print the matching DDL with `python -m entrypoints.cli schema`.
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
  PRIMARY KEY (`id`),
  KEY `socketio_session_expires` (`expires`),
  KEY `socketio_session_user_id` (`user_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
