//! The landing page's HTML: rendered on the server, no JavaScript, readable on a phone (the
//! viewport is the device's, tables scroll sideways inside the page), and every text that comes
//! from outside (account names, errors, reasons, the query) escaped.

use std::fmt::{self, Display, Write};
use std::time::{Duration, SystemTime};

use super::overview::{is_failure, state_name, Chosen, ImageRow, Listed, Outcome, Overview};
use super::query::{Filters, Values};
use crate::domain::model::FastLaunchState;
use crate::targets::TargetView;

/// `text` with `& < > " '` written as character references: safe in element text and in
/// quoted attribute values.
struct Escaped<'a>(&'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// `text`, escaped (see [`Escaped`]).
pub(super) fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

/// The longest error or reason shown, in characters; the metrics cut reasons to 256 already.
const MAX_TEXT_CHARS: usize = 1000;

/// Phone first: one column of text, tables scroll inside their box rather than the page.
const STYLE: &str = ":root{color-scheme:light dark}\
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:100em;padding:0 12px 24px}\
h1{font-size:1.45em;margin:.6em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}\
.scroll{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse}caption{text-align:left;font-weight:600;padding:.2em 0;white-space:nowrap}\
th,td{padding:.3em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #8885}\
th{white-space:nowrap}.n{text-align:right;font-variant-numeric:tabular-nums}\
.id,.when{color:#777;font-size:.88em;white-space:nowrap}.nowrap{white-space:nowrap}\
.bad,.bad a{color:#c62828;font-weight:600}\
.text{min-width:14em;max-width:48em;overflow-wrap:anywhere}\
.cards{display:flex;flex-wrap:wrap;gap:0 2.5em}\
.problems{border-left:4px solid #c62828;padding:.1em .9em;background:#c628281a;margin:.8em 0}\
form label{display:inline-block;margin:0 1em .4em 0}input,select,button{font:inherit;max-width:100%}\
.more{font-style:italic}details{margin:.6em 0}";

/// What [`page`] renders.
pub(super) struct Page<'a> {
    /// The counts and lists.
    pub(super) overview: &'a Overview<'a>,
    /// The request's filters.
    pub(super) filters: &'a Filters,
    /// Where the metrics are (`--web.telemetry-path`).
    pub(super) telemetry_path: &'a str,
    /// The snapshot's time.
    pub(super) now: SystemTime,
    /// The most rows a list shows.
    pub(super) rows: usize,
}

/// The whole page.
pub(super) fn page(page: &Page) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail.
    let _ = write_page(&mut out, page);
    out
}

fn write_page(out: &mut String, page: &Page) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Fast Launch Exporter</title><style>{STYLE}</style></head>\n<body>\n\
         <h1>Fast Launch Exporter</h1>\n\
         <p>Prometheus exporter for AWS EC2 Windows fast launch (DescribeFastLaunchImages).</p>\n\
         <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · \
         <a href=\"/-/ready\">Readiness</a></p>\n",
        path = Escaped(page.telemetry_path),
    )?;
    let problems: Vec<&String> = page
        .filters
        .problems
        .iter()
        .chain(&page.overview.problems)
        .collect();
    if !problems.is_empty() {
        out.push_str("<div id=\"problems\" class=\"problems\" role=\"alert\">\n");
        for problem in problems {
            writeln!(out, "<p>{}</p>", Escaped(problem))?;
        }
        out.push_str("</div>\n");
    }
    filter_form(out, page)?;
    summary(out, page)?;
    let overview = page.overview;
    jump_links(out, overview)?;
    if let Some(failing) = &overview.failing {
        failing_targets(out, page, failing)?;
    }
    if let Some(images) = &overview.images {
        images_list(out, page, images)?;
    }
    if let Some(others) = &overview.others {
        other_targets(out, page, others)?;
    }
    write!(
        out,
        "<footer><p>Version {} ({})</p></footer>\n</body></html>\n",
        Escaped(crate::expose::VERSION),
        Escaped(crate::expose::REVISION),
    )
}

