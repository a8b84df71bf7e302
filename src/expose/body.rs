//! The exposition as a list of parts, and the response body that sends them.
//!
//! Almost all of `/metrics` changes only when a collection lands, so `expose` renders those
//! lines once into immutable [`Chunk`]s that every scrape shares, and renders fresh only what
//! depends on the scrape (a few lines per target, the `process_*` series, and
//! `state_age_seconds`, whose label prefixes are cached as [`AgeLines`]). A scrape is a list of
//! [`Part`]s; [`Stitched`] hands them to hyper as `Bytes` frames, slices of the shared chunks,
//! never a copy of the whole exposition.
//!
//! Gzip costs nearly nothing either: each chunk keeps a raw deflate copy that ends on a sync
//! flush (so it ends on a byte boundary and back-references stay inside it), with its CRC-32
//! and length. One scrape is one gzip member (RFC 1952): the header, every part's deflate
//! stream in order, an empty final block, and the CRC-32 of the whole (combined from the parts'
//! CRCs) with its length. Only the fresh parts are compressed per scrape.

use std::collections::VecDeque;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress};
use tracing::warn;

/// The largest frame handed to hyper: a slice of a part, not a copy. hyper takes frames only
/// as fast as the client reads, so a small last frame means the body is nearly sent when the
/// body (and the `--web.max-requests` permit it holds) is dropped.
pub const FRAME: usize = 256 * 1024;

/// After this many bytes (one frame), the body lets its connection's task yield (and other tasks, such as a
/// health probe, run) before it hands out more: within one poll hyper would otherwise write
/// until the socket is full, which on loopback is tens of megabytes.
const BYTES_PER_POLL: usize = FRAME;

/// The most `state_age_seconds` lines rendered in one go while the body is sent (about 130 KB),
/// so that no runtime worker is held for more than a fraction of a millisecond.
const AGE_LINES_PER_PIECE: usize = 1000;

/// The fixed gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// A final, empty deflate block with fixed Huffman codes (BFINAL=1, BTYPE=01, end of block):
/// what zlib writes on `Z_FINISH` after a sync flush.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Immutable exposition lines shared by every scrape, with a raw deflate copy made on first
/// use by a gzip scrape.
#[derive(Debug)]
pub struct Chunk {
    plain: Bytes,
    deflated: OnceLock<Deflated>,
}

/// A chunk compressed on its own: raw deflate ending on a sync flush, with the CRC-32 and
/// length of the plain bytes.
#[derive(Debug)]
struct Deflated {
    bytes: Bytes,
    crc: Crc,
}

impl Chunk {
    /// A chunk of the given lines.
    pub fn new(plain: impl Into<Bytes>) -> Chunk {
        Chunk {
            plain: plain.into(),
            deflated: OnceLock::new(),
        }
    }

    /// The plain lines.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// Makes the deflate copy now, if it is missing.
    pub fn compress(&self) {
        if !self.plain.is_empty() {
            self.deflated();
        }
    }

    /// The deflate copy, made once (with this thread's compressor: its state is a few hundred
    /// KB to set up).
    fn deflated(&self) -> &Deflated {
        self.deflated.get_or_init(|| {
            if self.plain.is_empty() {
                return Deflated {
                    bytes: Bytes::new(),
                    crc: Crc::new(),
                };
            }
            thread_local! {
                static COMPRESS: std::cell::RefCell<Compress> =
                    std::cell::RefCell::new(Compress::new(Compression::fast(), false));
            }
            COMPRESS.with(|compress| deflate(&mut compress.borrow_mut(), &self.plain))
        })
    }
}

