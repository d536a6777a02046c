-- Which API token submitted each job: its configured name, never the token.
-- A submit-role token sees and cancels only its own jobs.
ALTER TABLE jobs ADD COLUMN submitted_by TEXT;
CREATE INDEX jobs_submitted_by ON jobs (submitted_by, id);
-- notify_url is sealed at rest like the URIs (its query string often holds
-- a token); this is how it is shown, query string and userinfo redacted.
ALTER TABLE jobs ADD COLUMN notify_url_shown TEXT;
