-- Bulk operations run under a lease: the process running one renews heartbeat_at, and
-- another process takes over one whose owner stopped renewing it, resuming after
-- resume_before (the run walks the matching jobs newest first).
ALTER TABLE operations ADD COLUMN owner TEXT;
ALTER TABLE operations ADD COLUMN heartbeat_at INTEGER;
ALTER TABLE operations ADD COLUMN resume_before BLOB;
