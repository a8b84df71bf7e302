//! `metrics`: which metric families are served. `include` (an allowlist; empty or absent: every
//! family) is applied first, then `exclude`. An entry made of name characters only (letters,
//! digits, `_`, `:`) is a family name, which must be one the exporter serves; any other
//! character makes it a regular expression, matched against the whole name (anchored, as
//! `^(?:entry)$`), which must match at least one family. Names are as in the text format
//! (counters end with `_total`). Every entry is checked against [`FAMILIES`], so a typo is an
//! error, never a filter that silently drops nothing.

use std::collections::BTreeSet;

use super::raw::RawMetrics;
use super::{invalid, ConfigError};
use crate::domain::families::{Family, MetricsFilter, FAMILIES};

/// The filter `raw` asks for (`None`: every family).
pub(super) fn validate_metrics(raw: Option<RawMetrics>) -> Result<MetricsFilter, ConfigError> {
    let Some(raw) = raw else {
        return Ok(MetricsFilter::default());
    };
    let included = if raw.include.is_empty() {
        FAMILIES.iter().map(|f| f.name).collect()
    } else {
        matched("metrics.include", &raw.include)?
    };
    let excluded = matched("metrics.exclude", &raw.exclude)?;
    let served: Vec<&Family> = FAMILIES
        .iter()
        .filter(|f| included.contains(f.name) && !excluded.contains(f.name))
        .collect();
    if served.is_empty() {
        return Err(invalid(
            "metrics",
            "include and exclude leave no family to serve",
        ));
    }
    Ok(MetricsFilter::excluding(
        FAMILIES.iter().filter(|f| !served.contains(f)),
    ))
}

/// Whether `entry` is a family name rather than a regular expression.
fn is_name(entry: &str) -> bool {
    entry
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The families the entries of the list at `place` match; an error names the first entry that
/// is empty, not a family, not a regular expression, or matches nothing.
fn matched(place: &str, entries: &[String]) -> Result<BTreeSet<&'static str>, ConfigError> {
    let mut names = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let place = format!("{place}[{i}]");
        if entry.is_empty() {
            return Err(invalid(
                place,
                "is empty; write a family name or a regular expression",
            ));
        }
        if is_name(entry) {
            let Some(family) = FAMILIES.iter().find(|f| f.name == entry) else {
                return Err(invalid(place, not_a_family(entry)));
            };
            names.insert(family.name);
            continue;
        }
        let pattern = regex_lite::Regex::new(&format!("^(?:{entry})$")).map_err(|e| {
            invalid(
                &place,
                format!("{entry:?} is not a valid regular expression: {e}"),
            )
        })?;
        let matches: Vec<&'static str> = FAMILIES
            .iter()
            .filter(|f| pattern.is_match(f.name))
            .map(|f| f.name)
            .collect();
        if matches.is_empty() {
            return Err(invalid(
                place,
                format!(
                    "{entry:?} matches no metric family (a regular expression must match a whole \
                     name); the families are: {}",
                    family_list()
                ),
            ));
        }
        names.extend(matches);
    }
    Ok(names)
}

/// Why `name` is refused: the valid names, and the text-format name when `name` is a counter's
/// OpenMetrics name.
fn not_a_family(name: &str) -> String {
    let counter = format!("{name}_total");
    let hint = match FAMILIES.iter().find(|f| f.name == counter) {
        Some(f) => format!(" (names are as in the text format: {:?})", f.name),
        None => String::new(),
    };
    format!(
        "{name:?} is not a metric family this exporter serves{hint}; the families are: {}",
        family_list()
    )
}

