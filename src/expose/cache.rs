//! The cache of one block's per-image lines (see [`super::blocks`]): rendered once per change
//! of its targets' data and shared by every scrape until the data changes again.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::body::{AgeLines, Chunk};
use super::images::{image_lines, ImageFamily, ImageGroup};
use super::writer::Exposition;
use super::Format;
use crate::domain::families::MetricsFilter;
use crate::domain::launches::Launches;
use crate::domain::model::{FastLaunchImage, TargetKey};

/// What is cached of one block's images: every per-image family's lines, rendered once for
/// the data they were rendered from (kept here, compared by identity) and shared by every
/// scrape until that data changes. The CloudWatch families are kept apart: they change at every
/// CloudWatch query, the others only when DescribeFastLaunchImages says something new.
pub(super) struct BlockChunks {
    /// The block's targets that have images, in order.
    members: Vec<Member>,
    /// The families served when these were rendered: an excluded family's chunks are empty.
    filter: Arc<MetricsFilter>,
    /// The families read from DescribeFastLaunchImages; shared with the entry that replaces
    /// this one when only the CloudWatch values changed.
    pub(super) rendered: Arc<OnceLock<RenderedImages>>,
    /// The CloudWatch families.
    from_cloudwatch: OnceLock<CloudWatchChunks>,
}

/// The data one target's lines were rendered from.
struct Member {
    key: TargetKey,
    account_id: String,
    images: Arc<Vec<FastLaunchImage>>,
    launches: Option<Arc<Launches>>,
}

/// The empty chunk, shared (a slot of [`RenderedImages::families`] no lines go in).
fn empty_chunk() -> Arc<Chunk> {
    static EMPTY: OnceLock<Arc<Chunk>> = OnceLock::new();
    EMPTY
        .get_or_init(|| Arc::new(Chunk::new(Bytes::new())))
        .clone()
}

/// The rendered lines of [`BlockChunks`] read from DescribeFastLaunchImages.
pub(super) struct RenderedImages {
    /// One chunk per [`ImageFamily::ALL`] in text format (empty for `StateAge` and the
    /// CloudWatch families).
    families: Vec<Arc<Chunk>>,
    pub(super) ages: Arc<AgeLines>,
}

/// The rendered CloudWatch families of [`BlockChunks`].
struct CloudWatchChunks {
    /// Available snapshots, fast launches, cold launches, in text format.
    text: [Arc<Chunk>; 3],
    /// The two counter families in OpenMetrics, rendered when an OpenMetrics scrape first asks.
    open_metrics_counters: OnceLock<[Arc<Chunk>; 2]>,
}

/// How a cache entry stands against a target's data now.
pub(super) enum Kept {
    /// Rendered from this data.
    Same,
    /// Rendered from these images, but other CloudWatch values.
    ImagesOnly,
    /// Rendered from other images or for another account id.
    Stale,
}

