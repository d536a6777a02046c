//! The fault soak (scripts/soak.sh, RELIABILITY.md) for two minutes, as a
//! smoke test: the real binary, two replicas on PostgreSQL, four workers, and
//! every kind of fault. `SOAK_SEED` picks another seed.

use nommer_soak::faults::FaultKind;

#[test]
fn two_minutes_of_faults_lose_nothing() {
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(nommer_soak::run(nommer_soak::Settings {
            minutes: 2.0,
            seed,
            nommer: env!("CARGO_BIN_EXE_nommer").into(),
            workers: 4,
            keep_logs: false,
        }))
        .unwrap();
    eprintln!("{report}");
    assert!(report.passed(), "the soak failed:\n{report}");
    // The run was a soak: jobs of every kind finished while faults of every
    // kind landed.
    for (kind, n) in &report.probed {
        assert!(*n > 0, "no {} finished", kind.name());
    }
    assert_eq!(report.probed.len(), 4, "{report}");
    for kind in FaultKind::ALL {
        assert!(
            report.faults.get(&kind).copied().unwrap_or(0) > 0,
            "no fault of kind {kind:?} landed:\n{report}"
        );
    }
    assert!(report.finished > 50, "{report}");
}
