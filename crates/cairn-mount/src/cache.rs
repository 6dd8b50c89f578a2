//! `BlobCache`: the decrypted data blobs a mount read last, least recently used first out.
//!
//! Invariant: the bytes held never exceed the capacity, except for the one blob just loaded
//! when it alone is larger (a reader needs it whole to copy from); a file is never held whole
//! unless it fits, however large it is, because reads go through here chunk by chunk.

use cairn_format::DataId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub struct BlobCache {
    capacity: u64,
    held: u64,
    /// Each blob with the tick of its last use.
    blobs: HashMap<DataId, (Arc<Vec<u8>>, u64)>,
    /// Last use to blob: the first entry is the one to evict.
    by_use: BTreeMap<u64, DataId>,
    tick: u64,
}

impl BlobCache {
    pub fn new(capacity: u64) -> BlobCache {
        BlobCache {
            capacity,
            held: 0,
            blobs: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The blob, if held; it becomes the most recently used.
    pub fn get(&mut self, id: &DataId) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let (bytes, used) = self.blobs.get_mut(id)?;
        self.by_use.remove(used);
        *used = self.tick;
        self.by_use.insert(self.tick, *id);
        Some(bytes.clone())
    }

    /// Holds a blob as the most recently used, evicting the least recently used ones beyond the
    /// capacity.
    pub fn insert(&mut self, id: DataId, bytes: Arc<Vec<u8>>) {
        if self.blobs.contains_key(&id) {
            self.get(&id);
            return;
        }
        self.tick += 1;
        self.held += bytes.len() as u64;
        self.blobs.insert(id, (bytes, self.tick));
        self.by_use.insert(self.tick, id);
        while self.held > self.capacity && self.blobs.len() > 1 {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((gone, _)) = self.blobs.remove(&oldest) {
                self.held -= gone.len() as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::Id;

    fn id(n: u8) -> DataId {
        DataId(Id([n; 32]))
    }

    fn blob(len: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![7; len])
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_bound_holds() {
        let mut cache = BlobCache::new(300);
        cache.insert(id(1), blob(100));
        cache.insert(id(2), blob(100));
        cache.insert(id(3), blob(100));
        assert!(cache.get(&id(1)).is_some()); // 2 is now the least recently used
        cache.insert(id(4), blob(100));
        assert!(cache.get(&id(2)).is_none());
        assert!(cache.get(&id(1)).is_some());
        assert!(cache.get(&id(3)).is_some());
        assert!(cache.get(&id(4)).is_some());
        assert_eq!(cache.held(), 300);
        for n in 5..100 {
            cache.insert(id(n), blob(usize::from(n)));
            assert!(cache.held() <= 300, "{} bytes held", cache.held());
        }
    }

    #[test]
    fn a_blob_larger_than_the_capacity_is_held_alone() {
        let mut cache = BlobCache::new(100);
        cache.insert(id(1), blob(50));
        cache.insert(id(2), blob(500));
        assert!(cache.get(&id(1)).is_none());
        assert_eq!(cache.get(&id(2)).map(|b| b.len()), Some(500));
        cache.insert(id(3), blob(10));
        assert!(cache.get(&id(2)).is_none());
        assert_eq!(cache.held(), 10);
    }

    #[test]
    fn inserting_a_held_blob_counts_it_once() {
        let mut cache = BlobCache::new(1000);
        cache.insert(id(1), blob(100));
        cache.insert(id(1), blob(100));
        assert_eq!(cache.held(), 100);
    }
}
