//! `events`: the SQS queue fast launch state-change events arrive on.

use super::raw::*;
use super::*;

pub(super) fn validate_events(
    raw: RawEvents,
    collection: &mut CollectionSettings,
) -> Result<EventsSettings, ConfigError> {
    let (region, account_id) =
        queue_url_parts(&raw.queue_url).map_err(|m| invalid("events.queue_url", m))?;
    let role = match raw.role_arn {
        None => {
            if raw.external_id.is_some() {
                return Err(invalid(
                    "events.external_id",
                    "is set but role_arn is not; it only applies to AssumeRole",
                ));
            }
            None
        }
        Some(arn) => {
            let role_account = role_account_id(&arn).map_err(|m| invalid("events.role_arn", m))?;
            if let Some(external_id) = &raw.external_id {
                check_external_id("events.external_id", external_id)?;
            }
            Some(RoleSpec {
                arn,
                account_id: role_account,
                external_id: raw.external_id,
                session_name: DEFAULT_SESSION_NAME.to_string(),
                duration: None,
            })
        }
    };
    let wait_time = match &raw.wait_time {
        None => DEFAULT_WAIT_TIME,
        Some(text) => {
            let d = parse_duration("events.wait_time", text, &duration::WAIT_TIME)?;
            // WaitTimeSeconds is a whole number of seconds.
            if d.subsec_nanos() != 0 {
                return Err(invalid(
                    "events.wait_time",
                    format!("{text:?} must be whole seconds between 1s and 20s"),
                ));
            }
            d
        }
    };
    let max_messages = match raw.max_messages {
        None => 10,
        // MaxNumberOfMessages: 1–10 per the SQS API reference.
        Some(n) if (1..=10).contains(&n) => n as i32,
        Some(n) => {
            return Err(invalid(
                "events.max_messages",
                format!("\"{n}\" must be between 1 and 10"),
            ))
        }
    };
    if let Some(text) = &raw.debounce {
        collection.event_debounce = parse_duration("events.debounce", text, &duration::DEBOUNCE)?;
        if collection.event_debounce > collection.interval {
            return Err(invalid(
                "events.debounce",
                format!(
                    "{text:?} is longer than collection.interval ({})",
                    duration::format(collection.interval)
                ),
            ));
        }
    }
    Ok(EventsSettings {
        queue: QueueSpec {
            url: raw.queue_url,
            region,
            account_id,
            role,
            visibility: QueueSpec::visibility_for(collection.event_debounce, collection.timeout),
        },
        wait_time,
        max_messages,
    })
}
