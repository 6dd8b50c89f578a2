//! Content-defined chunking: FastCDC as published in 2020 (Xia et al., "The Design of Fast
//! Content-Defined Chunking for Data Deduplication Based Storage Systems"), with normalised
//! chunking at level 2 and a gear table supplied whole by the caller.
//!
//! The caller derives all 256 gear entries from a secret key. Published attacks on borg- and
//! restic-style chunkers recover chunk-size fingerprints when the table is public or only
//! lightly perturbed (the `fastcdc` crate's `seed` XORs one value into a fixed table), so no part
//! of this table is fixed.
//!
//! The chunker does no I/O: it is given bytes and says where the next chunk ends.
//!
//! The loop is written here rather than taken from the `fastcdc` crate's `v2020::cut_gear`: that
//! scan rolls two bytes at a time and cannot test bit 63 of every other byte's hash, which our
//! masks test, so it would move cut points (ARCHITECTURE.md, `crates/cairn-chunker`).
//!
//! Invariant: for the same table and sizes, cut points depend only on the bytes, never on how the
//! caller buffered them. Existing repositories deduplicate against new backups only while that
//! holds, so the golden test at the bottom pins the boundaries of seeded data.

/// A chunker's parameters. Cut points are found with a gear hash: `h = (h << 1) + gear[byte]`,
/// whose bit k depends on the last k + 1 bytes only. A cut is made after a byte where the top
/// `bits` of `h` are all zero, so the window that decides a cut is 64 - bits + 1 >= 40 bytes wide.
#[derive(Clone)]
pub struct Chunker {
    gear: Box<[u64; 256]>,
    min: usize,
    avg: usize,
    max: usize,
    /// Harder mask (2 more bits) before `avg`, easier (2 fewer) after: normalised chunking level 2,
    /// which narrows the size distribution around `avg` (the paper's Table 4).
    mask_small: u64,
    mask_large: u64,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The gear table is derived from a secret; never print it.
        write!(f, "Chunker({}/{}/{})", self.min, self.avg, self.max)
    }
}

fn top_bits(n: u32) -> u64 {
    !0u64 << (64 - n)
}

