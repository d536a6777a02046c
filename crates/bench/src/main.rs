//! Benchmarks: the pipeline against raw ffmpeg, the queue against its own
//! limits. Runs on loopback with the project's own release binary and prints
//! one line per figure. Comparisons alternate their two sides within one run
//! and report medians.
//!
//!     scripts/bench.sh [overhead|dispatch|throughput|memory|transfer|chunked|ladder|all]

mod chunked;
mod harness;
mod ladder;
mod suites;

use harness::Env;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let suite = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let env = Env::new()?;
    println!("# machine: {}", harness::machine());
    let all = suite == "all";
    if all || suite == "overhead" {
        suites::overhead(&env).await?;
    }
    if all || suite == "dispatch" {
        suites::dispatch(&env).await?;
    }
    if all || suite == "throughput" {
        suites::throughput(&env).await?;
    }
    if all || suite == "memory" {
        suites::memory(&env).await?;
    }
    if all || suite == "transfer" {
        suites::transfer(&env).await?;
    }
    if all || suite == "chunked" {
        chunked::chunked(&env).await?;
    }
    if all || suite == "ladder" {
        ladder::ladder_suite(&env).await?;
    }
    Ok(())
}
