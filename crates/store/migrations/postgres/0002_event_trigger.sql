-- A job's events are written by the database, in the statement that changes
-- the job: a state change is one UPDATE, and its event can never be missing.
-- Every state change sets state_changed_at, and nothing else does. PENDING at
-- submission notifies no one.

CREATE FUNCTION nommer_job_event() RETURNS trigger AS $$
DECLARE
    deliver boolean := TG_OP = 'UPDATE' AND NEW.notify_url IS NOT NULL;
BEGIN
    INSERT INTO job_events (job_id, state, details, created_at, delivery, notify_url, next_attempt_at)
    VALUES (NEW.id, NEW.state, NEW.state_details, NEW.state_changed_at,
            CASE WHEN deliver THEN 'pending' ELSE 'none' END,
            NEW.notify_url,
            CASE WHEN deliver THEN NEW.state_changed_at END);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_event AFTER INSERT OR UPDATE OF state_changed_at ON jobs
    FOR EACH ROW EXECUTE FUNCTION nommer_job_event();
