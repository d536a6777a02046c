-- A job is carried out by tasks, each leased on its own: the lease moves from
-- the job's row to its tasks'. A job of one task shows that task (the
-- tasks_mirror triggers copy it, in the statement that changed the task); a
-- job of several has its state derived by feederd in the same transaction.
-- Counting jobs by state reads an index of unfinished jobs and running totals
-- of finished ones, never the whole table. Node states and fleet kinds are
-- checked. SQLite's 0005 keeps the same schema.

CREATE TABLE tasks (
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    task             BIGINT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('ffmpeg', 'copy')),
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'DOWNLOADING', 'ENCODING', 'UPLOADING', 'FINISHED', 'ERROR', 'ABANDONED', 'CANCELED')),
    state_details    TEXT,
    error_code       TEXT,
    spec             TEXT NOT NULL DEFAULT '{}',
    result           TEXT,
    progress         TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    run_after        BIGINT NOT NULL,
    lease_token      TEXT,
    node_id          TEXT,
    lease_expires_at BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    -- 1: the job's only task, which the job shows as it is
    mirrored         BIGINT NOT NULL,
    -- 1: the job has a notify_url (a change may have a webhook to deliver)
    notifies         BIGINT NOT NULL DEFAULT 0,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL,
    state_changed_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, task)
);

-- State first: PostgreSQL's planner keeps to it for claims (oldest PENDING
-- first, in index order) even before it has statistics for a new table.
CREATE INDEX tasks_claimable ON tasks (state, run_after, job_id, task);
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- Every job so far is one task, its lease carried over: a job PENDING or
-- leased during the upgrade goes on as it was.
INSERT INTO tasks (job_id, task, kind, state, state_details, error_code, progress, attempts, max_attempts,
                   run_after, lease_token, node_id, lease_expires_at, cancel_requested, mirrored, notifies,
                   started_at, finished_at, updated_at, state_changed_at)
SELECT id, 0, CASE WHEN nommer = 'copy' THEN 'copy' ELSE 'ffmpeg' END, state, state_details, error_code,
       progress, attempts, max_attempts, run_after, lease_token, node_id, lease_expires_at, cancel_requested, 1,
       CASE WHEN notify_url IS NULL THEN 0 ELSE 1 END,
       CASE WHEN attempts = 0 THEN NULL ELSE created_at END,
       CASE WHEN state IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED') THEN state_changed_at END,
       updated_at, state_changed_at
FROM jobs;

DROP INDEX jobs_claimable;
DROP INDEX jobs_lease_expiry;
ALTER TABLE jobs DROP COLUMN lease_token;
ALTER TABLE jobs DROP COLUMN lease_expires_at;
ALTER TABLE jobs DROP COLUMN run_after;
-- Lists by state, newest first; unfinished jobs are counted through their
-- tasks (tasks_claimable) instead, which never reads an ended one.
CREATE INDEX jobs_by_state ON jobs (state, id);

CREATE FUNCTION nommer_task_mirror_state() RETURNS trigger AS $$
BEGIN
    UPDATE jobs SET state = NEW.state, state_details = NEW.state_details, error_code = NEW.error_code,
        progress = NEW.progress, attempts = NEW.attempts, node_id = NEW.node_id,
        updated_at = NEW.updated_at, state_changed_at = NEW.state_changed_at
    WHERE id = NEW.job_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_mirror_state AFTER UPDATE OF state_changed_at ON tasks
    FOR EACH ROW WHEN (NEW.mirrored = 1) EXECUTE FUNCTION nommer_task_mirror_state();

CREATE FUNCTION nommer_task_mirror_progress() RETURNS trigger AS $$
BEGIN
    UPDATE jobs SET progress = NEW.progress, updated_at = NEW.updated_at WHERE id = NEW.job_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_mirror_progress AFTER UPDATE OF progress ON tasks
    FOR EACH ROW WHEN (NEW.mirrored = 1 AND NEW.state_changed_at = OLD.state_changed_at)
    EXECUTE FUNCTION nommer_task_mirror_progress();

