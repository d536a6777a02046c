-- Chunked jobs: the task kinds of a split encode, and tasks that wait. A
-- task whose run_after is NULL is not claimable until its job releases it
-- (an assemble once every other task has finished, a cleanup once the job
-- has ended); a plan task adds the job's other tasks when it finishes.
-- SQLite's 0006 keeps the same schema.

ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check
    CHECK (kind IN ('ffmpeg', 'copy', 'plan', 'chunk', 'audio', 'assemble', 'cleanup'));
ALTER TABLE tasks ALTER COLUMN run_after DROP NOT NULL;

CREATE OR REPLACE FUNCTION nommer_job_tasks() RETURNS trigger AS $$
BEGIN
    INSERT INTO tasks (job_id, task, kind, state, spec, max_attempts, run_after, mirrored, notifies,
                       updated_at, state_changed_at)
    SELECT NEW.id, plan.n - 1, plan.value->>'kind', 'PENDING', COALESCE((plan.value->'spec')::text, '{}'),
           NEW.max_attempts,
           CASE WHEN COALESCE((plan.value->>'waits')::boolean, false) THEN NULL ELSE NEW.created_at END,
           CASE WHEN jsonb_array_length(NEW.tasks_plan::jsonb) = 1 THEN 1 ELSE 0 END,
           CASE WHEN NEW.notify_url IS NULL THEN 0 ELSE 1 END, NEW.created_at, NEW.created_at
    FROM jsonb_array_elements(NEW.tasks_plan::jsonb) WITH ORDINALITY AS plan(value, n);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Workers on every replica wake when a waiting task is released.
CREATE TRIGGER tasks_released AFTER UPDATE OF run_after ON tasks
    FOR EACH ROW WHEN (NEW.state = 'PENDING' AND OLD.run_after IS NULL AND NEW.run_after IS NOT NULL)
    EXECUTE FUNCTION nommer_notify_jobs();
