//! The landing page `/`: every target, its last result and error.

use super::*;

pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn landing_page(state: &AppState) -> String {
    let snapshot = state.registry.snapshot(SystemTime::now());
    let mut rows = String::new();
    for target in &snapshot.targets {
        let account_label = match (target.account_id.as_deref(), target.account_name.as_deref()) {
            (Some(id), Some(name)) => format!("{id} ({name})"),
            (Some(id), None) => id.to_string(),
            (None, Some(name)) => format!("unknown ({name})"),
            (None, None) => "unknown".to_string(),
        };
        let result = match (
            &target.duplicate_of,
            target.health.tried,
            target.health.last_ok,
        ) {
            (Some(_), _, _) => "not collected (duplicate)",
            (None, false, _) => "not yet collected",
            (None, true, true) => "ok",
            (None, true, false) => "failed",
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&account_label),
            escape(&target.key.region),
            result,
            target.images.as_ref().map_or(0, |i| i.len()),
            escape(target.health.last_error.as_deref().unwrap_or("")),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Fast Launch Exporter</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head>\n\
         <body><h1>Fast Launch Exporter</h1>\n\
         <p>Prometheus exporter for AWS EC2 Windows fast launch (DescribeFastLaunchImages).</p>\n\
         <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\n\
         <table><tr><th>Account</th><th>Region</th><th>Last result</th><th>Images</th><th>Last error</th></tr>\n\
         {rows}</table>\n<p>Version {version} ({revision})</p></body></html>\n",
        path = escape(&state.telemetry_path),
        version = crate::expose::VERSION,
        revision = crate::expose::REVISION,
    )
}