-- The first claim of any task of a job of several moves the job PENDING ->
-- DOWNLOADING (model::tasks::job_state: the furthest stage a task reached),
-- in the claim's statement; every later change is derived by feederd.
CREATE FUNCTION nommer_task_first_claim() RETURNS trigger AS $$
BEGIN
    UPDATE jobs SET state = 'DOWNLOADING', state_details = NULL, progress = NEW.progress, node_id = NEW.node_id,
        updated_at = NEW.updated_at, state_changed_at = NEW.state_changed_at
    WHERE id = NEW.job_id AND state = 'PENDING';
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_first_claim AFTER UPDATE OF state_changed_at ON tasks
    FOR EACH ROW WHEN (NEW.mirrored = 0 AND OLD.state = 'PENDING' AND NEW.state = 'DOWNLOADING')
    EXECUTE FUNCTION nommer_task_first_claim();

-- Finished jobs by state: the totals, and one row for each job that has
-- ended since they were last folded in (inserts never wait on each other).
CREATE TABLE job_totals (
    state            TEXT PRIMARY KEY NOT NULL,
    n                BIGINT NOT NULL
);

CREATE TABLE job_total_deltas (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state            TEXT NOT NULL
);

INSERT INTO job_totals (state, n)
SELECT state, COUNT(*) FROM jobs WHERE state IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED') GROUP BY state;

CREATE FUNCTION nommer_job_ended() RETURNS trigger AS $$
BEGIN
    INSERT INTO job_total_deltas (state) VALUES (NEW.state);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_ended AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED')
                   AND OLD.state NOT IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED'))
    EXECUTE FUNCTION nommer_job_ended();

-- A worker could name any fleet before: one it did not know was static.
UPDATE nodes SET fleet = 'static' WHERE fleet NOT IN ('static', 'local', 'ec2');
UPDATE nodes SET state = 'lost'
    WHERE state NOT IN ('active', 'draining', 'terminating', 'terminated', 'interrupted', 'gone', 'lost');
ALTER TABLE nodes ADD CONSTRAINT nodes_fleet CHECK (fleet IN ('static', 'local', 'ec2'));
ALTER TABLE nodes ADD CONSTRAINT nodes_state CHECK (state IN ('active', 'draining', 'terminating', 'terminated', 'interrupted', 'gone', 'lost'));

-- How many tasks carry the job out, so its progress can say how many are done.
ALTER TABLE jobs ADD COLUMN tasks_total BIGINT NOT NULL DEFAULT 1;

-- The tasks its nommer planned at submit (`[{"kind", "spec"}, ...]`): the
-- submit's one INSERT makes them, numbered from 0, PENDING and claimable.
ALTER TABLE jobs ADD COLUMN tasks_plan TEXT NOT NULL DEFAULT '[]';

CREATE FUNCTION nommer_job_tasks() RETURNS trigger AS $$
BEGIN
    INSERT INTO tasks (job_id, task, kind, state, spec, max_attempts, run_after, mirrored, notifies,
                       updated_at, state_changed_at)
    SELECT NEW.id, plan.n - 1, plan.value->>'kind', 'PENDING', COALESCE((plan.value->'spec')::text, '{}'),
           NEW.max_attempts, NEW.created_at,
           CASE WHEN jsonb_array_length(NEW.tasks_plan::jsonb) = 1 THEN 1 ELSE 0 END,
           CASE WHEN NEW.notify_url IS NULL THEN 0 ELSE 1 END, NEW.created_at, NEW.created_at
    FROM jsonb_array_elements(NEW.tasks_plan::jsonb) WITH ORDINALITY AS plan(value, n);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_tasks AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION nommer_job_tasks();

-- Workers on every replica wake when a task becomes claimable: a task of a job of several can
-- be retried while its job stays where it was.
DROP TRIGGER jobs_pending ON jobs;
CREATE TRIGGER tasks_pending AFTER INSERT OR UPDATE OF state ON tasks
    FOR EACH ROW WHEN (NEW.state = 'PENDING') EXECUTE FUNCTION nommer_notify_jobs();
