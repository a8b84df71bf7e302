//! Render cost of the `/metrics` exposition: `cargo bench --bench render`.
//! 1,000 and 100,000 images spread over 10 targets, every field set (the worst case per image).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fast_launch_exporter::config::Config;
use fast_launch_exporter::metrics::MetricsRenderer;
use fast_launch_exporter::model::{FastLaunchImage, FastLaunchState, TargetKey};
use fast_launch_exporter::store::Store;

/// A store of `images` images over 10 targets (2 accounts × 5 regions).
pub fn populated_store(images: usize) -> Store {
    let regions = [
        "us-east-1",
        "eu-west-1",
        "ap-southeast-2",
        "us-west-2",
        "eu-central-1",
    ];
    let yaml = format!(
        "regions: [{}]\naccounts:\n  - name: base\n  - name: prod\n    role_arn: arn:aws:iam::222222222222:role/R\n",
        regions.join(", ")
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let store = Store::new(&config);
    store.set_account_id("base", "111111111111");
    let now = SystemTime::now();
    let per_target = images / 10;
    let mut n = 0usize;
    for account in ["base", "arn:aws:iam::222222222222:role/R"] {
        for region in regions {
            let list = (0..per_target)
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
            let key = TargetKey {
                account: account.into(),
                region: region.into(),
            };
            store.record_success(&key, list, Duration::from_millis(100), now);
        }
    }
    store
}

fn render(c: &mut Criterion) {
    let renderer = MetricsRenderer::without_process();
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for images in [1_000usize, 100_000] {
        let store = populated_store(images);
        let bytes = renderer.render(&store, SystemTime::now()).len();
        eprintln!("{images} images: {bytes} bytes of exposition");
        group.throughput(Throughput::Elements(images as u64));
        group.bench_with_input(BenchmarkId::from_parameter(images), &store, |b, store| {
            b.iter(|| black_box(renderer.render(store, SystemTime::now())))
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