/// The filter form (a GET to this page: no script needed) and how the filters work.
fn filter_form(out: &mut String, page: &Page) -> fmt::Result {
    let filters = page.filters;
    let first = |values: &Values| values.iter().flatten().next().cloned().unwrap_or_default();
    write!(
        out,
        "<form id=\"filters\" method=\"get\">\n\
         <label>Account <input name=\"account\" value=\"{}\" placeholder=\"id or name\" size=\"16\"></label>\n\
         <label>Region <select name=\"region\"><option value=\"\">any</option>",
        Escaped(&first(&filters.accounts)),
    )?;
    let region = first(&filters.regions);
    let mut regions: Vec<&str> = page
        .overview
        .all_regions
        .iter()
        .map(String::as_str)
        .collect();
    if !region.is_empty() && !regions.contains(&region.as_str()) {
        regions.push(&region);
    }
    for name in regions {
        option(out, name, name == region)?;
    }
    out.push_str("</select></label>\n<label>State <select name=\"state\"><option value=\"\">any</option><optgroup label=\"Targets\">");
    let state = first(&filters.states);
    for outcome in Outcome::ALL {
        option(out, outcome.name(), outcome.name() == state)?;
    }
    out.push_str("</optgroup><optgroup label=\"Images\">");
    for (name, _) in &page.overview.image_states {
        option(out, name, *name == state)?;
    }
    write!(
        out,
        "</optgroup></select></label>\n<button type=\"submit\">Filter</button> <a href=\"./\">Clear</a>\n</form>\n\
         <details><summary>How to filter</summary>\n\
         <p>In the address: <code>?account=</code> an account id or name (names in any case); \
         <code>?region=</code> a region; <code>?state=</code> a target result (<code>ok</code>, \
         <code>failed</code>, <code>not-yet-collected</code>, <code>duplicate</code>) to list only \
         those targets, or an image state (<code>enabling</code>, <code>enabling-failed</code>, \
         <code>enabled</code>, <code>enabled-failed</code>, <code>disabling</code>, \
         <code>disabling-failed</code>, or a state AWS added since) to list only those images. \
         Repeat a key for any of several values (<code>?state=failed&amp;state=enabling-failed</code>); \
         different keys all apply. A value that names nothing matches nothing, and says so above.</p>\n\
         <p>The summary counts what the account and region filters keep. Each list shows its first {rows} \
         rows, what needs a look first. Images are those of each target's last successful \
         collection, left out once it is older than <code>collection.max_staleness</code>, as in \
         the metrics.</p>\n</details>\n",
        rows = page.rows,
    )
}

fn option(out: &mut String, value: &str, selected: bool) -> fmt::Result {
    write!(
        out,
        "<option{}>{}</option>",
        if selected { " selected" } else { "" },
        Escaped(value)
    )
}

/// Targets by result and images by state, each count a link to its list.
fn summary(out: &mut String, page: &Page) -> fmt::Result {
    let overview = page.overview;
    write!(
        out,
        "<section id=\"summary\"><h2>Summary</h2>\n<p>As of {}: {} in {} and {}; {}.",
        rfc3339(page.now),
        plural(overview.targets(), "target"),
        plural(overview.accounts, "account"),
        plural(overview.regions, "region"),
        plural(overview.image_count(), "image"),
    )?;
    if page.filters.accounts.is_some() || page.filters.regions.is_some() {
        out.push_str(" Only what the account and region filters keep.");
    }
    out.push_str("</p>\n<div class=\"cards\"><div class=\"scroll\"><table id=\"targets-by-result\"><caption>Targets by last result</caption>\n<tr><th>result</th><th class=\"n\">targets</th></tr>\n");
    for (outcome, count) in Outcome::ALL.iter().zip(overview.outcomes) {
        let bad = *outcome == Outcome::Failed && count > 0;
        summary_row(
            out,
            page,
            "result",
            outcome.name(),
            outcome.label(),
            count,
            bad,
        )?;
    }
    write!(
        out,
        "<tr><td>all</td><td class=\"n\">{}</td></tr>\n</table></div>\n\
         <div class=\"scroll\"><table id=\"images-by-state\"><caption>Images by fast-launch state</caption>\n\
         <tr><th>state</th><th class=\"n\">images</th></tr>\n",
        thousands(overview.targets())
    )?;
    for (state, count) in &overview.image_states {
        let bad = *count > 0 && is_failure(Some(&FastLaunchState::from_aws(state)));
        summary_row(out, page, "state", state, state, *count, bad)?;
    }
    write!(
        out,
        "<tr><td>all</td><td class=\"n\">{}</td></tr>\n</table></div></div></section>\n",
        thousands(overview.image_count())
    )
}

fn summary_row(
    out: &mut String,
    page: &Page,
    kind: &str,
    name: &str,
    label: &str,
    count: usize,
    bad: bool,
) -> fmt::Result {
    writeln!(
        out,
        "<tr data-{kind}=\"{name}\"{class}><td><a href=\"{href}\">{label}</a></td>\
         <td class=\"n\" data-count=\"{count}\">{shown}</td></tr>",
        name = Escaped(name),
        class = if bad { " class=\"bad\"" } else { "" },
        href = href(page.filters, "state", name),
        label = Escaped(label),
        shown = thousands(count),
    )
}

