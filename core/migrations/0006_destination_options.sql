-- Per-destination options: the encoding profile it receives (NULL: the channel's [output]) and,
-- for recordings (file:// URLs), minutes per file and the GiB all its files may take.
-- For a destination from onair.toml these stay NULL: the file keeps them.
ALTER TABLE destinations ADD COLUMN profile TEXT;
ALTER TABLE destinations ADD COLUMN segment_minutes INTEGER;
ALTER TABLE destinations ADD COLUMN max_total_gib REAL;