/// Every family name, comma-separated.
fn family_list() -> String {
    FAMILIES
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::domain::families::{MetricsFilter, Scope};

    fn filter(yaml: &str) -> MetricsFilter {
        Config::from_yaml(&format!("regions: [us-east-1]\n{yaml}"))
            .unwrap()
            .metrics
    }

    fn error_of(yaml: &str) -> String {
        Config::from_yaml(&format!("regions: [us-east-1]\n{yaml}"))
            .unwrap_err()
            .to_string()
    }

    fn excluded(filter: &MetricsFilter) -> Vec<&'static str> {
        filter.excluded().map(|f| f.name).collect()
    }

    /// The commented `metrics` block of config/example.yaml, and the README's example with the
    /// series it says it saves.
    #[test]
    fn the_documented_examples_are_valid() {
        let example = include_str!("../../config/example.yaml");
        let block: String = example
            .lines()
            .skip_while(|l| *l != "# metrics:")
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert_eq!(excluded(&filter(&block)).len(), 5, "{block}");

        let page = include_str!("../../docs/metrics.md");
        let section = &page[page
            .find("### Cardinality at organisation scale")
            .expect("the metrics page's cardinality section")..];
        let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let f = filter(block);
        assert_eq!(f.series(Scope::Image, true), (12, 15));
        assert_eq!(f.series(Scope::Target, true), (7, 11));
        assert!(section.contains("saves 3 of the 15 series per image and 4 of the 11 per target"));
    }

    #[test]
    fn without_a_metrics_block_every_family_is_served() {
        assert!(filter("").serves_all());
        assert!(filter("metrics: {}\n").serves_all());
        assert!(filter("metrics: {include: [], exclude: []}\n").serves_all());
    }

    #[test]
    fn exclude_takes_family_names_and_anchored_regular_expressions() {
        let f = filter(
            "metrics:\n  exclude:\n    - aws_ec2_fast_launch_image_info\n    - fast_launch_exporter_aws_.*_total\n",
        );
        assert_eq!(
            excluded(&f),
            [
                "aws_ec2_fast_launch_image_info",
                "fast_launch_exporter_aws_requests_total",
                "fast_launch_exporter_aws_errors_total"
            ]
        );
        // Anchored: `image_state` matches the family of that name only, not the ones it starts.
        let f = filter("metrics: {exclude: ['aws_ec2_fast_launch_image_stat(e)']}\n");
        assert_eq!(excluded(&f), ["aws_ec2_fast_launch_image_state"]);
        let f = filter("metrics: {exclude: ['process_.*']}\n");
        assert_eq!(excluded(&f).len(), 7);
        assert!(f.serves("fast_launch_exporter_build_info"));
    }

    #[test]
    fn include_is_applied_first_then_exclude() {
        let f = filter(
            "metrics:\n  include: ['aws_ec2_fast_launch_image_.*', fast_launch_exporter_collection_success]\n  exclude: [aws_ec2_fast_launch_image_state_reason_info]\n",
        );
        assert!(f.serves("aws_ec2_fast_launch_image_state"));
        assert!(f.serves("fast_launch_exporter_collection_success"));
        assert!(!f.serves("aws_ec2_fast_launch_image_state_reason_info"));
        assert!(!f.serves("fast_launch_exporter_build_info"));
        assert!(!f.serves("process_cpu_seconds_total"));
        assert_eq!(f.series(Scope::Image, true), (14, 15));
        assert_eq!(f.series(Scope::Target, false), (1, 8));
    }

    #[test]
    fn an_unknown_family_name_is_refused_with_the_valid_names() {
        let e = error_of("metrics: {exclude: [aws_ec2_fast_launch_image_infos]}\n");
        assert!(
            e.starts_with(
                "metrics.exclude[0]: \"aws_ec2_fast_launch_image_infos\" is not a metric family this exporter serves; the families are: aws_ec2_fast_launch_image_info, aws_ec2_fast_launch_image_state, "
            ),
            "{e}"
        );
        assert!(e.contains(", process_threads"), "{e}");
        // An OpenMetrics counter name: the text format's is named.
        let e = error_of("metrics: {include: [fast_launch_exporter_aws_requests]}\n");
        assert!(
            e.starts_with("metrics.include[0]: \"fast_launch_exporter_aws_requests\" is not a metric family this exporter serves (names are as in the text format: \"fast_launch_exporter_aws_requests_total\"); the families are: "),
            "{e}"
        );
    }

    #[test]
    fn a_bad_or_useless_pattern_is_refused_naming_the_entry() {
        let e = error_of("metrics: {exclude: [process_threads, 'aws_ec2_(']}\n");
        assert!(
            e.starts_with("metrics.exclude[1]: \"aws_ec2_(\" is not a valid regular expression: "),
            "{e}"
        );
        let e = error_of("metrics: {exclude: ['aws_ec2_fleet_.*']}\n");
        assert!(
            e.starts_with("metrics.exclude[0]: \"aws_ec2_fleet_.*\" matches no metric family (a regular expression must match a whole name); the families are: aws_ec2_fast_launch_image_info, "),
            "{e}"
        );
        // Not a prefix match: the pattern must cover the whole name.
        let e = error_of("metrics: {exclude: ['aws_ec2_fast_launch_image_in.']}\n");
        assert!(e.contains("matches no metric family"), "{e}");
        let e = error_of("metrics: {exclude: ['']}\n");
        assert_eq!(
            e,
            "metrics.exclude[0]: is empty; write a family name or a regular expression \
             at line 2 column 21"
        );
        let e = error_of("metrics: {exclude: ['.*']}\n");
        assert_eq!(
            e,
            "metrics: include and exclude leave no family to serve at line 2 column 1"
        );
        let e = error_of("metrics: {exlude: [process_threads]}\n");
        assert!(e.contains("unknown field `exlude`"), "{e}");
    }
}
