//! Soak: 200 targets with mixed faults on a share of them, a 1-second interval and a scraper
//! running all the while. Every scrape answers, memory stays bounded, and at the end every
//! clean target serves exactly what the simulator holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fast_launch_exporter::demo::{self, DemoOptions, DEMO_REGIONS};
use fast_launch_exporter::sim::Simulator;
use tokio::net::TcpListener;

use crate::harness::*;

/// How long the soak runs (CI budget: the whole suite stays within minutes).
const SOAK: Duration = Duration::from_secs(60);

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_200_targets_with_mixed_faults_under_scrapes() {
    let options = DemoOptions {
        accounts: 20,
        regions: 10,
        images: 20,
        churn: 0.0,
        throttle_rate: 0.0,
        faulty_targets: 0.3,
        fault_rate: 0.2,
        seed: 42,
        ..DemoOptions::default()
    };
    let sim = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        demo::build_world(&options),
    )
    .unwrap();
    let regions: Vec<&str> = DEMO_REGIONS[..options.regions].to_vec();
    let mut yaml = format!(
        "collection: {{interval: 1s, timeout: 1s, concurrency: 64, max_attempts: 2}}\nregions: [{}]\naccounts:\n  - name: base\n",
        regions.join(", ")
    );
    for index in 1..options.accounts {
        yaml.push_str(&format!(
            "  - role_arn: arn:aws:iam::{}:role/FastLaunchReader\n",
            demo::demo_account_id(index)
        ));
    }
    let config = config_file(&yaml);
    let mut command = exporter_command(&sim.url());
    command
        .env("AWS_ACCESS_KEY_ID", "AKIDDEMOEXAMPLE")
        .args(["--web.listen-address", "127.0.0.1:0", "--config.file"])
        .arg(config.path());
    let exporter = Exporter::spawn(command, None).await;
    let pid = exporter.pid();

    // Memory is sampled once a second on a thread of its own, however slow the scrapes are,
    // so that warm-up and late samples are always different samples.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut rss = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                rss.push(resident_kib(pid));
                std::thread::sleep(Duration::from_secs(1));
            }
            rss
        })
    };
    let started = Instant::now();
    let mut scrapes = 0u32;
    while started.elapsed() < SOAK {
        let response = exporter.get("/metrics").await;
        assert_eq!(response.status, 200, "scrape {scrapes} failed");
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let rss = sampler.join().unwrap();
    // Scrapes share two cores with 200 collections a second (and, in CI, the other tests):
    // what matters is that every one answered, checked above.
    assert!(scrapes >= 10, "{scrapes} scrapes");

    // Memory: bounded, and not growing after warm-up, judged on enough samples that the
    // warm-up one and the late ones are far apart.
    assert!(
        rss.len() >= SOAK.as_secs() as usize / 2,
        "{} RSS samples in {SOAK:?}: {rss:?}",
        rss.len()
    );
    assert!(rss.iter().all(|&kib| kib > 0), "exporter gone: {rss:?}");
    let warm = rss[rss.len() / 4];
    let peak_late = *rss[rss.len() / 2..].iter().max().unwrap();
    eprintln!("soak: {scrapes} scrapes; RSS KiB samples {rss:?}");
    assert!(peak_late < 256 * 1024, "RSS {peak_late} KiB");
    assert!(
        peak_late <= warm + warm / 2 + 8 * 1024,
        "RSS grew from {warm} to {peak_late} KiB"
    );

    // Every clean target serves exactly what the simulator holds.
    let faulty: BTreeSet<(usize, usize)> = demo::faulty_targets(&options).into_iter().collect();
    assert!(!faulty.is_empty() && faulty.len() < 200);
    let text = exporter.metrics().await;
    let mut served: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
    for sample in find(&text, "aws_ec2_fast_launch_image_state", &[])
        .into_iter()
        .filter(|s| s.value == 1.0)
    {
        let label = |name: &str| {
            sample
                .labels
                .iter()
                .find(|(k, _)| k == name)
                .unwrap()
                .1
                .clone()
        };
        served
            .entry((label("aws_account_id"), label("aws_region")))
            .or_default()
            .insert((label("image_id"), label("state")));
    }
    let successes: BTreeMap<(String, String), f64> =
        find(&text, "fast_launch_exporter_collection_success", &[])
            .into_iter()
            .map(|s| {
                let label =
                    |name: &str| s.labels.iter().find(|(k, _)| k == name).unwrap().1.clone();
                ((label("aws_account_id"), label("aws_region")), s.value)
            })
            .collect();
    let mut clean = 0;
    for account in 0..options.accounts {
        for (r, region) in regions.iter().enumerate() {
            if faulty.contains(&(account, r)) {
                continue;
            }
            clean += 1;
            let id = demo::demo_account_id(account);
            let expected: BTreeSet<(String, String)> = sim
                .world()
                .images(&id, region)
                .iter()
                .map(|i| {
                    (
                        i.image_id.clone(),
                        i.state.as_ref().unwrap().as_str().to_string(),
                    )
                })
                .collect();
            let key = (id.clone(), region.to_string());
            assert_eq!(
                served.get(&key),
                Some(&expected),
                "clean target {id}/{region}"
            );
            assert_eq!(
                successes.get(&key),
                Some(&1.0),
                "clean target {id}/{region}"
            );
        }
    }
    assert!(clean > 100, "{clean} clean targets");
    assert!(!exporter.logs().contains("panicked"));
}
