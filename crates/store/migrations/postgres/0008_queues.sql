-- Priorities, queues and fair share; idempotent submits; retries; JSON
-- webhooks. SQLite's 0008 keeps the same schema.
--
-- A claim orders PENDING tasks by priority (higher first), then by fair_seq:
-- each submitting token's jobs of a priority are numbered in submission
-- order, starting no earlier than the head of that priority's queue
-- (fair_shares), so tokens take turns whatever each has queued. A job's tasks carry its priority, queue and
-- number.

ALTER TABLE jobs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN fair_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify_format TEXT NOT NULL DEFAULT 'form' CHECK (notify_format IN ('json', 'form'));
ALTER TABLE jobs ADD COLUMN retry_of TEXT;

ALTER TABLE tasks ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN fair_seq BIGINT NOT NULL DEFAULT 0;

-- The claim's order, straight off the index; counts by state use its prefix.
DROP INDEX tasks_claimable;
CREATE INDEX tasks_claimable ON tasks (state, priority DESC, fair_seq, job_id, task);

-- Each queue's limit (from config, written by every replica at start) and
-- whether an admin paused it. A queue without a row leases nothing.
CREATE TABLE queues (
    name             TEXT PRIMARY KEY NOT NULL,
    max_concurrency  BIGINT,
    paused           BIGINT NOT NULL DEFAULT 0,
    updated_at       BIGINT NOT NULL
);
INSERT INTO queues (name, max_concurrency, paused, updated_at) VALUES ('default', NULL, 0, 0);

-- The last number given to each submitting token's jobs of each priority
-- ('' without tokens).
CREATE TABLE fair_shares (
    owner            TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL,
    PRIMARY KEY (owner, priority)
);

-- A submit's Idempotency-Key, per token, with the digest of its canonical body.
CREATE TABLE idempotency_keys (
    scope            TEXT NOT NULL,
    key              TEXT NOT NULL,
    digest           TEXT NOT NULL,
    job_id           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_job ON idempotency_keys (job_id);

-- Retention deletes ended jobs by age.
CREATE INDEX jobs_ended_at ON jobs (state_changed_at) WHERE state IN ('FINISHED', 'ERROR', 'ABANDONED', 'CANCELED');

CREATE OR REPLACE FUNCTION nommer_job_tasks() RETURNS trigger AS $$
BEGIN
    INSERT INTO tasks (job_id, task, kind, state, spec, max_attempts, run_after, mirrored, notifies,
                       priority, queue, fair_seq, updated_at, state_changed_at)
    SELECT NEW.id, plan.n - 1, plan.value->>'kind', 'PENDING', COALESCE((plan.value->'spec')::text, '{}'),
           NEW.max_attempts,
           CASE WHEN COALESCE((plan.value->>'waits')::boolean, false) THEN NULL ELSE NEW.created_at END,
           CASE WHEN jsonb_array_length(NEW.tasks_plan::jsonb) = 1 THEN 1 ELSE 0 END,
           CASE WHEN NEW.notify_url IS NULL THEN 0 ELSE 1 END,
           NEW.priority, NEW.queue, NEW.fair_seq, NEW.created_at, NEW.created_at
    FROM jsonb_array_elements(NEW.tasks_plan::jsonb) WITH ORDINALITY AS plan(value, n);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
