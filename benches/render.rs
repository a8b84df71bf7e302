//! Render cost of the `/metrics` exposition: `cargo bench --bench render`.
//! 1,000 and 100,000 images spread over 10 targets, every field set (the worst case per image).
//! Side by side, per size: the full render (every line written for the scrape, the reference)
//! against the scrape path (cached chunks stitched, ages valued now), plain and gzip; both
//! collected into one buffer, so the stitched path pays a copy the server does not. Iterations
//! within one second share that second's `state_age_seconds` pieces, as concurrent scrapes do;
//! a lone scraper every 15 s pays for rendering and compressing them (about 130 bytes per image).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fast_launch_exporter::domain::calls::{Api, ApiCounters};
use fast_launch_exporter::domain::model::{FastLaunchImage, FastLaunchState, TargetKey};
use fast_launch_exporter::expose::body;
use fast_launch_exporter::expose::Format;
use fast_launch_exporter::expose::MetricsRenderer;
use fast_launch_exporter::targets::{AccountView, Health, ReloadStatus, Snapshot, TargetView};
use flate2::write::GzEncoder;
use flate2::Compression;

/// A snapshot of `images` images over 10 targets (2 accounts × 5 regions).
pub fn populated_snapshot(images: usize) -> Snapshot {
    let regions = [
        "us-east-1",
        "eu-west-1",
        "ap-southeast-2",
        "us-west-2",
        "eu-central-1",
    ];
    let now = SystemTime::now();
    let per_target = images / 10;
    let mut n = 0usize;
    let accounts = [
        ("base", "111111111111", "tooling"),
        ("arn:aws:iam::222222222222:role/R", "222222222222", "prod"),
    ];
    let mut targets = Vec::new();
    for (account, account_id, name) in accounts {
        for region in regions {
            let list: Vec<FastLaunchImage> = (0..per_target)
                .map(|_| {
                    n += 1;
                    FastLaunchImage {
                        image_id: format!("ami-{n:017x}"),
                        owner_id: "111111111111".into(),
                        resource_type: "snapshot".into(),
                        launch_template_id: format!("lt-{:017x}", n % 50),
                        launch_template_name: format!("windows-fast-launch-{}", n % 50),
                        launch_template_version: "3".into(),
                        state: Some(FastLaunchState::ALL[n % 6].clone()),
                        state_transition_reason: "Client.UserInitiated".into(),
                        state_transition_time: Some(1_795_000_000.5),
                        target_resource_count: Some(10),
                        max_parallel_launches: Some(6),
                    }
                })
                .collect();
            targets.push(Arc::new(TargetView {
                key: TargetKey {
                    account: account.into(),
                    region: region.into(),
                },
                account_name: Some(name.into()),
                account_id: Some(account_id.into()),
                apis: if account == "base" {
                    &[Api::DescribeFastLaunchImages, Api::GetCallerIdentity]
                } else {
                    &[Api::DescribeFastLaunchImages, Api::AssumeRole]
                },
                health: Health {
                    tried: true,
                    last_ok: true,
                    last_duration: Some(Duration::from_millis(100)),
                    last_success: Some(now),
                    last_error: None,
                },
                images: Some(Arc::new(list)),
                counters: Arc::new(ApiCounters::default()),
                duplicate_of: None,
                cloudwatch: None,
            }));
        }
    }
    Snapshot {
        id: 0,
        accounts: accounts
            .iter()
            .map(|(key, id, name)| AccountView {
                key: key.to_string(),
                account_id: Some(id.to_string()),
                name: Some(name.to_string()),
                labels: BTreeMap::new(),
            })
            .collect(),
        targets,
        static_label_names: Vec::new(),
        reload: ReloadStatus {
            successful: true,
            last_success: now,
        },
        interval: Duration::from_secs(300),
        max_staleness: Duration::from_secs(900),
        metrics: Arc::default(),
    }
}

fn render(c: &mut Criterion) {
    let renderer = MetricsRenderer::without_process();
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for images in [1_000usize, 100_000] {
        let snapshot = populated_snapshot(images);
        let bytes = renderer.render_snapshot(&snapshot, SystemTime::now()).len();
        eprintln!("{images} images: {bytes} bytes of exposition");
        group.throughput(Throughput::Elements(images as u64));
        group.bench_with_input(
            BenchmarkId::new("full", images),
            &snapshot,
            |b, snapshot| {
                b.iter(|| black_box(renderer.render_snapshot(snapshot, SystemTime::now())))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("full+gzip", images),
            &snapshot,
            |b, snapshot| {
                b.iter(|| {
                    let text = renderer.render_snapshot(snapshot, SystemTime::now());
                    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                    gz.write_all(text.as_bytes()).unwrap();
                    black_box(gz.finish().unwrap())
                })
            },
        );
        // Warm the cache (and its deflate copies) as rendering ahead does.
        let parts = renderer.exposition_of(&snapshot, SystemTime::now(), Format::Text);
        black_box(body::collect(parts, true));
        group.bench_with_input(
            BenchmarkId::new("stitched", images),
            &snapshot,
            |b, snapshot| {
                b.iter(|| {
                    let parts = renderer.exposition_of(snapshot, SystemTime::now(), Format::Text);
                    black_box(body::collect(parts, false))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("stitched+gzip", images),
            &snapshot,
            |b, snapshot| {
                b.iter(|| {
                    let parts = renderer.exposition_of(snapshot, SystemTime::now(), Format::Text);
                    black_box(body::collect(parts, true))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
