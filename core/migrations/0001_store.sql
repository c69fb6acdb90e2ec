-- onair.store: the key-value store shared by scripts. Values are JSON text.
CREATE TABLE store (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
