-- Admin users of the control room and their login sessions.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    -- PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL -- unix seconds
);

CREATE TABLE sessions (
    -- hex SHA-256 of the cookie's token: the token itself is never stored
    token_sha256 TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL -- unix seconds
);
