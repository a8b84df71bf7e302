//! The exposition writer: family headers and samples in the text format 0.0.4 or OpenMetrics,
//! fresh lines collected into parts between the cached chunks.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;

use super::body::{write_age, write_value, AgeLines, Chunk, Part};
use super::Format;
use crate::domain::families::MetricsFilter;
pub(super) use crate::domain::model::unix_seconds;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `counter`: the name ends with `_total` (dropped from the family name in OpenMetrics).
    Counter,
    /// `gauge`.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The exposition being written. Families are written whole, one after another: fresh lines
/// into `out`, cached ones as parts after the fresh lines before them.
pub(super) struct Exposition {
    pub(super) out: String,
    pub(super) format: Format,
    parts: Vec<Part>,
    /// Whether fresh lines are cut into parts of about [`FRESH_PART`] bytes.
    pub(super) split_fresh: bool,
    /// The families written (None: every one). An excluded family is never rendered: its
    /// header, samples, cached chunks and age lines are all left out.
    pub(super) filter: Option<Arc<MetricsFilter>>,
    /// Whether the family being written is excluded.
    skipping: bool,
}

/// The size fresh lines are cut into parts at (see [`Exposition::sample`]); small in unit tests,
/// so that the byte-identity test cuts its fresh lines too.
const FRESH_PART: usize = if cfg!(test) { 512 } else { 256 * 1024 };

impl Exposition {
    pub(super) fn new(format: Format) -> Exposition {
        Exposition {
            out: String::new(),
            format,
            parts: Vec::new(),
            split_fresh: false,
            filter: None,
            skipping: false,
        }
    }

    /// Whether the family `name` (as in the text format) is written.
    pub(super) fn serves(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f.serves(name))
    }

    /// Ends the fresh lines written so far as a part.
    pub(super) fn end_fresh(&mut self) {
        if !self.out.is_empty() {
            let fresh = std::mem::take(&mut self.out);
            self.parts.push(Part::Fresh(Bytes::from(fresh)));
        }
    }

    /// Cached lines, next.
    pub(super) fn cached(&mut self, chunk: &Arc<Chunk>) {
        if !self.skipping && !chunk.plain().is_empty() {
            self.end_fresh();
            self.parts.push(Part::Cached(chunk.clone()));
        }
    }

    /// `state_age_seconds` lines valued at `now`, next.
    pub(super) fn ages(&mut self, lines: &Arc<AgeLines>, now: f64) {
        if !self.skipping && !lines.is_empty() {
            self.end_fresh();
            self.parts.push(Part::Ages(lines.clone(), now));
        }
    }

    /// Every part, in order.
    pub(super) fn into_parts(mut self) -> Vec<Part> {
        self.end_fresh();
        self.parts
    }

    /// A family's `# HELP` and `# TYPE` lines; nothing, and none of its lines until the next
    /// family, when the filter excludes it.
    pub(super) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.skipping = !self.serves(name);
        if self.skipping {
            return;
        }
        let open_metrics = self.format == Format::OpenMetrics;
        let name = match (open_metrics, kind) {
            (true, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let kind = kind.as_str();
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '"' if open_metrics => self.out.push_str("\\\""),
                c => self.out.push(c),
            }
        }
        let _ = write!(self.out, "\n# TYPE {name} {kind}\n");
    }

    /// A counter sample (`name` ends with `_total`), and in OpenMetrics its `_created` sample:
    /// when the counter started at 0, in Unix seconds.
    pub(super) fn counter(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        created: f64,
    ) {
        self.sample(name, labels, value);
        if self.format == Format::OpenMetrics {
            let base = name.strip_suffix("_total").unwrap_or(name);
            self.sample(&format!("{base}_created"), labels, created);
        }
    }

    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_written(name, labels, |out| write_value(out, value));
    }

    /// A sample of how long ago `at` was as of `now` (see [`write_age`]).
    pub(super) fn age_sample(&mut self, name: &str, labels: &[(&str, &str)], now: f64, at: f64) {
        self.sample_written(name, labels, |out| write_age(out, now, at));
    }

    /// A sample line whose value `write` writes.
    fn sample_written(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        write: impl FnOnce(&mut String),
    ) {
        if self.skipping {
            return;
        }
        self.sample_prefix(name, labels);
        write(&mut self.out);
        self.out.push('\n');
        // Fresh lines of thousands of targets are megabytes: parts of bounded size, not one
        // growing (and re-allocating) buffer. The straightforward render keeps one buffer.
        if self.split_fresh && self.out.len() >= FRESH_PART {
            self.end_fresh();
        }
    }

    /// A sample's name and labels, and the space before its value.
    pub(super) fn sample_prefix(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, text);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// Writes `text` as a label value: `\\`, `"` and newlines escaped.
pub(super) fn escape_label_value(out: &mut String, text: &str) {
    if !text.contains(['\\', '"', '\n']) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
