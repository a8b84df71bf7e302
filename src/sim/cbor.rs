//! Just enough CBOR (RFC 8949) for the simulator's CloudWatch: decodes any well-formed item
//! (definite and indefinite lengths, as the SDK's encoder writes maps and lists with an
//! indefinite length) and encodes answers with definite lengths, doubles, and epoch-seconds
//! timestamps (tag 1).

/// One CBOR data item.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Tag(u64, Box<Value>),
    Bool(bool),
    Null,
    Float(f64),
}

impl Value {
    /// The value of key `name` in a map.
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    pub(super) fn as_array(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }

    pub(super) fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// A timestamp (tag 1 over an integer or a float), as Unix seconds.
    pub(super) fn as_epoch_seconds(&self) -> Option<f64> {
        match self {
            Value::Tag(1, inner) => match **inner {
                Value::Int(n) => Some(n as f64),
                Value::Float(f) => Some(f),
                _ => None,
            },
            _ => None,
        }
    }

    /// A text-keyed map.
    pub(super) fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.to_string()), v))
                .collect(),
        )
    }

    pub(super) fn text(text: &str) -> Value {
        Value::Text(text.to_string())
    }

    pub(super) fn timestamp(unix_seconds: i64) -> Value {
        Value::Tag(1, Box::new(Value::Float(unix_seconds as f64)))
    }
}

/// Why a body is not CBOR.
#[derive(Debug, PartialEq)]
pub(super) struct DecodeError(pub(super) &'static str);

/// Decodes one item that must fill `bytes` exactly.
pub(super) fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.item(0)?;
    if reader.at != bytes.len() {
        return Err(DecodeError("bytes after the item"));
    }
    Ok(value)
}

/// Items nested deeper than this are refused (a hostile body cannot overflow the stack).
const MAX_DEPTH: u32 = 64;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

enum Head {
    Break,
    Item {
        major: u8,
        info: u8,
        arg: Option<u64>,
    },
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError("cut short"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn head(&mut self) -> Result<Head, DecodeError> {
        let first = self.take(1)?[0];
        if first == 0xff {
            return Ok(Head::Break);
        }
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let n = 1usize << (info - 24);
                Some(
                    self.take(n)?
                        .iter()
                        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                )
            }
            31 => None,
            _ => return Err(DecodeError("reserved additional information")),
        };
        Ok(Head::Item { major, info, arg })
    }

    fn item(&mut self, depth: u32) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("nested too deep"));
        }
        let Head::Item { major, info, arg } = self.head()? else {
            return Err(DecodeError("unexpected break"));
        };
        match (major, arg) {
            (0, Some(n)) => Ok(Value::Int(i128::from(n))),
            (1, Some(n)) => Ok(Value::Int(-1 - i128::from(n))),
            (2, _) => self.string(major, arg).map(Value::Bytes),
            (3, _) => String::from_utf8(self.string(major, arg)?)
                .map(Value::Text)
                .map_err(|_| DecodeError("text is not UTF-8")),
            (4, _) => {
                let mut items = Vec::new();
                self.each(arg, |r| {
                    items.push(r.item(depth + 1)?);
                    Ok(())
                })?;
                Ok(Value::Array(items))
            }
            (5, _) => {
                let mut entries = Vec::new();
                self.each(arg, |r| {
                    let key = r.item(depth + 1)?;
                    let value = r.item(depth + 1)?;
                    entries.push((key, value));
                    Ok(())
                })?;
                Ok(Value::Map(entries))
            }
            (6, Some(tag)) => Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?))),
            (7, Some(n)) => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 | 23 => Ok(Value::Null),
                25 => Ok(Value::Float(half_to_f64(n as u16))),
                26 => Ok(Value::Float(f64::from(f32::from_bits(n as u32)))),
                27 => Ok(Value::Float(f64::from_bits(n))),
                _ => Err(DecodeError("unsupported simple value")),
            },
            _ => Err(DecodeError("indefinite length where none is allowed")),
        }
    }

    /// The items of a definite (`Some(n)`) or indefinite (until break) array or map.
    fn each(
        &mut self,
        count: Option<u64>,
        mut one: impl FnMut(&mut Self) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        match count {
            Some(n) => {
                for _ in 0..n {
                    one(self)?;
                }
            }
            None => loop {
                if self.bytes.get(self.at) == Some(&0xff) {
                    self.at += 1;
                    break;
                }
                one(self)?;
            },
        }
        Ok(())
    }

    /// A byte or text string, definite or made of definite chunks of the same major type.
    fn string(&mut self, major: u8, len: Option<u64>) -> Result<Vec<u8>, DecodeError> {
        match len {
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| DecodeError("string too long"))?;
                Ok(self.take(n)?.to_vec())
            }
            None => {
                let mut out = Vec::new();
                loop {
                    match self.head()? {
                        Head::Break => return Ok(out),
                        Head::Item {
                            major: m,
                            arg: Some(n),
                            ..
                        } if m == major => out.extend(self.string(major, Some(n))?),
                        Head::Item { .. } => return Err(DecodeError("bad string chunk")),
                    }
                }
            }
        }
    }
}

fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Encodes `value` with definite lengths.
pub(super) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend([major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Int(n) if *n >= 0 => write_head(out, 0, *n as u64),
        Value::Int(n) => write_head(out, 1, (-1 - *n) as u64),
        Value::Bytes(b) => {
            write_head(out, 2, b.len() as u64);
            out.extend(b);
        }
        Value::Text(t) => {
            write_head(out, 3, t.len() as u64);
            out.extend(t.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            items.iter().for_each(|i| write(out, i));
        }
        Value::Map(entries) => {
            write_head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                write(out, k);
                write(out, v);
            }
        }
        Value::Tag(tag, inner) => {
            write_head(out, 6, *tag);
            write(out, inner);
        }
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Null => out.push(0xf6),
        Value::Float(f) => {
            out.push(0xfb);
            out.extend(f.to_bits().to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_maps_and_lists_as_the_sdk_writes_them_decode() {
        // {_ "Id": "q0", "Period": 300, "Dims": [_ -1, 1.5], "T": 1(1700000000.0)}
        let mut body = vec![0xbf, 0x62, b'I', b'd', 0x62, b'q', b'0'];
        body.extend([0x66]);
        body.extend(b"Period");
        body.extend([0x19, 0x01, 0x2c, 0x64]);
        body.extend(b"Dims");
        body.extend([0x9f, 0x20, 0xf9, 0x3e, 0x00, 0xff, 0x61, b'T', 0xc1, 0xfb]);
        body.extend(1_700_000_000f64.to_bits().to_be_bytes());
        body.push(0xff);
        let value = decode(&body).unwrap();
        assert_eq!(value.get("Id").and_then(Value::as_str), Some("q0"));
        assert_eq!(value.get("Period").and_then(Value::as_i64), Some(300));
        assert_eq!(
            value.get("Dims").map(Value::as_array),
            Some(&[Value::Int(-1), Value::Float(1.5)][..])
        );
        assert_eq!(
            value.get("T").and_then(Value::as_epoch_seconds),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn encoded_answers_decode_back_and_bad_bodies_are_refused() {
        let value = Value::map([
            ("NextToken", Value::text("t")),
            (
                "Values",
                Value::Array(vec![Value::Float(2.0), Value::Int(70_000)]),
            ),
            ("At", Value::timestamp(1_700_000_000)),
            ("Ok", Value::Bool(true)),
        ]);
        assert_eq!(decode(&encode(&value)), Ok(value));
        assert_eq!(decode(&[0xbf, 0x61]), Err(DecodeError("cut short")));
        assert!(decode(&[0xa0, 0x00]).is_err(), "trailing bytes");
        assert!(decode(&[0x9f; 200]).is_err(), "too deep");
    }
}
