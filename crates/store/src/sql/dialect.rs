//! The few places where SQLite and PostgreSQL need different SQL.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            return Some(Dialect::Sqlite);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(Dialect::Postgres);
        }
        None
    }

    /// Locks a row read before it is changed. SQLite needs none: its single
    /// writer connection already orders every write.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`for_update`](Self::for_update), but passes over rows another
    /// replica holds, so concurrent claims never wait on each other.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// A claim's lock on the tasks it picks (not on the queues it reads).
    pub fn lock_claimed(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE OF tasks SKIP LOCKED",
        }
    }

    /// The most tasks one claim takes from a queue with a `max_concurrency`.
    /// SQLite's claims run one at a time, so a claim may fill the queue's
    /// room. On PostgreSQL a replica's claims then run one at a time too
    /// (`SqlStore::claims`), but replicas claim at once, each seeing the same
    /// room; each takes at most one, so a queue is over its limit by at most
    /// one task per other replica, until those tasks end.
    pub fn per_capped_queue(self, limit: u32) -> u32 {
        match self {
            Dialect::Sqlite => limit,
            Dialect::Postgres => 1,
        }
    }

    /// A fresh lease token (32 hex digits of randomness), made by the database
    /// so one statement can lease many jobs, each with its own.
    pub fn random_token(self) -> &'static str {
        match self {
            Dialect::Sqlite => "lower(hex(randomblob(16)))",
            Dialect::Postgres => "replace(gen_random_uuid()::text, '-', '')",
        }
    }
}
