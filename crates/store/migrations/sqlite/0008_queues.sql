-- Priorities, queues and fair share; idempotent submits; retries; JSON
-- webhooks. PostgreSQL's 0008 keeps the same schema (and says more).

ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN fair_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify_format TEXT NOT NULL DEFAULT 'form' CHECK (notify_format IN ('json', 'form'));
ALTER TABLE jobs ADD COLUMN retry_of TEXT;

ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN fair_seq INTEGER NOT NULL DEFAULT 0;

DROP INDEX tasks_claimable;
CREATE INDEX tasks_claimable ON tasks (state, priority DESC, fair_seq, job_id, task);

CREATE TABLE queues (
    name             TEXT PRIMARY KEY NOT NULL,
    max_concurrency  INTEGER,
    paused           INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
);
INSERT INTO queues (name, max_concurrency, paused, updated_at) VALUES ('default', NULL, 0, 0);

CREATE TABLE fair_shares (
    owner            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    PRIMARY KEY (owner, priority)
);

CREATE TABLE idempotency_keys (
    scope            TEXT NOT NULL,
    key              TEXT NOT NULL,
    digest           TEXT NOT NULL,
    job_id           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_job ON idempotency_keys (job_id);

CREATE INDEX jobs_ended_at ON jobs (state_changed_at) WHERE state IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED');

DROP TRIGGER jobs_tasks;
CREATE TRIGGER jobs_tasks AFTER INSERT ON jobs
BEGIN
    INSERT INTO tasks (job_id, task, kind, state, spec, max_attempts, run_after, mirrored, notifies,
                       priority, queue, fair_seq, updated_at, state_changed_at)
    SELECT NEW.id, CAST(plan.key AS INTEGER), json_extract(plan.value, '$.kind'), 'PENDING',
           COALESCE(json_extract(plan.value, '$.spec'), '{}'), NEW.max_attempts,
           CASE WHEN json_extract(plan.value, '$.waits') THEN NULL ELSE NEW.created_at END,
           json_array_length(NEW.tasks_plan) = 1, NEW.notify_url IS NOT NULL,
           NEW.priority, NEW.queue, NEW.fair_seq, NEW.created_at, NEW.created_at
    FROM json_each(NEW.tasks_plan) AS plan;
END;
