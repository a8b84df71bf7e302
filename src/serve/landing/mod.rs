//! The landing page `/`, for an operator at any number of targets: a summary (targets by last
//! result, images by fast-launch state), then what needs a look (failing targets, images not
//! `enabled`), then the rest of the targets; each list cut to its first rows, and filters in
//! the query string (`?account=`, `?region=`, `?state=`).
//!
//! Three files, three ideas: `query` reads the filters, `overview` counts, sorts and cuts (no
//! HTML), `html` writes the page.

use std::time::SystemTime;

use crate::serve::AppState;

mod html;
mod overview;
mod query;

#[cfg(test)]
mod tests;

/// The most rows each list shows: at 17,000 targets the page stays near 150 kB, and what is
/// beyond is reached with the filters.
const ROWS: usize = 100;

/// The page for the request's `query` (the part of the URL after `?`, if any).
pub(in crate::serve) fn landing_page(state: &AppState, query: Option<&str>) -> String {
    let now = SystemTime::now();
    let snapshot = state.registry.snapshot(now);
    let filters = query::Filters::parse(query);
    let overview = overview::Overview::build(&snapshot.targets, &filters, ROWS);
    html::page(&html::Page {
        overview: &overview,
        filters: &filters,
        telemetry_path: &state.telemetry_path,
        now,
        rows: ROWS,
    })
}
