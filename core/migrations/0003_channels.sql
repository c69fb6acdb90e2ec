-- Channels created at run time (owner 'db', `spec` is the whole ChannelSpec as JSON), and the
-- started/stopped state of every channel, including those from onair.toml (owner 'config',
-- `spec` NULL: the file keeps the rest).
CREATE TABLE channels (
    id      TEXT PRIMARY KEY NOT NULL,
    owner   TEXT NOT NULL CHECK (owner IN ('db', 'config')),
    spec    TEXT,
    started INTEGER NOT NULL CHECK (started IN (0, 1)),
    CHECK ((owner = 'db') = (spec IS NOT NULL))
) STRICT;
