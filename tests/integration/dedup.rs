//! Deduplication: content-defined chunks survive an insertion, and a copy costs only metadata.

use crate::util::*;
use std::fs;

const MIB: u64 = 1 << 20;

#[test]
fn shifted_and_copied_content_is_stored_once() {
    let t = setup();
    t.init();
    let src = t.join("src");
    let data = random_bytes(32, 32 << 20);
    write(src.join("big.bin"), &data);

    let first = t.backup([&src]);
    let stored = num(&first, "bytes_added");
    assert!(
        stored >= 32 * MIB,
        "32 MiB of random data stored as {stored} bytes: {first}"
    );

    // One byte inserted at the start shifts every byte; only the first chunk changes.
    let mut shifted = Vec::with_capacity(data.len() + 1);
    shifted.push(b'!');
    shifted.extend_from_slice(&data);
    drop(data);
    write(src.join("big.bin"), &shifted);
    let second = t.backup([&src]);
    assert_eq!(num(&second, "files_changed"), 1, "{second}");
    let added = num(&second, "bytes_added");
    assert!(added > 0, "{second}");
    assert!(
        added < 4 * MIB,
        "a one-byte insertion stored {added} bytes: {second}"
    );

    // A copy of the file at a second path adds only trees.
    write(src.join("copy/big-copy.bin"), &shifted);
    let third = t.backup([&src]);
    assert_eq!(num(&third, "files_new"), 1, "{third}");
    assert_eq!(num(&third, "bytes_read"), shifted.len() as u64, "{third}");
    let added = num(&third, "bytes_added");
    assert!(
        added < 128 << 10,
        "a copy of a stored file added {added} bytes: {third}"
    );
    assert!(num(&third, "raw_bytes_added") < 128 << 10, "{third}");

    // Both names restore to the right bytes.
    let before = scan(&src);
    let target = t.join("restore");
    t.restore("latest", &target);
    let after = scan(&restored(&target, &src));
    assert_same_tree(&before, &after, Compare::exact());
    assert_eq!(
        fs::read(restored(&target, &src.join("copy/big-copy.bin"))).unwrap(),
        shifted
    );
}