/// Links to the lists below, with their sizes: a long first list pushes the others far down.
fn jump_links(out: &mut String, overview: &Overview) -> fmt::Result {
    let lists = [
        (
            "failing",
            "Failing targets",
            overview.failing.as_ref().map(|l| l.total),
        ),
        (
            "images",
            "Images",
            overview.images.as_ref().map(|l| l.total),
        ),
        (
            "targets",
            "Other targets",
            overview.others.as_ref().map(|l| l.total),
        ),
    ];
    let links: Vec<String> = lists
        .iter()
        .filter_map(|(id, name, total)| {
            total.map(|total| format!("<a href=\"#{id}\">{name} ({})</a>", thousands(total)))
        })
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    writeln!(out, "<p id=\"lists\">Lists: {}</p>", links.join(" · "))
}

/// The failing targets: account, region, last success, last error.
fn failing_targets(out: &mut String, page: &Page, listed: &Listed<&TargetView>) -> fmt::Result {
    writeln!(
        out,
        "<section id=\"failing\"><h2>Failing targets ({})</h2>",
        thousands(listed.total)
    )?;
    if listed.total == 0 {
        out.push_str("<p>No target is failing.</p></section>\n");
        return Ok(());
    }
    out.push_str("<p>Longest failing first.</p>\n<div class=\"scroll\"><table><thead><tr><th>Account</th><th>Region</th>\
                  <th>Last success</th><th>Last error</th></tr></thead><tbody>\n");
    for target in &listed.rows {
        out.push_str("<tr>");
        account_cell(out, page, target)?;
        region_cell(out, page, target)?;
        match target.health.last_success {
            Some(at) => write!(
                out,
                "<td class=\"nowrap\">{} ago<br><span class=\"when\">{}</span></td>",
                age(page.now.duration_since(at).unwrap_or_default()),
                rfc3339(at)
            )?,
            None => out.push_str("<td>never</td>"),
        }
        text_cell(out, target.health.last_error.as_deref().unwrap_or(""))?;
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    more(out, listed, "failing targets")?;
    out.push_str("</section>\n");
    Ok(())
}

/// Images not enabled (or in the chosen states): image, state, time in it, reason, account,
/// region.
fn images_list(out: &mut String, page: &Page, listed: &Listed<ImageRow>) -> fmt::Result {
    let title = match &page.overview.chosen {
        Some(Chosen { states, .. }) => format!("Images in state {}", states.join(", ")),
        None => "Images not enabled".to_string(),
    };
    writeln!(
        out,
        "<section id=\"images\"><h2>{} ({})</h2>",
        Escaped(&title),
        thousands(listed.total)
    )?;
    if listed.total == 0 {
        out.push_str("<p>No image.</p></section>\n");
        return Ok(());
    }
    out.push_str("<p>Failed states first, then the longest in their state.</p>\n<div class=\"scroll\"><table><thead><tr><th>Image</th><th>State</th>\
                  <th>In state for</th><th>Reason</th><th>Account</th><th>Region</th></tr></thead><tbody>\n");
    for (target, image) in &listed.rows {
        let bad = is_failure(image.state.as_ref());
        write!(
            out,
            "<tr><td class=\"nowrap\">{}</td><td class=\"nowrap{}\">{}</td>",
            Escaped(&image.image_id),
            if bad { " bad" } else { "" },
            Escaped(state_name(image)),
        )?;
        let since = image
            .state_transition_time
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .and_then(|t| SystemTime::UNIX_EPOCH.checked_add(t));
        match since {
            Some(at) => write!(
                out,
                "<td class=\"nowrap\">{}<br><span class=\"when\">since {}</span></td>",
                age(page.now.duration_since(at).unwrap_or_default()),
                rfc3339(at)
            )?,
            None => out.push_str("<td>unknown</td>"),
        }
        text_cell(out, &image.state_transition_reason)?;
        account_cell(out, page, target)?;
        region_cell(out, page, target)?;
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    more(out, listed, "images")?;
    out.push_str("</section>\n");
    Ok(())
}

/// The targets not failing (or of the chosen results): account, region, result, images, last
/// success, last error.
fn other_targets(out: &mut String, page: &Page, listed: &Listed<&TargetView>) -> fmt::Result {
    let title = match &page.overview.chosen {
        Some(Chosen { outcomes, .. }) => {
            let labels: Vec<&str> = outcomes
                .iter()
                .filter(|o| **o != Outcome::Failed)
                .map(|o| o.label())
                .collect();
            format!("Targets: {}", labels.join(", "))
        }
        None => "Other targets".to_string(),
    };
    writeln!(
        out,
        "<section id=\"targets\"><h2>{} ({})</h2>",
        Escaped(&title),
        thousands(listed.total)
    )?;
    if listed.total == 0 {
        out.push_str("<p>No target.</p></section>\n");
        return Ok(());
    }
    out.push_str("<p>Not yet collected first, then duplicates, then ok.</p>\n<div class=\"scroll\"><table><thead><tr><th>Account</th><th>Region</th>\
                  <th>Last result</th><th class=\"n\">Images</th><th>Last success</th><th>Last error</th></tr></thead><tbody>\n");
    for target in &listed.rows {
        out.push_str("<tr>");
        account_cell(out, page, target)?;
        region_cell(out, page, target)?;
        write!(
            out,
            "<td>{}</td><td class=\"n\">{}</td>",
            Outcome::of(target).label(),
            target.images.as_ref().map_or(0, |i| i.len())
        )?;
        match target.health.last_success {
            Some(at) => write!(
                out,
                "<td class=\"nowrap\">{} ago</td>",
                age(page.now.duration_since(at).unwrap_or_default())
            )?,
            None => out.push_str("<td></td>"),
        }
        text_cell(out, target.health.last_error.as_deref().unwrap_or(""))?;
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    more(out, listed, "targets")?;
    out.push_str("</section>\n");
    Ok(())
}

/// The line under a cut list.
fn more<T>(out: &mut String, listed: &Listed<T>, what: &str) -> fmt::Result {
    if listed.more() == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "<p class=\"more\">{} more {what} not shown (the first {} of {} are): narrow the list with \
         the filters.</p>",
        thousands(listed.more()),
        thousands(listed.rows.len()),
        thousands(listed.total),
    )
}

/// The account's name and id; the name links to the page filtered to the account.
fn account_cell(out: &mut String, page: &Page, target: &TargetView) -> fmt::Result {
    let name = target.account_name.as_deref();
    let id = target.account_id.as_deref();
    out.push_str("<td class=\"nowrap\">");
    match (name, id) {
        (Some(name), Some(id)) => write!(
            out,
            "<a href=\"{}\">{}</a> <span class=\"id\">{}</span>",
            href(page.filters, "account", id),
            Escaped(name),
            Escaped(id)
        )?,
        (None, Some(id)) | (Some(id), None) => write!(
            out,
            "<a href=\"{}\">{}</a>",
            href(page.filters, "account", id),
            Escaped(id)
        )?,
        // The base credentials' account before GetCallerIdentity answered: its config key.
        (None, None) => write!(
            out,
            "{} <span class=\"id\">id not known yet</span>",
            Escaped(&target.key.account)
        )?,
    }
    out.push_str("</td>");
    Ok(())
}

fn region_cell(out: &mut String, page: &Page, target: &TargetView) -> fmt::Result {
    write!(
        out,
        "<td class=\"nowrap\"><a href=\"{}\">{}</a></td>",
        href(page.filters, "region", &target.key.region),
        Escaped(&target.key.region)
    )
}

/// An error or reason: wrapped anywhere (AWS messages have long unbroken words), cut to
/// [`MAX_TEXT_CHARS`].
fn text_cell(out: &mut String, text: &str) -> fmt::Result {
    let cut: String;
    let text = if text.chars().count() > MAX_TEXT_CHARS {
        cut = text.chars().take(MAX_TEXT_CHARS).chain(['…']).collect();
        &cut
    } else {
        text
    };
    write!(out, "<td class=\"text\">{}</td>", Escaped(text))
}

/// A link to this page with the request's filters, `key` set to `value` alone: relative, so
/// that it works behind a proxy that serves the exporter under a path. Escaped for an attribute.
fn href(filters: &Filters, key: &str, value: &str) -> String {
    let mut query = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    for (name, values) in [
        ("account", &filters.accounts),
        ("region", &filters.regions),
        ("state", &filters.states),
    ] {
        if name == key {
            query.append_pair(name, value);
        } else {
            for value in values.iter().flatten() {
                query.append_pair(name, value);
            }
        }
    }
    escape(&query.finish())
}

/// `at` as RFC 3339 in UTC, to the second.
fn rfc3339(at: SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(at)
}

/// A duration in its two largest units: `42s`, `12m 5s`, `3h 2m`, `5d 4h`.
pub(super) fn age(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m {}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `n` with a comma every three digits.
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn plural(n: usize, noun: &str) -> String {
    format!("{} {noun}{}", thousands(n), if n == 1 { "" } else { "s" })
}
