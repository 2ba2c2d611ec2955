-- A job's attempts are deleted with it by the store itself (store::sql::job_moves: the
-- deletion of one job and the retention pass), not by a foreign key. The key's check on
-- every attempt written took a share lock on the job's row, which dirtied its page and
-- wrote a WAL record once more per job, for a table only the store writes: W1 drained
-- 6-7 % faster without it.
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_job_id_fkey;
