//! A fast hasher for the scrape's own lookup tables, whose keys (account ids, regions, target
//! keys) come from the configuration and from AWS, never from a scraper. std's SipHash resists
//! hash flooding at a cost that showed at 17,000 targets a scrape; this is the multiply-rotate
//! hash rustc uses for its own tables.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed with [`FastHasher`].
pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A set keyed with [`FastHasher`].
pub(super) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// See the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that differ in a byte, in length or in where a string ends spread over a map.
    #[test]
    fn similar_keys_hash_apart() {
        let keys: Vec<(String, String)> = (0..1000)
            .flat_map(|account| {
                ["us-east-1", "us-east-2", "eu-west-1"]
                    .map(|region| (format!("{account:012}"), region.to_string()))
            })
            .collect();
        let hashes: FastSet<u64> = keys
            .iter()
            .map(|key| {
                let mut hasher = FastHasher::default();
                std::hash::Hash::hash(key, &mut hasher);
                hasher.finish()
            })
            .collect();
        assert_eq!(hashes.len(), keys.len());
        let map: FastMap<(&str, &str), usize> = keys
            .iter()
            .enumerate()
            .map(|(i, (a, r))| ((a.as_str(), r.as_str()), i))
            .collect();
        assert_eq!(map[&("000000000999", "eu-west-1")], 2999);
    }
}
