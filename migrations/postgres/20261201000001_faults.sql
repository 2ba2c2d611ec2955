-- Bulk operations run under a lease: the process running one renews heartbeat_at, and
-- another process takes over one whose owner stopped renewing it, resuming after
-- resume_before (the run walks the matching jobs newest first).
ALTER TABLE operations
    ADD COLUMN owner         text,
    ADD COLUMN heartbeat_at  timestamptz,
    ADD COLUMN resume_before uuid;

-- How many jobs a claim of queue `q` may take: `wanted`, or fewer when the queue has a
-- global concurrency limit. The queue's row is locked first, and the running jobs counted
-- after the lock is held (a statement of its own, so with a snapshot taken after the wait):
-- two claims racing on a limited queue take turns, and the limit holds exactly.
CREATE FUNCTION longshore_claim_room(q text, wanted bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lim     integer;
    running bigint;
BEGIN
    SELECT concurrency INTO lim FROM queues
    WHERE name = q AND concurrency IS NOT NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN wanted;
    END IF;
    SELECT count(*) INTO running FROM jobs WHERE queue = q AND state = 'running';
    RETURN GREATEST(0, LEAST(wanted, lim - running));
END
$$;
