-- Jobs, their lease, the event outbox and webhook delivery attempts, and nodes.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    state            TEXT NOT NULL,
    state_details    TEXT,
    warnings         TEXT NOT NULL DEFAULT '[]',
    progress         TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    -- shown by the API: credentials redacted
    source_path      TEXT NOT NULL,
    dest_path        TEXT NOT NULL,
    -- given to the lease holder only: the URIs as submitted, credentials included
    secret_uris      TEXT NOT NULL,
    notify_url       TEXT,
    nommer           TEXT NOT NULL,
    job_options      TEXT NOT NULL,
    run_after        INTEGER NOT NULL,
    lease_token      TEXT,
    node_id          TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    state_changed_at INTEGER NOT NULL
);

CREATE INDEX jobs_claimable ON jobs (state, run_after, id);
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE job_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           TEXT NOT NULL REFERENCES jobs (id),
    state            TEXT NOT NULL,
    details          TEXT,
    created_at       INTEGER NOT NULL,
    -- 'none' (nothing to deliver), 'pending', 'delivered' or 'failed'
    delivery         TEXT NOT NULL,
    notify_url       TEXT,
    next_attempt_at  INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX job_events_by_job ON job_events (job_id, seq);
CREATE INDEX job_events_due ON job_events (delivery, job_id, seq) WHERE delivery = 'pending';

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq        INTEGER NOT NULL REFERENCES job_events (seq),
    attempt          INTEGER NOT NULL,
    attempted_at     INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    duration_ms      INTEGER NOT NULL
);

CREATE INDEX delivery_attempts_by_event ON delivery_attempts (event_seq, attempt);

CREATE TABLE nodes (
    id                TEXT PRIMARY KEY NOT NULL,
    instance_id       TEXT,
    fleet             TEXT NOT NULL,
    state             TEXT NOT NULL,
    hostname          TEXT,
    version           TEXT,
    max_jobs          INTEGER NOT NULL,
    running_jobs      INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
);
