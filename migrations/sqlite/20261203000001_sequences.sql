-- Sequences: jobs that share a sequence key run one at a time, in enqueue order (a user's
-- lifecycle events in stream order, say). The claim skips a job while another of its key is
-- running, or an earlier one waits, or an earlier one was discarded (it holds the sequence
-- until an operator retries or cancels it); this index answers that check.
ALTER TABLE jobs ADD COLUMN sequence TEXT;
CREATE INDEX jobs_sequence_idx ON jobs (sequence, id)
    WHERE sequence IS NOT NULL AND state NOT IN ('completed', 'cancelled');

-- Which job a stream entry or a lifecycle event became: `GET /jobs?unique_key=`.
CREATE INDEX jobs_unique_key_idx ON jobs (unique_key) WHERE unique_key IS NOT NULL;
