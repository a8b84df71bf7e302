//! A fast hasher for the scrape's own lookup tables and the stamps of cached lines, whose inputs
//! (account ids, regions, target keys, counters) come from the configuration and from AWS, never
//! from a scraper. std's SipHash resists hash flooding at a cost that showed at 17,000 targets a
//! scrape; this is a folded multiply (each word xored in, multiplied into 128 bits, the halves
//! xored), the mixing step of wyhash and foldhash: every input bit reaches every output bit, so
//! two different states of a block get the same stamp with a chance of about 2^-64, as with
//! SipHash (a multiply-rotate hash, as rustc's tables use, lets changes in two words cancel).

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

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    fn add(&mut self, word: u64) {
        let product = u128::from(self.hash ^ word ^ SEED) * u128::from(MULTIPLIER);
        self.hash = (product as u64) ^ ((product >> 64) as u64);
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

    /// Stamps of block states that differ in two values (two counters moved, one up, one down
    /// by as much) differ: the multiply-rotate hash let such changes cancel.
    #[test]
    fn states_that_differ_in_two_values_hash_apart() {
        let stamp = |values: &[u64]| {
            let mut hasher = FastHasher::default();
            for v in values {
                hasher.write_u64(*v);
            }
            hasher.finish()
        };
        let base: Vec<u64> = (0..64).collect();
        let mut stamps = FastSet::default();
        stamps.insert(stamp(&base));
        for i in 0..64 {
            for j in (i + 1)..64 {
                for delta in 1..4 {
                    let mut changed = base.clone();
                    changed[i] += delta;
                    changed[j] = changed[j].wrapping_sub(delta);
                    assert!(stamps.insert(stamp(&changed)), "{i} {j} {delta}");
                }
            }
        }
        // Zero words still count.
        assert_ne!(stamp(&[0]), stamp(&[0, 0]));
    }
}
