-- Streamer accounts (sign-up page): each has a password, a stream key and the channel its key
-- publishes to. Only the key's SHA-256 is stored: it is shown once, at sign-up or regeneration.
CREATE TABLE streamers (
    name TEXT PRIMARY KEY,
    -- PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
    password_hash TEXT NOT NULL,
    channel TEXT NOT NULL,
    -- hex SHA-256 of the stream key
    key_sha256 TEXT NOT NULL UNIQUE,
    -- the key redacted (`live_…a9f3`), to tell keys apart in lists
    key_hint TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL -- unix seconds
);

-- Streamers' login sessions (their own page), apart from the admins'.
CREATE TABLE streamer_sessions (
    -- hex SHA-256 of the cookie's token
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES streamers(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL -- unix seconds
);
