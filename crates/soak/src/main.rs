//! `nommer-soak [--minutes M] [--seed S] [--workers N] [--keep-logs]`: the
//! fault soak (see the library), against the release `nommer` beside this
//! binary or `SOAK_NOMMER`. Prints the report; exits 1 unless every
//! must-be-zero figure is 0.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut settings = nommer_soak::Settings {
        minutes: 20.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        nommer: match std::env::var_os("SOAK_NOMMER") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe()?.with_file_name("nommer"),
        },
        workers: 4,
        keep_logs: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match arg.as_str() {
            "--minutes" => settings.minutes = value("--minutes")?.parse()?,
            "--seed" => settings.seed = value("--seed")?.parse()?,
            "--workers" => settings.workers = value("--workers")?.parse()?,
            "--keep-logs" => settings.keep_logs = true,
            other => anyhow::bail!(
                "unknown argument {other}: nommer-soak [--minutes M] [--seed S] [--workers N] [--keep-logs]"
            ),
        }
    }
    anyhow::ensure!(settings.minutes > 0.0, "--minutes must be positive");
    anyhow::ensure!(
        settings.nommer.exists(),
        "{} is missing: build it with cargo build --release -p nommer",
        settings.nommer.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(nommer_soak::run(settings))?;
    println!("{report}");
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
