//! `update` on real files in a temp dir, read back with `parse`.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const LAST_SUCCESS: &str = "cairn_last_success_timestamp_seconds";
const FILES: &str = "cairn_files";

fn samples(time: f64, files: f64) -> [Sample; 2] {
    [
        Sample {
            name: LAST_SUCCESS,
            help: "When the last run ended without error, in seconds since the epoch.",
            value: time,
        },
        Sample {
            name: FILES,
            help: "Files the last run looked at.",
            value: files,
        },
    ]
}

fn labels(profile: &str) -> Vec<(String, String)> {
    vec![
        ("command".to_string(), "backup".to_string()),
        ("profile".to_string(), profile.to_string()),
    ]
}

fn value_of(text: &str, name: &str, profile: &str) -> Option<f64> {
    parse(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == labels(profile))
        .map(|(_, _, v)| v)
}

#[test]
fn update_keeps_other_label_sets_and_replaces_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    let home = [("profile", "home"), ("command", "backup")];
    let work = [("command", "backup"), ("profile", "work")];
    // A missing file is an empty one.
    update(&path, &home, &samples(1736500000.25, 10.0)).unwrap();
    update(&path, &work, &samples(1736500100.0, 20.0)).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(parse(&text).len(), 4, "{text}");
    assert_eq!(value_of(&text, LAST_SUCCESS, "home"), Some(1736500000.25));
    assert_eq!(value_of(&text, FILES, "work"), Some(20.0));

    update(&path, &home, &samples(1736600000.5, 11.0)).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(parse(&text).len(), 4, "{text}");
    assert_eq!(value_of(&text, LAST_SUCCESS, "home"), Some(1736600000.5));
    assert_eq!(value_of(&text, FILES, "home"), Some(11.0));
    assert_eq!(value_of(&text, LAST_SUCCESS, "work"), Some(1736500100.0));
    // Timestamps are plain float seconds, not an exponent form.
    assert!(text.contains(" 1736600000.5\n"), "{text}");
}

#[test]
fn help_and_type_appear_once_per_metric_with_its_samples_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    for profile in ["a", "b", "c"] {
        update(&path, &[("profile", profile)], &samples(1.0, 2.0)).unwrap();
    }
    let text = fs::read_to_string(&path).unwrap();
    for name in [LAST_SUCCESS, FILES] {
        assert_eq!(
            text.matches(&format!("# HELP {name} ")).count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches(&format!("# TYPE {name} gauge\n")).count(),
            1,
            "{text}"
        );
    }
    // Each sample line follows the TYPE line of its own metric, with no other metric between.
    let mut current = None;
    let mut n_samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next();
            assert_eq!(
                name, current,
                "{line:?} is not under its TYPE line:\n{text}"
            );
            n_samples += 1;
        }
    }
    assert_eq!(n_samples, 6, "{text}");
}

#[test]
fn label_values_are_escaped_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    let odd = "a \"quoted\" C:\\path\\ and\na newline";
    update(&path, &[("repository", odd)], &samples(3.0, 4.0)).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(r#"repository="a \"quoted\" C:\\path\\ and\na newline""#),
        "{text}"
    );
    // Two HELP, two TYPE and two sample lines: the newline did not split a sample.
    assert_eq!(text.lines().count(), 6, "{text}");
    let parsed = parse(&text);
    assert_eq!(parsed.len(), 2);
    for (_, labels, _) in &parsed {
        assert_eq!(labels, &vec![("repository".to_string(), odd.to_string())]);
    }
    // The same label set again replaces rather than adds.
    update(&path, &[("repository", odd)], &samples(5.0, 6.0)).unwrap();
    let parsed = parse(&fs::read_to_string(&path).unwrap());
    assert_eq!(parsed.len(), 2);
    assert!(parsed
        .iter()
        .any(|(n, _, v)| n == LAST_SUCCESS && *v == 5.0));
}

