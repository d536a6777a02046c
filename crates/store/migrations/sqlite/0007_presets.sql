-- Presets written through the API (built-in and config presets live in code
-- and config): each a canonical JSON body, checked when it was written.
CREATE TABLE presets (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
