-- Why a job ended in ERROR, as a stable code; a job's own wall-clock limit;
-- what each node's tool sandbox enforces.
ALTER TABLE jobs ADD COLUMN error_code TEXT;
ALTER TABLE jobs ADD COLUMN max_runtime_s BIGINT;
ALTER TABLE nodes ADD COLUMN sandbox TEXT;