/// Compresses `input` on its own (a fresh window, no back-references before it) into raw
/// deflate blocks ending on a sync flush.
fn deflate(compress: &mut Compress, input: &[u8]) -> Deflated {
    let mut crc = Crc::new();
    crc.update(input);
    if input.is_empty() {
        return Deflated {
            bytes: Bytes::new(),
            crc,
        };
    }
    compress.reset();
    // Text exposition compresses about 10:1 at level 1; grow when it does not.
    let mut out: Vec<u8> = Vec::with_capacity(input.len() / 6 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        // Every input byte taken and room left after a sync flush: the flush is complete
        // (flate2's default backend, miniz_oxide, stops only when the output is full; zlib's
        // contract is the same, `avail_out != 0` after `Z_SYNC_FLUSH`).
        if let Err(error) = compress.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
        {
            // Not expected with a reset stream and sync flushes; stored blocks are valid
            // deflate too, so the response stays whole.
            warn!(error = %error, "deflate failed; sending these lines as stored blocks");
            return Deflated {
                bytes: stored(input),
                crc,
            };
        }
        if compress.total_in() as usize == input.len() && out.capacity() > out.len() {
            break;
        }
    }
    out.shrink_to_fit();
    Deflated {
        bytes: Bytes::from(out),
        crc,
    }
}

