-- The completion's path. `jobs_locked_by_idx` kept one key per worker for every job that
-- worker ran, and its entries outlive the attempt until vacuum: the planner found a
-- completing job through it (by worker, then filtering by id) instead of through the primary
-- key, walking the dead entries of every job the worker had finished (seen with auto_explain
-- on a W1 drain), and every claim paid one more index entry. The running set it served is small:
-- the lookups by worker (cancel requests, a worker's running count) read it through
-- `jobs_lease_idx`, which is partial on `state = 'running'` too.
DROP INDEX jobs_locked_by_idx;
