-- Upgrades a sessions table made before the mailbox (`python -m entrypoints.cli migrate`
-- applies it, then creates socketio_session_mailbox from sql/mysql.sql). Adding
-- columns at the end is an instant change on MariaDB 10.3+ and MySQL 8.0.12+.
ALTER TABLE `socketio_session`
  ADD COLUMN `mail_last_id` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN `mail_waiting` INT UNSIGNED    NOT NULL DEFAULT 0;
