"""The old npm package's session table, as its README creates it (with the table name left open)."""

OLD_DDL = """CREATE TABLE `{table}` (
`sessionId` varchar(32) COLLATE utf8_bin NOT NULL,
`expires` int(11) unsigned NOT NULL,
`data` text COLLATE utf8_bin,
PRIMARY KEY (`sessionId`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8 COLLATE=utf8_bin"""
