//! What the test suites share: a private PostgreSQL server per test binary.

pub mod postgres;
