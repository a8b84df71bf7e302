//! Where a key is in the file, for validation errors: serde_yaml gives positions to the errors it
//! raises itself (syntax, unknown keys, wrong types) but its `Value` keeps none, and validation
//! runs after the file is read. So the file is read again, only when an error is to be shown,
//! walking the error's place (`accounts[1].regions[0]`) with a `DeserializeSeed` that fails on
//! purpose when it reaches the node: serde_yaml marks that error with the node's line and column,
//! as it marks its own.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A line and column in the file, both from 1, as serde_yaml's errors count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// One step of a place: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The steps of `place` (`accounts[1].regions[0]`); None when it does not read as a path.
fn steps(place: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in place.split('.') {
        let (key, mut indexes) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(rest) = indexes.strip_prefix('[') {
            let (number, after) = rest.split_once(']')?;
            steps.push(Step::Index(number.parse().ok()?));
            indexes = after;
        }
        if !indexes.is_empty() {
            return None;
        }
    }
    Some(steps)
}

/// The position of the key at `place` in the YAML `text` (of an index, its item); when the file
/// does not have that key (a missing one is the error), the position of the nearest enclosing
/// one that it has. None when not even the first step is in the file (`AWS_REGION`).
pub fn locate(text: &str, place: &str) -> Option<Position> {
    let steps = steps(place)?;
    (1..=steps.len())
        .rev()
        .find_map(|n| position_of(text, &steps[..n]))
}

/// The message of the error raised on purpose at the node sought.
const HERE: &str = "\u{0}here";

fn position_of(text: &str, steps: &[Step<'_>]) -> Option<Position> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let error = Seek { steps }.deserialize(deserializer).err()?;
    // serde_yaml puts the path it has walked before the message (`collection.interval: …`).
    if error.to_string().contains(HERE) {
        error.location().map(|at| Position {
            line: at.line(),
            column: at.column(),
        })
    } else {
        None
    }
}

/// Walks `steps` down from the node it is given; fails with [`HERE`] at the last one, succeeds
/// (found nothing) when a step is not there.
struct Seek<'s, 'a> {
    steps: &'s [Step<'a>],
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let Some((Step::Key(wanted), rest)) = self.steps.split_first() else {
            return Ok(());
        };
        while let Some(matched) = map.next_key_seed(KeySeek {
            wanted,
            last: rest.is_empty(),
        })? {
            if matched {
                return map.next_value_seed(Seek { steps: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let Some((Step::Index(wanted), rest)) = self.steps.split_first() else {
            return Ok(());
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        if rest.is_empty() {
            // The item itself: fail inside it, so that the error carries its position.
            seq.next_element_seed(Here)?;
            return Ok(());
        }
        seq.next_element_seed(Seek { steps: rest }).map(|_| ())
    }

    // Scalars have no keys or items: the step is not there.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // A tagged node (`!Tag value`): nothing the config file has.
        Ok(())
    }
}

/// Reads one mapping key: whether it is the one wanted; fails with [`HERE`] at it when it is
/// and it is the last step. Keys that are numbers or booleans (`1: x`) compare as written.
struct KeySeek<'w> {
    wanted: &'w str,
    last: bool,
}

impl KeySeek<'_> {
    fn check<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        match key == self.wanted {
            true if self.last => Err(E::custom(HERE)),
            matched => Ok(matched),
        }
    }
}

impl<'de> DeserializeSeed<'de> for KeySeek<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeek<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        self.check(key)
    }
    fn visit_bool<E: de::Error>(self, key: bool) -> Result<bool, E> {
        self.check(&key.to_string())
    }
    fn visit_i64<E: de::Error>(self, key: i64) -> Result<bool, E> {
        self.check(&key.to_string())
    }
    fn visit_u64<E: de::Error>(self, key: u64) -> Result<bool, E> {
        self.check(&key.to_string())
    }
    fn visit_f64<E: de::Error>(self, key: f64) -> Result<bool, E> {
        self.check(&key.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<bool, M::Error> {
        // A mapping as a key (`? {a: 1}`): never one the config file names.
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<bool, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Fails with [`HERE`] at whatever node it is given.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // IgnoredAny consumes the node; the error raised after it is then marked with the
        // position of the next event. Failing in the visitor marks it with the node's own.
        deserializer.deserialize_any(HereVisitor)
    }
}

struct HereVisitor;

impl<'de> Visitor<'de> for HereVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HERE)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_map<M: MapAccess<'de>>(self, _: M) -> Result<(), M::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<(), S::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# a comment
collection:
  interval: 5M
  timeout: 1m
regions: [us-east-1, us-eest-1]
accounts:
  - name: base
  - role_arn: arn:aws:iam::111111111111:role/R
    regions:
      - eu-west-1
      - moon-1
    cloudwatch: {period: 30s}
discovery:
  organizations:
    tags: {1: x, fast-launch: true}
";

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn places_are_found_where_the_key_or_item_is_written() {
        for (place, want) in [
            ("collection", at(2, 1)),
            ("collection.interval", at(3, 3)),
            ("collection.timeout", at(4, 3)),
            ("regions", at(5, 1)),
            ("regions[1]", at(5, 22)),
            ("accounts[0]", at(7, 5)),
            ("accounts[1].role_arn", at(8, 5)),
            ("accounts[1].regions[1]", at(11, 9)),
            ("accounts[1].cloudwatch.period", at(12, 18)),
            ("discovery.organizations.tags.fast-launch", at(15, 18)),
            ("discovery.organizations.tags.1", at(15, 12)),
        ] {
            assert_eq!(locate(FILE, place), want, "{place}");
        }
    }

    #[test]
    fn a_missing_key_is_placed_at_the_nearest_one_the_file_has() {
        for (place, want) in [
            // The key that is missing is the error: point at what should hold it.
            ("accounts[1].session_name", at(8, 5)),
            ("accounts[0].regions", at(7, 5)),
            ("collection.max_staleness", at(2, 1)),
            ("accounts[5]", at(6, 1)),
            ("events.queue_url", None),
            ("AWS_REGION", None),
            ("regions[0].x", at(5, 11)),
        ] {
            assert_eq!(locate(FILE, place), want, "{place}");
        }
        assert_eq!(locate("", "collection"), None);
        assert_eq!(locate("[1, 2]", "collection"), None);
        assert_eq!(locate(FILE, "accounts[x]"), None, "not a place");
    }
}
