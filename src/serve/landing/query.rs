//! The landing page's filters, read from the query string: `account=`, `region=`, `state=`.
//! Reading never fails: what cannot be used becomes a message the page shows.
//!
//! The rules, as the page states them: values of one key are alternatives (any may match), keys
//! all apply, an empty value is no filter (an empty form field sends one). A value that names
//! nothing (a state that does not exist, a value too long to be a name) matches nothing, so the
//! lists are empty and the message says why, rather than the page quietly showing more than asked.

/// The longest value taken, in characters: account names are at most 50 characters
/// (Organizations), account aliases 63, region names about 20.
pub(super) const MAX_VALUE_CHARS: usize = 128;
/// The most values one key takes; the query string itself is bounded by the request head limit.
pub(super) const MAX_VALUES: usize = 32;
/// How much of an odd key or value a message quotes.
const QUOTED_CHARS: usize = 40;

/// One key's filter: `None` when absent (everything passes), else the values, any of which may
/// match (an empty list matches nothing: every value given was refused).
pub(super) type Values = Option<Vec<String>>;

/// The filters of one request.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Filters {
    /// `account=`: an account id or name, compared without regard to ASCII case.
    pub(super) accounts: Values,
    /// `region=`: a region name, lowercased.
    pub(super) regions: Values,
    /// `state=`: a target result or an image state, lowercased.
    pub(super) states: Values,
    /// What could not be used, in plain text (escaped when rendered).
    pub(super) problems: Vec<String>,
}

impl Filters {
    /// The filters of `query` (the part of the URL after `?`, percent-encoded; `+` is a space).
    /// Invalid percent-encoding or UTF-8 is decoded leniently (U+FFFD) and then matches nothing.
    pub(super) fn parse(query: Option<&str>) -> Filters {
        let mut filters = Filters::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let (values, lowercase) = match key.as_ref() {
                "account" => (&mut filters.accounts, false),
                "region" => (&mut filters.regions, true),
                "state" => (&mut filters.states, true),
                // A bare `?` or a stray `&` gives an empty key: nothing to say about it.
                "" if value.is_empty() => continue,
                other => {
                    filters.note(format!(
                        "Unknown parameter {} ignored: the filters are account=, region= and state=.",
                        quoted(other)
                    ));
                    continue;
                }
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let problem = add(values.get_or_insert_with(Vec::new), &key, value, lowercase);
            if let Some(problem) = problem {
                filters.note(problem);
            }
        }
        filters
    }

    /// Adds `problem` unless it is there already: a long query of one mistake says it once.
    pub(super) fn note(&mut self, problem: String) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }
}

/// Adds `value` to `key`'s `values` unless it is there already; the problem when it cannot.
fn add(values: &mut Vec<String>, key: &str, value: &str, lowercase: bool) -> Option<String> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Some(format!(
            "The value {} of {key}= is longer than {MAX_VALUE_CHARS} characters: it matches nothing.",
            quoted(value)
        ));
    }
    let value = if lowercase {
        value.to_lowercase()
    } else {
        value.to_string()
    };
    if values.contains(&value) {
        return None;
    }
    if values.len() == MAX_VALUES {
        return Some(format!(
            "{key}= is given more than {MAX_VALUES} times: only the first {MAX_VALUES} values are used."
        ));
    }
    values.push(value);
    None
}

/// Whether `filter` lets through something `matches` accepts: absent, or one of its values does.
pub(super) fn passes(filter: &Values, matches: impl Fn(&str) -> bool) -> bool {
    filter
        .as_ref()
        .is_none_or(|values| values.iter().any(|v| matches(v)))
}

/// `text` in quotes, cut to a readable length, control characters escaped (Rust's `{:?}`).
pub(super) fn quoted(text: &str) -> String {
    if text.chars().count() > QUOTED_CHARS {
        let cut: String = text.chars().take(QUOTED_CHARS).collect();
        format!("{cut:?}…")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(list: &[&str]) -> Values {
        Some(list.iter().map(|v| v.to_string()).collect())
    }

    #[test]
    fn no_query_and_empty_values_filter_nothing() {
        assert_eq!(Filters::parse(None), Filters::default());
        assert_eq!(Filters::parse(Some("")), Filters::default());
        // What an empty form submits.
        let empty = Filters::parse(Some("account=&region=&state=+"));
        assert_eq!(empty, Filters::default());
        assert_eq!(Filters::parse(Some("&&=")), Filters::default());
    }

    #[test]
    fn values_are_percent_decoded_and_repeated_keys_are_alternatives() {
        let filters = Filters::parse(Some(
            "account=Team%20A&region=EU-West-1&region=us-east-1&region=eu-west-1&state=enabling-failed&account=a+b",
        ));
        assert_eq!(filters.accounts, values(&["Team A", "a b"]));
        // Lowercased and deduplicated.
        assert_eq!(filters.regions, values(&["eu-west-1", "us-east-1"]));
        assert_eq!(filters.states, values(&["enabling-failed"]));
        assert!(filters.problems.is_empty(), "{:?}", filters.problems);
    }

    #[test]
    fn unknown_keys_long_values_and_broken_encoding_become_messages_not_panics() {
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let filters = Filters::parse(Some(&format!(
            "colour=<b>red</b>&account={long}&region=%E2%28%A1&state=%&state=%zz"
        )));
        // The only account value was refused: the filter is on and matches nothing.
        assert_eq!(filters.accounts, Some(vec![]));
        assert!(!passes(&filters.accounts, |_| true));
        // Invalid UTF-8 is decoded leniently; a lone % stays as it is.
        assert_eq!(filters.regions, values(&["\u{fffd}(\u{fffd}"]));
        assert_eq!(filters.states, values(&["%", "%zz"]));
        assert_eq!(filters.problems.len(), 2, "{:?}", filters.problems);
        assert!(filters.problems[0].starts_with("Unknown parameter \"colour\" ignored"));
        assert!(filters.problems[1].contains("longer than 128 characters"));
        // The message quotes a cut of the value, not all of it.
        assert!(filters.problems[1].len() < 200, "{}", filters.problems[1]);
    }

    #[test]
    fn a_key_takes_at_most_its_limit_of_values() {
        let query: Vec<String> = (0..MAX_VALUES + 5)
            .map(|n| format!("region=r{n}"))
            .collect();
        let filters = Filters::parse(Some(&query.join("&")));
        assert_eq!(filters.regions.as_ref().map(Vec::len), Some(MAX_VALUES));
        assert_eq!(filters.problems.len(), 1, "{:?}", filters.problems);
    }

    #[test]
    fn passes_is_open_without_a_filter_and_any_value_may_match() {
        assert!(passes(&None, |_| false));
        assert!(passes(&values(&["a", "b"]), |v| v == "b"));
        assert!(!passes(&values(&["a", "b"]), |v| v == "c"));
    }

    #[test]
    fn quoting_cuts_on_a_character_boundary_and_escapes_controls() {
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let cut = quoted(&"é".repeat(100));
        assert!(cut.ends_with('…') && cut.chars().count() == QUOTED_CHARS + 3);
    }
}
