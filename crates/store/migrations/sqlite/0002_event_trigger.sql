-- A job's events are written by the database, in the statement that changes
-- the job: a state change is one UPDATE, and its event can never be missing.
-- Every state change sets state_changed_at, and nothing else does.

CREATE TRIGGER jobs_event_on_submit AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_events (job_id, state, details, created_at, delivery, notify_url, next_attempt_at)
    VALUES (NEW.id, NEW.state, NEW.state_details, NEW.state_changed_at, 'none', NEW.notify_url, NULL);
END;

CREATE TRIGGER jobs_event_on_change AFTER UPDATE OF state_changed_at ON jobs
BEGIN
    INSERT INTO job_events (job_id, state, details, created_at, delivery, notify_url, next_attempt_at)
    VALUES (NEW.id, NEW.state, NEW.state_details, NEW.state_changed_at,
            CASE WHEN NEW.notify_url IS NULL THEN 'none' ELSE 'pending' END,
            NEW.notify_url,
            CASE WHEN NEW.notify_url IS NULL THEN NULL ELSE NEW.state_changed_at END);
END;
