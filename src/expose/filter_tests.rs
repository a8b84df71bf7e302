//! `metrics.include` / `exclude` in the exposition: the families known to the configuration are
//! the families rendered, and an excluded one is never rendered, on either path.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::body::{collect, Part};
use super::images::ImageFamily;
use super::tests::{gunzip, snapshot};
use super::*;
use crate::domain::calls::Api;
use crate::domain::families::{find_family, MetricsFilter, FAMILIES};
use crate::domain::stats::{DiscoveryStats, EventStats};

/// The family names of `text` (its `# TYPE` lines), in order.
fn families_of(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// A renderer with every source on: events, Organizations discovery that has run, process.
fn renderer_with_everything() -> MetricsRenderer {
    let discovery = Arc::new(DiscoveryStats::default());
    {
        let mut state = discovery.update();
        state.organizations = true;
        state.last_ok = Some(true);
        state.last_success = Some(SystemTime::now());
        state.accounts = 3;
    }
    let renderer = MetricsRenderer::new().with_sources(Sources {
        shard: Shard::default(),
        discovery: Some(discovery),
    });
    renderer.show_events(Arc::new(EventStats::new(
        "111111111111",
        "us-east-1",
        vec![Api::ReceiveMessage],
    )));
    renderer
}

fn filter_of(names: &[&str]) -> Arc<MetricsFilter> {
    Arc::new(MetricsFilter::excluding(
        names
            .iter()
            .map(|n| find_family(n).expect("a known family")),
    ))
}

fn text_of(parts: Vec<Part>, gzip: bool) -> String {
    let body = collect(parts, gzip);
    if gzip {
        gunzip(&body)
    } else {
        String::from_utf8(body).unwrap()
    }
}

/// The one list the configuration checks names against is exactly what is rendered with every
/// feature on (CloudWatch, events, discovery, process), in the order it is rendered.
#[test]
fn the_known_families_are_the_families_rendered_with_every_feature_on() {
    let renderer = renderer_with_everything();
    let now = SystemTime::now();
    let text = renderer.render_snapshot_as(&snapshot(now), now, Format::Text);
    let known: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(families_of(&text), known);
}

/// Excluded families (per image, CloudWatch, ages, per target, AWS calls, own, process) are
/// absent from the straightforward and the cached render, plain and gzip, in both formats; the
/// two stay byte for byte the same, and the cached chunks of an excluded image family hold
/// nothing.
#[test]
fn excluded_families_are_never_rendered() {
    let excluded = [
        "aws_ec2_fast_launch_image_info",
        "aws_ec2_fast_launch_image_state_age_seconds",
        "aws_ec2_fast_launch_image_fast_launches_total",
        "aws_ec2_fast_launch_image_state_reason_info",
        "fast_launch_exporter_collection_duration_seconds",
        "fast_launch_exporter_aws_requests_total",
        "fast_launch_exporter_build_info",
        "process_cpu_seconds_total",
    ];
    let renderer = MetricsRenderer::without_process();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_100_000);
    let mut snapshot = snapshot(now);
    snapshot.metrics = filter_of(&excluded);
    snapshot.id += 1;
    for format in [Format::Text, Format::OpenMetrics] {
        let reference = renderer.render_snapshot_as(&snapshot, now, format);
        for name in excluded {
            let name = match format {
                Format::OpenMetrics => name.strip_suffix("_total").unwrap_or(name),
                Format::Text => name,
            };
            assert!(!reference.contains(name), "{format:?}: {name}");
        }
        for kept in [
            "aws_ec2_fast_launch_image_state{",
            "aws_ec2_fast_launch_image_cold_launches",
            "aws_ec2_fast_launch_image_state_transition_timestamp_seconds{",
            "fast_launch_exporter_collection_success{",
            "fast_launch_exporter_aws_errors",
        ] {
            assert!(reference.contains(kept), "{format:?}: {kept}");
        }
        for gzip in [false, true] {
            let parts = renderer.exposition_of(&snapshot, now, format);
            assert_eq!(text_of(parts, gzip), reference, "{format:?} gzip {gzip}");
        }
    }
    for entry in lock(&renderer.cache).values() {
        for family in [ImageFamily::Info, ImageFamily::FastLaunches] {
            for format in [Format::Text, Format::OpenMetrics] {
                assert!(entry.chunk(family, format).plain().is_empty());
            }
        }
        assert!(entry.rendered().ages.is_empty());
        assert!(!entry
            .chunk(ImageFamily::State, Format::Text)
            .plain()
            .is_empty());
    }
}

/// A filter that changes (a reload) is applied at the next scrape: no chunk rendered for the
/// old one is served, whether it excluded a family now served or served one now excluded.
#[test]
fn a_changed_filter_is_never_served_from_chunks_of_the_old_one() {
    let renderer = MetricsRenderer::without_process();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_100_000);
    let mut snapshot = snapshot(now);
    let filters = [
        filter_of(&["aws_ec2_fast_launch_image_info"]),
        Arc::default(),
        filter_of(&[
            "aws_ec2_fast_launch_image_state",
            "aws_ec2_fast_launch_image_cold_launches_total",
            "aws_ec2_fast_launch_image_state_age_seconds",
        ]),
        filter_of(&["aws_ec2_fast_launch_image_info"]),
    ];
    for filter in filters {
        snapshot.metrics = filter;
        snapshot.id += 1;
        for format in [Format::Text, Format::OpenMetrics] {
            let parts = renderer.exposition_of(&snapshot, now, format);
            assert_eq!(
                text_of(parts, true),
                renderer.render_snapshot_as(&snapshot, now, format),
                "{:?}",
                snapshot.metrics
            );
        }
    }
    // The same filter in a new Arc (a reload of an unchanged file) keeps the chunks.
    let before = lock(&renderer.cache).clone();
    snapshot.metrics = filter_of(&["aws_ec2_fast_launch_image_info"]);
    snapshot.id += 1;
    drop(renderer.exposition_of(&snapshot, now, Format::Text));
    let after = lock(&renderer.cache);
    assert!(after
        .iter()
        .all(|(key, entry)| Arc::ptr_eq(entry, &before[key])));
}