impl BlockChunks {
    pub(super) fn new(
        groups: &[ImageGroup<'_>],
        rendered: Arc<OnceLock<RenderedImages>>,
        filter: &Arc<MetricsFilter>,
    ) -> BlockChunks {
        BlockChunks {
            members: groups
                .iter()
                .map(|group| Member {
                    key: group.key.clone(),
                    account_id: group.account_id.to_string(),
                    images: group.images.clone(),
                    launches: group.launches.cloned(),
                })
                .collect(),
            filter: filter.clone(),
            rendered,
            from_cloudwatch: OnceLock::new(),
        }
    }

    /// Whether these chunks were rendered from `groups`' data, for `filter`.
    pub(super) fn kept_for(&self, groups: &[ImageGroup<'_>], filter: &Arc<MetricsFilter>) -> Kept {
        if self.members.len() != groups.len()
            || !(Arc::ptr_eq(&self.filter, filter) || self.filter == *filter)
        {
            return Kept::Stale;
        }
        let mut kept = Kept::Same;
        for (member, group) in self.members.iter().zip(groups) {
            if !Arc::ptr_eq(&member.images, group.images)
                || member.account_id != group.account_id
                || member.key != *group.key
            {
                return Kept::Stale;
            }
            match (&member.launches, group.launches) {
                (Some(kept), Some(now)) if Arc::ptr_eq(kept, now) => {}
                (None, None) => {}
                _ => kept = Kept::ImagesOnly,
            }
        }
        kept
    }

    fn groups(&self) -> impl Iterator<Item = ImageGroup<'_>> {
        self.members.iter().map(|member| ImageGroup {
            key: &member.key,
            account_id: &member.account_id,
            images: &member.images,
            launches: member.launches.as_ref(),
        })
    }

    /// The chunk of `family` in `format`.
    pub(super) fn chunk(&self, family: ImageFamily, format: Format) -> &Arc<Chunk> {
        let index = ImageFamily::ALL
            .iter()
            .position(|f| *f == family)
            .expect("every family is in ALL");
        if !family.is_cloudwatch() {
            return &self.rendered().families[index];
        }
        let from_cloudwatch = self.from_cloudwatch.get_or_init(|| CloudWatchChunks {
            text: [
                ImageFamily::AvailableSnapshots,
                ImageFamily::FastLaunches,
                ImageFamily::ColdLaunches,
            ]
            .map(|family| self.render(family, Format::Text)),
            open_metrics_counters: OnceLock::new(),
        });
        let counter = usize::from(family == ImageFamily::ColdLaunches);
        match (format, family) {
            (Format::OpenMetrics, ImageFamily::FastLaunches | ImageFamily::ColdLaunches) => {
                let counters = from_cloudwatch.open_metrics_counters.get_or_init(|| {
                    [ImageFamily::FastLaunches, ImageFamily::ColdLaunches]
                        .map(|family| self.render(family, Format::OpenMetrics))
                });
                &counters[counter]
            }
            (_, ImageFamily::AvailableSnapshots) => &from_cloudwatch.text[0],
            _ => &from_cloudwatch.text[1 + counter],
        }
    }

    /// One family's lines of this block (none when the filter excludes it).
    fn render(&self, family: ImageFamily, format: Format) -> Arc<Chunk> {
        if !self.filter.serves(family.name()) {
            return empty_chunk();
        }
        let mut x = Exposition::new(format);
        for group in self.groups() {
            image_lines(&mut x, family, &group, 0.0);
        }
        // Kept until the data changes: without the slack of a buffer grown by doubling (up to
        // half of it, for every chunk).
        x.out.shrink_to_fit();
        Arc::new(Chunk::new(x.out))
    }

    /// The lines read from DescribeFastLaunchImages, rendered by the first caller that needs
    /// them (others wait for it).
    pub(super) fn rendered(&self) -> &RenderedImages {
        self.rendered.get_or_init(|| {
            let families = ImageFamily::ALL
                .iter()
                .map(|&family| match family {
                    ImageFamily::StateAge => empty_chunk(),
                    family if family.is_cloudwatch() => empty_chunk(),
                    family => self.render(family, Format::Text),
                })
                .collect();
            let mut ages = AgeLines::default();
            let mut prefix = Exposition::new(Format::Text);
            let name = ImageFamily::StateAge.name();
            let ages_served = self.filter.serves(name);
            for member in self.members.iter().filter(|_| ages_served) {
                for image in member.images.iter() {
                    if let Some(at) = image.state_transition_time {
                        prefix.out.clear();
                        prefix.sample_prefix(
                            name,
                            &[
                                ("aws_account_id", &member.account_id),
                                ("aws_region", &member.key.region),
                                ("image_id", image.image_id.as_str()),
                            ],
                        );
                        ages.push(&prefix.out, at);
                    }
                }
            }
            RenderedImages {
                families,
                ages: Arc::new(ages.shrunk()),
            }
        })
    }
}
