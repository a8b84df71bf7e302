//! Which replica collects which target: `--shard.index N --shard.total M` (default 0 of 1, no
//! sharding). A target belongs to shard
//! `jump_hash(fnv1a_64("<account_id>/<region>"), M)`: Lamping and Veach's jump consistent hash
//! ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) over the 64-bit FNV-1a hash of the
//! account id, a slash and the region name, in UTF-8. Going from M to M+1 shards moves about
//! 1/(M+1) of the targets, all to the new shard. Test vectors are in the tests below and the README.

use std::fmt;

/// FNV-1a, 64 bits: offset basis 0xcbf29ce484222325, prime 0x100000001b3.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Jump consistent hash: the bucket in `0..buckets` of `key` (`buckets` ≥ 1).
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// This process's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `--shard.index`, 0-based.
    pub index: u32,
    /// `--shard.total`, at least 1.
    pub total: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, total: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.index, self.total)
    }
}

impl Shard {
    /// A shard from the flags; an error naming the flag when out of range.
    pub fn new(index: u32, total: u32) -> Result<Shard, String> {
        if total == 0 {
            return Err("--shard.total must be at least 1".to_string());
        }
        if index >= total {
            return Err(format!(
                "--shard.index {index} must be below --shard.total {total}"
            ));
        }
        Ok(Shard { index, total })
    }

    /// Whether sharding is on (more than one shard).
    pub fn is_sharded(&self) -> bool {
        self.total > 1
    }

    /// The shard that owns (account id, region).
    pub fn of(account_id: &str, region: &str, total: u32) -> u32 {
        jump_hash(
            fnv1a_64(format!("{account_id}/{region}").as_bytes()),
            total.max(1),
        )
    }

    /// Whether this shard owns (account id, region).
    pub fn owns(&self, account_id: &str, region: &str) -> bool {
        !self.is_sharded() || Shard::of(account_id, region, self.total) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vectors_match_an_independent_implementation() {
        // Computed with a separate Python implementation of both functions.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"111111111111/us-east-1"), 0x3391_8223_b535_4e86);
        assert_eq!(fnv1a_64(b"222222222222/eu-west-1"), 0x83f9_6a52_b1d7_9f2e);
        let cases: [(&str, [u32; 6]); 3] = [
            ("111111111111/us-east-1", [0, 0, 2, 2, 2, 985]),
            ("222222222222/eu-west-1", [0, 0, 2, 3, 5, 213]),
            ("123456789012/ap-southeast-2", [0, 0, 0, 0, 0, 485]),
        ];
        for (text, expected) in cases {
            let got: Vec<u32> = [1, 2, 3, 4, 10, 1000]
                .iter()
                .map(|n| jump_hash(fnv1a_64(text.as_bytes()), *n))
                .collect();
            assert_eq!(got, expected, "{text}");
        }
        assert_eq!(jump_hash(0xcbf2_9ce4_8422_2325, 1000), 266);
    }

    #[test]
    fn three_to_four_shards_moves_about_a_quarter_all_to_the_new_shard() {
        let targets: Vec<(String, String)> = (0..10_000u64)
            .map(|i| {
                (
                    format!("{:012}", 100_000_000_000 + i / 17),
                    format!("region-{}", i % 17),
                )
            })
            .collect();
        let mut moved = 0;
        let mut per_shard = [0usize; 4];
        for (account, region) in &targets {
            let (three, four) = (Shard::of(account, region, 3), Shard::of(account, region, 4));
            per_shard[four as usize] += 1;
            if three != four {
                moved += 1;
                assert_eq!(four, 3, "a moved target goes to the new shard");
            }
        }
        // Ideal: 2,500 of 10,000.
        assert!((2_250..=2_750).contains(&moved), "{moved} moved");
        for count in per_shard {
            assert!((2_250..=2_750).contains(&count), "{per_shard:?}");
        }
    }

    #[test]
    fn flags_out_of_range_are_refused_and_one_shard_owns_everything() {
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(
            Shard::new(3, 3).unwrap_err(),
            "--shard.index 3 must be below --shard.total 3"
        );
        let one = Shard::default();
        assert!(!one.is_sharded() && one.owns("111111111111", "us-east-1"));
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let owners = shards
            .iter()
            .filter(|s| s.owns("111111111111", "us-east-1"))
            .count();
        assert_eq!(owners, 1);
    }
}