impl Chunker {
    /// `avg` must be a power of two with `64 <= min <= avg <= max`.
    pub fn new(gear: [u64; 256], min: usize, avg: usize, max: usize) -> Chunker {
        assert!(avg.is_power_of_two() && 64 <= min && min <= avg && avg <= max);
        let bits = avg.trailing_zeros();
        assert!((8..=30).contains(&bits));
        Chunker {
            gear: Box::new(gear),
            min,
            avg,
            max,
            mask_small: top_bits(bits + 2),
            mask_large: top_bits(bits - 2),
        }
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Where the chunk starting at `data[0]` ends, or `None` if that depends on bytes not yet
    /// given. `eof` says that `data` holds everything left of the stream.
    pub fn next_boundary(&self, data: &[u8], eof: bool) -> Option<usize> {
        if let Some(cut) = self.cut(data) {
            return Some(cut);
        }
        if data.len() >= self.max || eof {
            return Some(data.len().min(self.max));
        }
        None
    }

    /// The first content-defined cut in `data`, if there is one before `max` bytes.
    fn cut(&self, data: &[u8]) -> Option<usize> {
        let end = data.len().min(self.max);
        if end <= self.min {
            return None;
        }
        let normal = self.avg.min(end);
        let gear = &*self.gear;
        let mut hash: u64 = 0;
        // The first `min` bytes cannot end a chunk, and bytes more than 64 back no longer
        // influence the hash, so hashing starts at `min`.
        for (i, &b) in data[self.min..normal].iter().enumerate() {
            hash = (hash << 1).wrapping_add(gear[b as usize]);
            if hash & self.mask_small == 0 {
                return Some(self.min + i + 1);
            }
        }
        for (i, &b) in data[normal..end].iter().enumerate() {
            hash = (hash << 1).wrapping_add(gear[b as usize]);
            if hash & self.mask_large == 0 {
                return Some(normal + i + 1);
            }
        }
        None
    }

    /// All chunk lengths of a complete in-memory buffer.
    pub fn chunks<'a>(&'a self, mut data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        std::iter::from_fn(move || {
            if data.is_empty() {
                return None;
            }
            let cut = self
                .next_boundary(data, true)
                .expect("eof always yields a boundary");
            let (chunk, rest) = data.split_at(cut);
            data = rest;
            Some(chunk)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    fn gear(seed: u64) -> [u64; 256] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        std::array::from_fn(|_| rng.next_u64())
    }

    fn random(seed: u64, n: usize) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    }

    #[test]
    fn sizes_stay_within_bounds_and_cover_input() {
        let c = Chunker::new(gear(1), 4096, 16384, 65536);
        let data = random(2, 4 << 20);
        let lens: Vec<usize> = c.chunks(&data).map(<[u8]>::len).collect();
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        let (last, body) = lens.split_last().unwrap();
        assert!(body.iter().all(|&l| (4096..=65536).contains(&l)));
        assert!(*last <= 65536);
        let mean = data.len() / lens.len();
        assert!((12000..24000).contains(&mean), "mean chunk {mean}");
    }

    #[test]
    fn an_insertion_only_changes_nearby_chunks() {
        let c = Chunker::new(gear(3), 4096, 16384, 65536);
        let data = random(4, 2 << 20);
        let mut edited = data.clone();
        edited.insert(1000, 0x55);
        let a: std::collections::HashSet<&[u8]> = c.chunks(&data).collect();
        let b: Vec<&[u8]> = c.chunks(&edited).collect();
        let new = b.iter().filter(|ch| !a.contains(*ch)).count();
        assert!(new <= 2, "{new} chunks changed");
    }

    #[test]
    fn the_table_decides_the_cuts() {
        let data = random(5, 1 << 20);
        let a: Vec<usize> = Chunker::new(gear(6), 4096, 16384, 65536)
            .chunks(&data)
            .map(<[u8]>::len)
            .collect();
        let b: Vec<usize> = Chunker::new(gear(7), 4096, 16384, 65536)
            .chunks(&data)
            .map(<[u8]>::len)
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn zeros_are_cut_at_a_fixed_size() {
        let c = Chunker::new(gear(8), 4096, 16384, 65536);
        let data = vec![0u8; 1 << 20];
        let lens: Vec<usize> = c.chunks(&data).map(<[u8]>::len).collect();
        assert!(lens
            .windows(2)
            .take(lens.len().saturating_sub(2))
            .all(|w| w[0] == w[1]));
    }

    /// SplitMix64, spelled out so the golden data cannot change with a dependency's version.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    // Guards against any change of cut points: such a change silently breaks deduplication
    // against every existing repository.
    #[test]
    fn golden_boundaries() {
        let mut state = 42;
        let table = std::array::from_fn(|_| splitmix(&mut state));
        let data: Vec<u8> = (0..12 << 20).map(|_| splitmix(&mut state) as u8).collect();
        let c = Chunker::new(table, 512 << 10, 1 << 20, 8 << 20);
        let lens: Vec<usize> = c.chunks(&data).map(<[u8]>::len).collect();
        assert_eq!(lens, GOLDEN);
    }
    const GOLDEN: &[usize] = &[
        1314146, 1130774, 1102888, 1374545, 1641345, 1271283, 1361429, 1555470, 1340912, 490120,
    ];

    proptest::proptest! {
        #[test]
        fn streaming_matches_whole_buffer(seed in 0u64..1000, step in 1usize..70000) {
            let c = Chunker::new(gear(seed), 256, 1024, 8192);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let n = rng.gen_range(0..100_000);
            let data = random(seed, n);
            let whole: Vec<usize> = c.chunks(&data).map(<[u8]>::len).collect();
            // Feed the stream in pieces of `step` bytes, as a reader with a small buffer would.
            let mut streamed = Vec::new();
            let mut start = 0;
            let mut avail = 0;
            while start < data.len() {
                let eof = avail == data.len();
                match c.next_boundary(&data[start..avail], eof) {
                    Some(cut) => { streamed.push(cut); start += cut; }
                    None => avail = (avail + step).min(data.len()),
                }
            }
            proptest::prop_assert_eq!(whole, streamed);
        }
    }
}
