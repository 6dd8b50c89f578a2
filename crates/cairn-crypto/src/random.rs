//! Every random byte cairn uses: nonces, salts, keys, repository and session ids, pack order.
//!
//! They come from the operating system's generator (`rand::thread_rng`), unless the calling
//! thread runs a deterministic simulation (`seed_this_thread`), where they come from a seeded
//! generator so that one seed replays one run exactly. Nothing outside a simulation seeds.

use rand::{RngCore, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static SEEDED: RefCell<Option<rand::rngs::StdRng>> = const { RefCell::new(None) };
}

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(rng) => rng.fill_bytes(buf),
        None => rand::thread_rng().fill_bytes(buf),
    })
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fill(&mut b);
    b
}

pub fn u64() -> u64 {
    u64::from_le_bytes(bytes())
}

/// Makes this thread's random bytes a function of `seed` from now on: for the deterministic
/// simulation of the garbage-collection protocol only. Keys and nonces made this way are
/// predictable to anyone who knows the seed, so no command ever calls it.
pub fn seed_this_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(rand::rngs::StdRng::seed_from_u64(seed)));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_seeded_thread_repeats_itself_and_others_do_not() {
        let run = |seed| {
            std::thread::spawn(move || {
                super::seed_this_thread(seed);
                (super::bytes::<32>(), super::u64())
            })
            .join()
            .unwrap()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let os = std::thread::spawn(super::bytes::<32>).join().unwrap();
        assert_ne!(os, super::bytes::<32>());
    }
}
