//! `cairn stats --json`: every figure checked against a repository whose content the test
//! knows, and "added" the same in `stats`, `backup` and `backup --dry-run`.

use crate::util::*;
use serde_json::Value;
use std::ffi::OsStr;

const KIB: u64 = 1024;

fn stats(t: &Dir, extra: &[&str]) -> Value {
    let mut args = vec!["stats", "--json"];
    args.extend_from_slice(extra);
    t.ok(args).json()
}

/// The size of every pack file, as the store holds them.
fn pack_bytes(t: &Dir) -> u64 {
    files_below(&t.repo().join("data"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn stats_json_agrees_with_a_repository_the_test_built() {
    let t = setup();
    t.init_with(&["--chunk-size", "64"]);
    let src = t.join("src");
    // Random content does not compress and shares no chunk with other random content; `b` is
    // `a` again and so adds nothing.
    write(src.join("a"), random_bytes(1, 200 * KIB as usize));
    write(src.join("b"), random_bytes(1, 200 * KIB as usize));
    write(src.join("dir/c"), random_bytes(2, 50 * KIB as usize));
    let first = t.backup([src.as_os_str()]);
    write(src.join("dir/d"), random_bytes(3, 100 * KIB as usize));
    let dry = t.backup([src.as_os_str(), OsStr::new("--dry-run")]);
    let second = t.backup([src.as_os_str()]);
    // A dry run estimates what the backup then adds, stored and raw.
    assert_eq!(
        num(&dry, "bytes_added_stored"),
        num(&second, "bytes_added_stored")
    );
    assert_eq!(
        num(&dry, "bytes_added_raw"),
        num(&second, "bytes_added_raw")
    );

    let s = stats(&t, &[]);
    assert_eq!(num(&s, "snapshots"), 2);
    assert_eq!(num(&s, "restored_files"), 3 + 4);
    assert_eq!(num(&s, "restored_bytes"), (450 + 550) * KIB);
    assert_eq!(num(&s["data"], "raw_bytes"), 350 * KIB, "{s}");
    assert_eq!(num(&s, "deduplicated_raw_bytes"), 350 * KIB);
    assert_eq!(num(&s, "pack_bytes"), pack_bytes(&t));
    assert_eq!(num(&s, "unused_bytes"), 0, "{s}");
    let stored = num(&s, "stored_bytes");
    assert!(stored > 350 * KIB && stored < num(&s, "pack_bytes"), "{s}");
    let dedup = s["deduplication_ratio"].as_f64().unwrap();
    assert!((dedup - 1000.0 / 350.0).abs() < 1e-9, "{s}");
    let compression = s["compression_ratio"].as_f64().unwrap();
    let expect = num(&s, "raw_bytes") as f64 / stored as f64;
    assert!((compression - expect).abs() < 1e-9, "{s}");

    // What each snapshot added is what its backup reported adding.
    let per = s["per_snapshot"].as_array().unwrap();
    for (row, backup) in per.iter().zip([&first, &second]) {
        assert_eq!(row["id"].as_str(), backup["snapshot_id"].as_str());
        assert_eq!(
            num(&row["added"], "stored_bytes"),
            num(backup, "bytes_added_stored")
        );
        assert_eq!(
            num(&row["added"], "raw_bytes"),
            num(backup, "bytes_added_raw")
        );
        assert_eq!(num(&row["added"], "blobs"), num(backup, "blobs_added"));
    }
    assert_eq!(num(&per[1], "restored_bytes"), 550 * KIB);
    let day_sum: u64 = s["growth_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| num(&d["added"], "stored_bytes"))
        .sum();
    assert_eq!(day_sum, stored, "growth adds up to what is stored");
    let hosts = s["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(num(&hosts[0], "snapshots"), 2);
    assert_eq!(num(&hosts[0], "latest_restored_bytes"), 550 * KIB);

    // Counting only the first: what it reaches, whoever added it.
    let id = string(&first, "snapshot_id").unwrap();
    let one = stats(&t, &[&id]);
    assert_eq!(num(&one, "snapshots"), 1);
    assert_eq!(num(&one, "restored_bytes"), 450 * KIB);
    assert_eq!(num(&one["data"], "raw_bytes"), 250 * KIB);
    assert_eq!(num(&one, "snapshots_in_repository"), 2);

    // Forgetting the second leaves `d` unused: stats says so, and prune frees that much.
    let second_id = string(&second, "snapshot_id").unwrap();
    t.ok(["forget", second_id.as_str()]);
    let after = stats(&t, &[]);
    let unused = num(&after, "unused_bytes");
    assert!(unused > 100 * KIB, "{after}");
    let before = pack_bytes(&t);
    t.ok(["prune", "--max-unused", "0"]);
    assert_eq!(
        pack_bytes(&t),
        before - unused,
        "prune freed what stats said"
    );
    assert_eq!(num(&stats(&t, &[]), "unused_bytes"), 0);
    t.check();
}
