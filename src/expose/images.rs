//! The per-image families: one series (or a few) per image, for every served target's images.

use std::ops::Range;
use std::sync::Arc;

use super::cache::BlockChunks;
use super::writer::{Exposition, Kind};
use super::{CACHED, MAX_REASON_CHARS};
use crate::domain::launches::Launches;
use crate::domain::model::{FastLaunchImage, FastLaunchState, TargetKey};
use crate::targets::TargetView;

/// One target's images with the labels they share.
pub(super) struct ImageGroup<'a> {
    pub(super) key: &'a TargetKey,
    pub(super) account_id: &'a str,
    pub(super) images: &'a Arc<Vec<FastLaunchImage>>,
    /// The CloudWatch values, when the target reads CloudWatch.
    pub(super) launches: Option<&'a Arc<Launches>>,
}

/// The served targets that have images, by block (see [`super::blocks`]): blocks without
/// images are left out.
pub(super) fn image_blocks<'a>(
    targets: &[&'a TargetView],
    blocks: &[Range<usize>],
) -> Vec<Vec<ImageGroup<'a>>> {
    blocks
        .iter()
        .map(|block| {
            targets[block.clone()]
                .iter()
                .filter_map(|t| {
                    Some(ImageGroup {
                        key: &t.key,
                        account_id: t.account_id.as_deref().unwrap_or(""),
                        images: t.images.as_ref()?,
                        launches: t.cloudwatch.as_ref().map(|c| &c.launches),
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|groups| !groups.is_empty())
        .collect()
}

/// The families with one series (or a few) per image, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ImageFamily {
    Info,
    State,
    TargetResources,
    MaxParallelLaunches,
    TransitionTime,
    /// Computed at scrape time: its lines are cached without their values ([`AgeLines`]).
    StateAge,
    AvailableSnapshots,
    FastLaunches,
    ColdLaunches,
    Reason,
}

impl ImageFamily {
    pub(super) const ALL: [ImageFamily; 10] = [
        ImageFamily::Info,
        ImageFamily::State,
        ImageFamily::TargetResources,
        ImageFamily::MaxParallelLaunches,
        ImageFamily::TransitionTime,
        ImageFamily::StateAge,
        ImageFamily::AvailableSnapshots,
        ImageFamily::FastLaunches,
        ImageFamily::ColdLaunches,
        ImageFamily::Reason,
    ];

    /// The family's name.
    pub(super) fn name(self) -> &'static str {
        self.header_parts().0
    }

    /// Name, type and help.
    pub(super) fn header(self) -> (&'static str, Kind, String) {
        let (name, kind, help) = self.header_parts();
        let help = if self.is_cloudwatch() {
            help.to_string()
        } else {
            format!("{help} {CACHED}")
        };
        (name, kind, help)
    }

    /// Name, type and help without the note on caching.
    fn header_parts(self) -> (&'static str, Kind, &'static str) {
        match self {
            ImageFamily::Info => (
                "aws_ec2_fast_launch_image_info",
                Kind::Gauge,
                "Fast launch configuration of an image; value is always 1.",
            ),
            ImageFamily::State => (
                "aws_ec2_fast_launch_image_state",
                Kind::Gauge,
                "Fast launch state of an image: 1 for the current state, 0 for the others.",
            ),
            ImageFamily::TargetResources => (
                "aws_ec2_fast_launch_image_target_resources",
                Kind::Gauge,
                "Pre-provisioned snapshots fast launch keeps for the image (SnapshotConfiguration.TargetResourceCount).",
            ),
            ImageFamily::MaxParallelLaunches => (
                "aws_ec2_fast_launch_image_max_parallel_launches",
                Kind::Gauge,
                "Maximum parallel instances launched to pre-provision snapshots (MaxParallelLaunches).",
            ),
            ImageFamily::TransitionTime => (
                "aws_ec2_fast_launch_image_state_transition_timestamp_seconds",
                Kind::Gauge,
                "Unix time of the image's last fast launch state transition (StateTransitionTime).",
            ),
            ImageFamily::StateAge => (
                "aws_ec2_fast_launch_image_state_age_seconds",
                Kind::Gauge,
                "Seconds since the image's last fast launch state transition, computed at scrape time from the cached StateTransitionTime.",
            ),
            ImageFamily::AvailableSnapshots => (
                "aws_ec2_fast_launch_image_available_snapshots",
                Kind::Gauge,
                "Pre-provisioned snapshots available for the image: the latest CloudWatch NumberOfAvailableFastLaunchSnapshots (Minimum) within cloudwatch.lookback.",
            ),
            ImageFamily::FastLaunches => (
                "aws_ec2_fast_launch_image_fast_launches_total",
                Kind::Counter,
                "Instances launched from a pre-provisioned snapshot: CloudWatch NumberOfInstancesFastLaunched (Sum), each period added once after it ended at least one period ago; 0 when the image was first seen.",
            ),
            ImageFamily::ColdLaunches => (
                "aws_ec2_fast_launch_image_cold_launches_total",
                Kind::Counter,
                "Instances launched without a pre-provisioned snapshot (cold boots): CloudWatch NumberOfInstancesNotFastLaunched (Sum), each period added once after it ended at least one period ago; 0 when the image was first seen.",
            ),
            ImageFamily::Reason => (
                "aws_ec2_fast_launch_image_state_reason_info",
                Kind::Gauge,
                "Reason for the image's last state transition (StateTransitionReason, at most 256 characters); value is always 1.",
            ),
        }
    }

    /// Whether the family comes from CloudWatch (written only when some image has its data).
    pub(super) fn is_cloudwatch(self) -> bool {
        matches!(
            self,
            ImageFamily::AvailableSnapshots | ImageFamily::FastLaunches | ImageFamily::ColdLaunches
        )
    }
}

/// Writes one target's lines of an image family.
pub(super) fn image_lines(
    x: &mut Exposition,
    family: ImageFamily,
    group: &ImageGroup<'_>,
    now: f64,
) {
    let name = family.name();
    for image in group.images.iter() {
        let [a, r, i] = [
            ("aws_account_id", group.account_id),
            ("aws_region", &group.key.region),
            ("image_id", image.image_id.as_str()),
        ];
        let gauge = |x: &mut Exposition, value: Option<f64>| {
            if let Some(v) = value {
                x.sample(name, &[a, r, i], v);
            }
        };
        match family {
            ImageFamily::Info => x.sample(
                name,
                &[
                    a,
                    r,
                    i,
                    ("owner_id", &image.owner_id),
                    ("resource_type", &image.resource_type),
                    ("launch_template_id", &image.launch_template_id),
                    ("launch_template_name", &image.launch_template_name),
                    ("launch_template_version", &image.launch_template_version),
                ],
                1.0,
            ),
            ImageFamily::State => {
                for state in &FastLaunchState::ALL {
                    let current = image.state.as_ref() == Some(state);
                    x.sample(
                        name,
                        &[a, r, i, ("state", state.as_str())],
                        if current { 1.0 } else { 0.0 },
                    );
                }
                if let Some(FastLaunchState::Unknown(raw)) = &image.state {
                    x.sample(name, &[a, r, i, ("state", raw)], 1.0);
                }
            }
            ImageFamily::TargetResources => {
                gauge(x, image.target_resource_count.map(f64::from));
            }
            ImageFamily::MaxParallelLaunches => {
                gauge(x, image.max_parallel_launches.map(f64::from));
            }
            ImageFamily::TransitionTime => gauge(x, image.state_transition_time),
            ImageFamily::StateAge => {
                if let Some(at) = image.state_transition_time {
                    x.age_sample(name, &[a, r, i], now, at);
                }
            }
            ImageFamily::AvailableSnapshots
            | ImageFamily::FastLaunches
            | ImageFamily::ColdLaunches => {
                let Some(counted) = group.launches.and_then(|l| l.image(&image.image_id)) else {
                    continue;
                };
                match family {
                    ImageFamily::AvailableSnapshots => gauge(x, counted.available_snapshots),
                    ImageFamily::FastLaunches => {
                        x.counter(
                            name,
                            &[a, r, i],
                            counted.fast_launches,
                            counted.created as f64,
                        );
                    }
                    _ => x.counter(
                        name,
                        &[a, r, i],
                        counted.cold_launches,
                        counted.created as f64,
                    ),
                }
            }
            ImageFamily::Reason => {
                let state = image.state.as_ref().map_or("", FastLaunchState::as_str);
                let reason = &image.state_transition_reason;
                let reason = match reason.char_indices().nth(MAX_REASON_CHARS) {
                    Some((cut, _)) => &reason[..cut],
                    None => reason.as_str(),
                };
                x.sample(name, &[a, r, i, ("state", state), ("reason", reason)], 1.0);
            }
        }
    }
}

/// What the per-image families are written from.
pub(super) enum Images<'a> {
    /// Line by line, from the targets' images in blocks (see [`image_blocks`]).
    Lines(&'a [Vec<ImageGroup<'a>>]),
    /// From the cache entries of the blocks that have images; `cloudwatch` says whether some
    /// target has CloudWatch values.
    Cached {
        entries: &'a [Arc<BlockChunks>],
        cloudwatch: bool,
    },
}

/// The per-image families, each written whole over every target's images.
pub(super) fn render_images(x: &mut Exposition, images: Images<'_>, now: f64) {
    let cloudwatch = match images {
        Images::Lines(blocks) => blocks
            .iter()
            .flatten()
            .any(|g| g.launches.is_some_and(|l| !l.is_empty())),
        Images::Cached { cloudwatch, .. } => cloudwatch,
    };
    for family in ImageFamily::ALL {
        if !x.serves(family.name()) || (family.is_cloudwatch() && !cloudwatch) {
            continue;
        }
        let (name, kind, help) = family.header();
        x.family(name, kind, &help);
        match images {
            Images::Cached { entries, .. } if family == ImageFamily::StateAge => {
                for entry in entries {
                    x.ages(&entry.rendered().ages, now);
                }
            }
            Images::Cached { entries, .. } => {
                let format = x.format;
                for entry in entries {
                    x.cached(entry.chunk(family, format));
                }
            }
            Images::Lines(blocks) => {
                for group in blocks.iter().flatten() {
                    image_lines(x, family, group, now);
                }
            }
        }
    }
}
