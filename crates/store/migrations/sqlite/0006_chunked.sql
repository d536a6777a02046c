-- Chunked jobs: the task kinds of a split encode, and tasks that wait. A
-- task whose run_after is NULL is not claimable until its job releases it
-- (an assemble once every other task has finished, a cleanup once the job
-- has ended); a plan task adds the job's other tasks when it finishes.
-- SQLite changes a CHECK only by rebuilding the table: the trigger on jobs
-- that names it goes first, the triggers on it go with it, and all return.
-- PostgreSQL's 0006 keeps the same schema.

DROP TRIGGER jobs_tasks;

CREATE TABLE tasks_v6 (
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    task             INTEGER NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('ffmpeg', 'copy', 'plan', 'chunk', 'audio', 'assemble', 'cleanup')),
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'DOWNLOADING', 'ENCODING', 'UPLOADING', 'FINISHED', 'ERROR', 'ABANDONED', 'CANCELED')),
    state_details    TEXT,
    error_code       TEXT,
    spec             TEXT NOT NULL DEFAULT '{}',
    result           TEXT,
    progress         TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    -- NULL: waits until its job releases it
    run_after        INTEGER,
    lease_token      TEXT,
    node_id          TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- 1: the job's only task, which the job shows as it is
    mirrored         INTEGER NOT NULL,
    -- 1: the job has a notify_url (a change may have a webhook to deliver)
    notifies         INTEGER NOT NULL DEFAULT 0,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    state_changed_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, task)
);

INSERT INTO tasks_v6 SELECT * FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v6 RENAME TO tasks;

CREATE INDEX tasks_claimable ON tasks (state, run_after, job_id, task);
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TRIGGER tasks_mirror_state AFTER UPDATE OF state_changed_at ON tasks WHEN NEW.mirrored = 1
BEGIN
    UPDATE jobs SET state = NEW.state, state_details = NEW.state_details, error_code = NEW.error_code,
        progress = NEW.progress, attempts = NEW.attempts, node_id = NEW.node_id,
        updated_at = NEW.updated_at, state_changed_at = NEW.state_changed_at
    WHERE id = NEW.job_id;
END;

CREATE TRIGGER tasks_mirror_progress AFTER UPDATE OF progress ON tasks
    WHEN NEW.mirrored = 1 AND NEW.state_changed_at = OLD.state_changed_at
BEGIN
    UPDATE jobs SET progress = NEW.progress, updated_at = NEW.updated_at WHERE id = NEW.job_id;
END;

CREATE TRIGGER tasks_first_claim AFTER UPDATE OF state_changed_at ON tasks
    WHEN NEW.mirrored = 0 AND OLD.state = 'PENDING' AND NEW.state = 'DOWNLOADING'
BEGIN
    UPDATE jobs SET state = 'DOWNLOADING', state_details = NULL, progress = NEW.progress, node_id = NEW.node_id,
        updated_at = NEW.updated_at, state_changed_at = NEW.state_changed_at
    WHERE id = NEW.job_id AND state = 'PENDING';
END;

CREATE TRIGGER jobs_tasks AFTER INSERT ON jobs
BEGIN
    INSERT INTO tasks (job_id, task, kind, state, spec, max_attempts, run_after, mirrored, notifies,
                       updated_at, state_changed_at)
    SELECT NEW.id, CAST(plan.key AS INTEGER), json_extract(plan.value, '$.kind'), 'PENDING',
           COALESCE(json_extract(plan.value, '$.spec'), '{}'), NEW.max_attempts,
           CASE WHEN json_extract(plan.value, '$.waits') THEN NULL ELSE NEW.created_at END,
           json_array_length(NEW.tasks_plan) = 1, NEW.notify_url IS NOT NULL, NEW.created_at, NEW.created_at
    FROM json_each(NEW.tasks_plan) AS plan;
END;