/// `input` as uncompressed deflate blocks (BFINAL=0, BTYPE=00, LEN, NLEN; RFC 1951 3.2.4).
fn stored(input: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(input.len() + input.len() / 65535 * 5 + 5);
    for block in input.chunks(u16::MAX as usize) {
        let len = block.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    Bytes::from(out)
}

/// `state_age_seconds` lines of one target: the label prefix of each line is cached, the value
/// (seconds since the image's last state transition) is computed when the lines are sent. Sent
/// in pieces of [`AGE_LINES_PER_PIECE`] lines; the deflated pieces of the latest `now` (a whole
/// second) are kept, so the gzip scrapes of one second compress them once between them. Plain
/// pieces are written for each scrape as it sends them: kept, they were 10 MB a second at
/// 51,000 images, twice over when scrapes straddle a second.
#[derive(Debug, Default)]
pub struct AgeLines {
    /// Every line's `name{labels} `, one after another.
    prefixes: String,
    /// Where each line's prefix ends in `prefixes`, and the transition time (Unix seconds).
    lines: Vec<(usize, f64)>,
    /// The pieces at one `now` (its bits), each made by the first scrape that sends it.
    memo: Mutex<Option<(u64, AgePieces)>>,
}

/// The pieces of an [`AgeLines`] at one `now`.
type AgePieces = Arc<[AgePiece]>;

/// One piece of an [`AgeLines`] at one `now`, deflated.
#[derive(Debug, Default)]
struct AgePiece {
    deflated: OnceLock<Deflated>,
}

impl AgeLines {
    /// Adds a line: `prefix` is `name{labels} `.
    pub fn push(&mut self, prefix: &str, transition: f64) {
        self.prefixes.push_str(prefix);
        self.lines.push((self.prefixes.len(), transition));
    }

    /// The same lines without spare capacity (they are kept until the data changes).
    pub fn shrunk(mut self) -> AgeLines {
        self.prefixes.shrink_to_fit();
        self.lines.shrink_to_fit();
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn pieces(&self) -> usize {
        self.lines.len().div_ceil(AGE_LINES_PER_PIECE)
    }

    /// Writes piece `index` as of `now` (Unix seconds).
    fn write_piece(&self, index: usize, now: f64, out: &mut String) {
        let first = index * AGE_LINES_PER_PIECE;
        let last = (first + AGE_LINES_PER_PIECE).min(self.lines.len());
        let mut start = match first {
            0 => 0,
            i => self.lines[i - 1].0,
        };
        out.reserve((last - first) * 140);
        for &(end, transition) in &self.lines[first..last] {
            out.push_str(&self.prefixes[start..end]);
            write_age(out, now, transition);
            out.push('\n');
            start = end;
        }
    }

    /// The pieces at `now`, shared with the other scrapes at the same `now`.
    fn pieces_at(&self, now: f64) -> AgePieces {
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        match &*memo {
            Some((bits, pieces)) if *bits == now.to_bits() => pieces.clone(),
            _ => {
                let pieces: AgePieces = (0..self.pieces()).map(|_| AgePiece::default()).collect();
                *memo = Some((now.to_bits(), pieces.clone()));
                pieces
            }
        }
    }

    /// Piece `index` as of `now`, plain.
    fn plain_piece(&self, index: usize, now: f64) -> Bytes {
        let mut out = String::new();
        self.write_piece(index, now, &mut out);
        Bytes::from(out)
    }
}

/// One piece of a scrape's exposition, in order.
#[derive(Debug, Clone)]
pub enum Part {
    /// Lines rendered for this scrape.
    Fresh(Bytes),
    /// Lines rendered when their data changed, shared by every scrape.
    Cached(Arc<Chunk>),
    /// `state_age_seconds` lines, valued at `now` (Unix seconds) when sent.
    Ages(Arc<AgeLines>, f64),
}

/// Writes how long ago `at` was as of `now` (both Unix seconds), never negative, in seconds to
/// the millisecond (AWS gives transition times to the millisecond): an integer, or up to three
/// decimals without trailing zeros. Written without float formatting, which was a tenth of a
/// plain scrape's CPU: every scrape writes one per image.
pub fn write_age(out: &mut String, now: f64, at: f64) {
    let millis = ((now - at) * 1000.0).round().max(0.0);
    if millis >= 1e15 {
        write_value(out, (now - at).max(0.0));
        return;
    }
    let millis = millis as u64;
    let _ = write!(out, "{}", millis / 1000);
    let fraction = millis % 1000;
    if fraction != 0 {
        let digits = [fraction / 100, fraction / 10 % 10, fraction % 10].map(|d| b'0' + d as u8);
        let used = match fraction {
            f if f % 100 == 0 => 1,
            f if f % 10 == 0 => 2,
            _ => 3,
        };
        out.push('.');
        out.push_str(std::str::from_utf8(&digits[..used]).expect("ASCII digits"));
    }
}

/// Writes a sample value as the text formats want it: integers without a fraction, `NaN`,
/// `+Inf`, `-Inf`.
pub fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Where a gzip body stands.
struct GzipMember {
    /// CRC-32 and length of the plain bytes sent so far.
    crc: Crc,
    /// Reused for the fresh parts.
    compress: Compress,
    /// Whether the header went out.
    started: bool,
}

/// The `state_age_seconds` part being sent.
struct AgeCursor {
    lines: Arc<AgeLines>,
    now: f64,
    /// The next piece.
    next: usize,
    /// The pieces shared with the other scrapes at `now`.
    pieces: AgePieces,
}

/// The `/metrics` body: the parts, in frames of at most [`FRAME`] bytes, plain or as one gzip
/// member. It holds whatever it is given to hold (a `--web.max-requests` permit) until hyper
/// drops it, when the last frame was taken or the client went.
pub struct Stitched<Guard> {
    parts: VecDeque<Part>,
    ages: Option<AgeCursor>,
    /// What is left of the bytes being sent.
    rest: Bytes,
    gzip: Option<GzipMember>,
    done: bool,
    /// Bytes sent or compressed since the task last yielded.
    since_yield: usize,
    _guard: Guard,
}

impl<Guard> Stitched<Guard> {
    /// A body of `parts`, gzipped when `gzip`. With gzip, the cached chunks' deflate copies
    /// are made now if they are missing (call this off the runtime workers: a chunk of a large
    /// target takes milliseconds to compress), so that sending compresses only fresh lines.
    pub fn new(parts: Vec<Part>, gzip: bool, guard: Guard) -> Stitched<Guard> {
        let mut parts: VecDeque<Part> = parts.into();
        let gzip = gzip.then(|| {
            for part in &mut parts {
                match part {
                    Part::Cached(chunk) => chunk.compress(),
                    // Fresh lines grow with the targets (a few MB at thousands): compressed here
                    // too, not while sending.
                    Part::Fresh(bytes) => {
                        let chunk = Arc::new(Chunk::new(std::mem::take(bytes)));
                        chunk.compress();
                        *part = Part::Cached(chunk);
                    }
                    Part::Ages(..) => {}
                }
            }
            GzipMember {
                crc: Crc::new(),
                compress: Compress::new(Compression::fast(), false),
                started: false,
            }
        });
        Stitched {
            parts,
            ages: None,
            rest: Bytes::new(),
            gzip,
            done: false,
            since_yield: 0,
            _guard: guard,
        }
    }

    /// The next bytes to send, or None when everything was.
    fn next_bytes(&mut self) -> Option<Bytes> {
        if let Some(gzip) = &mut self.gzip {
            if !gzip.started {
                gzip.started = true;
                return Some(Bytes::from_static(&GZIP_HEADER));
            }
        }
        loop {
            if let Some(cursor) = &mut self.ages {
                if cursor.next < cursor.lines.pieces() {
                    let index = cursor.next;
                    cursor.next += 1;
                    let (lines, now, pieces) = (&cursor.lines, cursor.now, &cursor.pieces);
                    let Some(gzip) = &mut self.gzip else {
                        return Some(lines.plain_piece(index, now));
                    };
                    let deflated = pieces[index].deflated.get_or_init(|| {
                        let plain = lines.plain_piece(index, now);
                        self.since_yield += plain.len();
                        deflate(&mut gzip.compress, &plain)
                    });
                    gzip.crc.combine(&deflated.crc);
                    return Some(deflated.bytes.clone());
                }
                self.ages = None;
            }
            let Some(part) = self.parts.pop_front() else {
                let gzip = self.gzip.as_mut()?;
                let mut trailer = Vec::with_capacity(10);
                trailer.extend_from_slice(&FINAL_BLOCK);
                trailer.extend_from_slice(&gzip.crc.sum().to_le_bytes());
                trailer.extend_from_slice(&gzip.crc.amount().to_le_bytes());
                self.done = true;
                return Some(Bytes::from(trailer));
            };
            match (part, &mut self.gzip) {
                (Part::Fresh(bytes), None) => return Some(bytes),
                (Part::Fresh(bytes), Some(gzip)) => {
                    self.since_yield += bytes.len();
                    let deflated = deflate(&mut gzip.compress, &bytes);
                    gzip.crc.combine(&deflated.crc);
                    return Some(deflated.bytes);
                }
                (Part::Cached(chunk), None) => return Some(chunk.plain.clone()),
                (Part::Cached(chunk), Some(gzip)) => {
                    let deflated = chunk.deflated();
                    gzip.crc.combine(&deflated.crc);
                    return Some(deflated.bytes.clone());
                }
                (Part::Ages(lines, now), _) => {
                    self.ages = Some(AgeCursor {
                        pieces: lines.pieces_at(now),
                        lines,
                        now,
                        next: 0,
                    });
                }
            }
        }
    }
}

impl<Guard: Unpin> hyper::body::Body for Stitched<Guard> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.since_yield >= BYTES_PER_POLL {
            this.since_yield = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        while this.rest.is_empty() {
            if this.done {
                return Poll::Ready(None);
            }
            match this.next_bytes() {
                Some(bytes) => this.rest = bytes,
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
        let take = this.rest.len().min(FRAME);
        this.since_yield += take;
        Poll::Ready(Some(Ok(hyper::body::Frame::data(this.rest.split_to(take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.rest.is_empty()
    }
}

/// The whole body of `parts` in one buffer (for `--once`, tests and benchmarks).
pub fn collect(parts: Vec<Part>, gzip: bool) -> Vec<u8> {
    let mut body = Stitched::new(parts, gzip, ());
    let mut out = Vec::new();
    loop {
        while !body.rest.is_empty() {
            let take = body.rest.len().min(FRAME);
            out.extend_from_slice(&body.rest.split_to(take));
        }
        if body.done {
            return out;
        }
        match body.next_bytes() {
            Some(bytes) => body.rest = bytes,
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ages to the millisecond, as a float formatter would print them rounded so; never
    /// negative; past 1e15 ms, as any other value.
    #[test]
    fn ages_are_written_to_the_millisecond() {
        let age = |now: f64, at: f64| {
            let mut out = String::new();
            write_age(&mut out, now, at);
            out
        };
        let now = 1_795_100_000.0;
        for (at, written) in [
            (now, "0"),
            (now - 5.0, "5"),
            (now - 12_345.877, "12345.877"),
            (now - 0.5, "0.5"),
            (now - 0.05, "0.05"),
            (now - 1.0004, "1"),
            (now - 1.0006, "1.001"),
            (now - 86_400.25, "86400.25"),
            (now + 30.0, "0"),
            (f64::NAN, "0"),
        ] {
            assert_eq!(age(now, at), written, "{at}");
            let parsed: f64 = written.parse().unwrap();
            let exact = (now - at).max(0.0);
            assert!(
                at.is_nan() || (parsed - exact).abs() <= 0.0005 + 1e-6,
                "{at}"
            );
        }
        assert_eq!(age(f64::INFINITY, 0.0), "+Inf");
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .expect("a valid gzip member");
        out
    }

    /// Bytes that do not compress (so that deflate output outgrows its first buffer).
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Fresh and cached parts, empty parts and age lines over several pieces stitch into one
    /// gzip member whose content and CRC are those of the plain body.
    #[test]
    fn parts_stitch_into_one_gzip_member() {
        let mut ages = AgeLines::default();
        for n in 0..2 * AGE_LINES_PER_PIECE + 7 {
            ages.push(&format!("age{{image_id=\"ami-{n}\"}} "), 1000.0 + n as f64);
        }
        let ages = Arc::new(ages);
        let text: String = (0..20_000)
            .map(|n| format!("line{{n=\"{n}\"}} 1\n"))
            .collect();
        let parts = vec![
            Part::Fresh(Bytes::from(noise(300_000))),
            Part::Cached(Arc::new(Chunk::new(text.clone()))),
            Part::Fresh(Bytes::new()),
            Part::Ages(ages.clone(), 5000.0),
            Part::Cached(Arc::new(Chunk::new(Bytes::new()))),
            Part::Fresh(Bytes::from_static(b"# EOF\n")),
        ];
        let plain = collect(parts.clone(), false);
        assert!(plain.len() > 300_000 + text.len());
        let tail = String::from_utf8_lossy(&plain[plain.len() - 200..]).into_owned();
        assert!(
            tail.ends_with("age{image_id=\"ami-2006\"} 1994\n# EOF\n"),
            "{tail}"
        );
        let gzipped = collect(parts.clone(), true);
        assert!(gzipped.len() < plain.len());
        assert_eq!(gunzip(&gzipped), plain);

        // A second gzip scrape at the same `now` reuses the compressed ages; another `now`
        // compresses them again, with its values.
        let shared = ages.pieces_at(5000.0);
        assert!(shared.iter().all(|piece| piece.deflated.get().is_some()));
        assert_eq!(collect(parts.clone(), true), gzipped);
        assert!(Arc::ptr_eq(&shared, &ages.pieces_at(5000.0)));
        let later: Vec<Part> = parts
            .into_iter()
            .map(|part| match part {
                Part::Ages(lines, _) => Part::Ages(lines, 5001.0),
                other => other,
            })
            .collect();
        let later_text = gunzip(&collect(later.clone(), true));
        assert_eq!(later_text, collect(later, false));
        assert_ne!(later_text, plain);
    }

    /// The fallback when deflate fails is valid deflate too.
    #[test]
    fn stored_blocks_are_valid_deflate() {
        let input = noise(150_000);
        let mut crc = Crc::new();
        crc.update(&input);
        let mut member = GZIP_HEADER.to_vec();
        member.extend_from_slice(&stored(&input));
        member.extend_from_slice(&FINAL_BLOCK);
        member.extend_from_slice(&crc.sum().to_le_bytes());
        member.extend_from_slice(&crc.amount().to_le_bytes());
        assert_eq!(gunzip(&member), input);
    }
}
