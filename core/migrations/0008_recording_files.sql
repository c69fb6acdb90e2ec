-- The files recordings wrote, so that retention (max_total_gib) deletes only those: a file in a
-- recording's folder that onair did not write stays, whatever its name. A row is written as its
-- file opens, and removed when retention deletes the file (or finds it gone).
CREATE TABLE recording_files (
    path TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    created_at INTEGER NOT NULL -- seconds since the Unix epoch
);
CREATE INDEX recording_files_by_destination ON recording_files (channel, destination);
