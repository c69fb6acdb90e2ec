-- What operators and scripts chose at run time for any channel, kept across restarts:
-- the fallback media (NULL: the configured one), and the overlay layers on its output
-- (`layer` is the layer as JSON: name, source, position, size, z, live_only).
ALTER TABLE channels ADD COLUMN fallback_media TEXT;
CREATE TABLE overlay_layers (
    channel TEXT NOT NULL,
    name    TEXT NOT NULL,
    layer   TEXT NOT NULL,
    PRIMARY KEY (channel, name)
) STRICT;