#[test]
fn lines_that_do_not_parse_are_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    fs::write(
        &path,
        "# HELP other_metric Written by another writer.\n\
         # TYPE other_metric gauge\n\
         other_metric{host=\"db-1\"} 7\n\
         this is not a sample\n\
         broken{label=\"unterminated} 1\n\
         bad_value{a=\"1\"} many\n\
         bad_escape{a=\"\\t\"} 1\n\
         # a comment of no kind\n\
         \n\
         stamped 3 1736500000000\n",
    )
    .unwrap();
    update(&path, &[("profile", "home")], &samples(8.0, 9.0)).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    for gone in ["this is", "broken", "bad_value", "bad_escape", "a comment"] {
        assert!(!text.contains(gone), "{gone:?} is still in:\n{text}");
    }
    assert!(
        text.contains("# HELP other_metric Written by another writer.\n"),
        "{text}"
    );
    let parsed = parse(&text);
    let names: Vec<&str> = parsed.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["other_metric", "stamped", LAST_SUCCESS, FILES],
        "{text}"
    );
    let host = vec![("host".to_string(), "db-1".to_string())];
    assert_eq!(parsed[0], ("other_metric".to_string(), host, 7.0));
    // The textfile collector refuses timestamps; the sample stays, its timestamp goes.
    assert!(text.contains("\nstamped 3\n"), "{text}");
}

#[test]
fn the_file_is_replaced_whole_and_no_temp_file_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    update(&path, &[("profile", "home")], &samples(1.0, 1.0)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let before = fs::metadata(&path).unwrap();
    update(&path, &[("profile", "home")], &samples(2.0, 2.0)).unwrap();
    let after = fs::metadata(&path).unwrap();
    // A new inode: the file was renamed over, not rewritten in place (node_exporter could
    // have read a half-written file then).
    assert_ne!(before.ino(), after.ino());
    assert_eq!(after.permissions().mode() & 0o777, 0o640);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["cairn.prom", "cairn.prom.lock"]);
}

#[test]
fn concurrent_updates_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    std::thread::scope(|scope| {
        for thread in 0..6 {
            let path = &path;
            scope.spawn(move || {
                for run in 0..8 {
                    let profile = format!("p{thread}-{run}");
                    update(path, &[("profile", &profile)], &samples(1.0, 2.0)).unwrap();
                }
            });
        }
    });
    let parsed = parse(&fs::read_to_string(&path).unwrap());
    assert_eq!(parsed.len(), 6 * 8 * 2);
}

#[test]
fn special_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    let values = [
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-9,
        -0.5,
        12345678901234.5,
    ];
    for (i, value) in values.iter().enumerate() {
        let sample = Sample {
            name: "cairn_value",
            help: "A value.",
            value: *value,
        };
        update(&path, &[("i", &i.to_string())], &[sample]).unwrap();
    }
    let nan = Sample {
        name: "cairn_nan",
        help: "Not a number.",
        value: f64::NAN,
    };
    update(&path, &[], &[nan]).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("+Inf") && text.contains("-Inf") && text.contains("cairn_nan NaN"));
    let parsed = parse(&text);
    let read: Vec<f64> = parsed.iter().take(values.len()).map(|s| s.2).collect();
    assert_eq!(read, values, "{text}");
    assert!(parsed[values.len()].2.is_nan());
}

#[test]
fn names_prometheus_refuses_are_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.prom");
    let err = update(&path, &[("bad-name", "x")], &samples(1.0, 1.0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("bad-name"), "{err}");
    let reserved = update(&path, &[("__name__", "x")], &samples(1.0, 1.0)).unwrap_err();
    assert_eq!(reserved.kind(), io::ErrorKind::InvalidInput);
    let bad_metric = Sample {
        name: "cairn-files",
        help: "",
        value: 1.0,
    };
    let err = update(&path, &[], &[bad_metric]).unwrap_err();
    assert!(err.to_string().contains("cairn-files"), "{err}");
    assert!(!path.exists());
}
