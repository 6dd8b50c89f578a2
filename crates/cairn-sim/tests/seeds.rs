//! The simulation in `cargo test`: a fixed set of seeds, among them the seeds that found
//! defects while the protocol was written (`cargo xtask simulate --seeds N` explores more).

/// Seeds whose runs found a defect on the code of their time, each fixed since. A seed's run
/// depends on the code, so after later changes it explores other interleavings; it stays as
/// one more seed.
const FOUND_DEFECTS: &[(u64, &str)] = &[
    (
        1009,
        "a prune completed a commit from a backup's verdict after forget had removed its snapshot, and deleted its data",
    ),
    (
        1019,
        "an index file removed by a prune between listing and reading left the backup's index without its replacement",
    ),
    (
        2052,
        "a backup stopped between winning its commit and writing its snapshot wrote it after a prune had written, forget removed and prune deleted it",
    ),
    (
        2103,
        "a prune listed a snapshot before the index file it needs, whose listing lagged behind",
    ),
    (
        5083,
        "a prune stopped for days failed on packs another prune had deleted meanwhile, instead of starting over",
    ),
    (
        40006,
        "repair index indexed a pack of a fenced-off backup; a prune deleted it; the backup woke and named it in an index file",
    ),
    (
        40104,
        "repair index replaced the index files a prune was reading; the prune took their packs for unindexed and adopted a stopped backup's pack, which a later prune deleted once the backup was fenced off; waking, the backup named it in an index file",
    ),
    (
        40106,
        "repair index replaced the index files a prune was reading; the prune condemned a pack without its records, and a running backup's blob left the index",
    ),
    (
        3,
        "a pack torn by a killed upload (a store that writes in place) was left for ever: prune left every pack whose header it could not read",
    ),
    (
        100330,
        "repair index listed data/ before a pack a backup had just written showed, and removed the old index file that alone named it",
    ),
];

/// Seeds that found a defect only in a longer run, with the steps that run took.
const FOUND_IN_LONG_RUNS: &[(u64, usize, &str)] = &[
    (
        1014,
        4000,
        "a prune adopted a pack a fenced-off, stopped backup had yet to index; another repacked and deleted it; waking, the backup named it in an index file and readers looked for a blob there",
    ),
    (
        2000170,
        1500,
        "a prune kept a used blob's copy in a killed backup's pack that backup might still index, revived none from the condemned pack that alone indexed it, and carried out the condemnation: the blob left the index",
    ),
];

/// More seeds, enough to cover every kind of fault a few times in a few seconds.
const MORE: std::ops::Range<u64> = 0..3;

#[test]
fn every_snapshot_stays_restorable_and_check_clean_under_every_injected_fault() {
    // Shorter runs than `cargo xtask simulate` makes, to keep `cargo test` quick.
    let opts = cairn_sim::Options {
        steps: 800,
        ..cairn_sim::Options::default()
    };
    let runs = FOUND_DEFECTS
        .iter()
        .map(|(s, _)| (*s, opts.steps))
        .chain(MORE.map(|s| (s, opts.steps)))
        .chain(FOUND_IN_LONG_RUNS.iter().map(|(s, steps, _)| (*s, *steps)));
    let mut failures = Vec::new();
    let mut faults = std::collections::BTreeMap::new();
    for (seed, steps) in runs {
        let opts = cairn_sim::Options {
            steps,
            ..opts.clone()
        };
        match cairn_sim::run(seed, &opts) {
            Ok(report) => {
                assert!(
                    report.oracle_checks > 10,
                    "seed {seed} checked little: {report:?}"
                );
                for (k, n) in report.faults {
                    *faults.entry(k).or_insert(0) += n;
                }
            }
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in [
        "crash at a write",
        "process stopped",
        "host suspended",
        "wall clock stepped",
        "time passes",
    ] {
        assert!(
            faults.contains_key(kind),
            "no {kind} in these seeds: {faults:?}"
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let opts = cairn_sim::Options {
        steps: 300,
        ..cairn_sim::Options::default()
    };
    let first = cairn_sim::run(11, &opts).expect("seed 11 passes");
    let again = cairn_sim::run(11, &opts).expect("seed 11 passes");
    assert!(first.log.len() > 300);
    assert_eq!(first.log, again.log);
}
