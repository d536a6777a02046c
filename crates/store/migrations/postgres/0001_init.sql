-- Jobs, their lease, the event outbox and webhook delivery attempts, and nodes.
-- The same schema as SQLite's; times are milliseconds since the Unix epoch.

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    state            TEXT NOT NULL,
    state_details    TEXT,
    warnings         TEXT NOT NULL DEFAULT '[]',
    progress         TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    -- shown by the API: credentials redacted
    source_path      TEXT NOT NULL,
    dest_path        TEXT NOT NULL,
    -- given to the lease holder only: the URIs as submitted, credentials included
    secret_uris      TEXT NOT NULL,
    notify_url       TEXT,
    nommer           TEXT NOT NULL,
    job_options      TEXT NOT NULL,
    run_after        BIGINT NOT NULL,
    lease_token      TEXT,
    node_id          TEXT,
    lease_expires_at BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    state_changed_at BIGINT NOT NULL
);

CREATE INDEX jobs_claimable ON jobs (state, run_after, id);
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE job_events (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    state            TEXT NOT NULL,
    details          TEXT,
    created_at       BIGINT NOT NULL,
    -- 'none' (nothing to deliver), 'pending', 'delivered' or 'failed'
    delivery         TEXT NOT NULL,
    notify_url       TEXT,
    next_attempt_at  BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX job_events_by_job ON job_events (job_id, seq);
CREATE INDEX job_events_due ON job_events (delivery, job_id, seq) WHERE delivery = 'pending';

CREATE TABLE delivery_attempts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq        BIGINT NOT NULL REFERENCES job_events (seq),
    attempt          BIGINT NOT NULL,
    attempted_at     BIGINT NOT NULL,
    status_code      BIGINT,
    error            TEXT,
    duration_ms      BIGINT NOT NULL
);

CREATE INDEX delivery_attempts_by_event ON delivery_attempts (event_seq, attempt);

CREATE TABLE nodes (
    id                TEXT PRIMARY KEY NOT NULL,
    instance_id       TEXT,
    fleet             TEXT NOT NULL,
    state             TEXT NOT NULL,
    hostname          TEXT,
    version           TEXT,
    max_jobs          BIGINT NOT NULL,
    running_jobs      BIGINT NOT NULL,
    started_at        BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL
);

-- Wake every replica's long-polling workers when a job becomes PENDING, and
-- the leader's notifier when an event has a webhook to deliver. NOTIFY is sent
-- at commit, and repeats within one transaction fold into one.
CREATE FUNCTION nommer_notify_jobs() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('nommer_jobs', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_pending AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'PENDING') EXECUTE FUNCTION nommer_notify_jobs();

CREATE FUNCTION nommer_notify_events() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('nommer_events', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_pending AFTER INSERT ON job_events
    FOR EACH ROW WHEN (NEW.delivery = 'pending') EXECUTE FUNCTION nommer_notify_events();
