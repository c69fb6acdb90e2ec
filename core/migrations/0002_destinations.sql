-- Destinations created or changed at run time (API, Lua, plugins), per channel.
-- owner 'db': created at run time, every column is the truth.
-- owner 'config': defined in onair.toml; only `enabled` is kept (the file keeps the URL).
CREATE TABLE destinations (
    channel TEXT NOT NULL,
    name    TEXT NOT NULL,
    url     TEXT NOT NULL,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    owner   TEXT NOT NULL CHECK (owner IN ('db', 'config')),
    PRIMARY KEY (channel, name)
) STRICT;
