//! When a schedule fires: a cron expression in a time zone, or a fixed
//! interval.
//!
//! Cron times are civil times in the schedule's zone, so a daily 02:30 stays at
//! 02:30 across daylight-saving changes. On the night the clocks skip the hour,
//! a time inside the gap fires once, right after the gap; on the night they
//! repeat it, it fires once, at the first of the two. Intervals count from the
//! Unix epoch, so every instance and every restart agrees on the fire times.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

#[derive(Debug, Clone)]
pub enum Trigger {
    Cron {
        cron: Box<croner::Cron>,
        zone: TimeZone,
    },
    Every(Duration),
}

impl Trigger {
    pub fn parse(
        cron: Option<&str>,
        every: Option<Duration>,
        timezone: &str,
    ) -> Result<Self, String> {
        match (cron, every) {
            (Some(text), None) => {
                let fields = text.split_whitespace().count();
                if fields != 5 {
                    return Err(format!("it has {fields} fields, not 5"));
                }
                let cron: croner::Cron = text
                    .parse()
                    .map_err(|e: croner::errors::CronError| e.to_string())?;
                let zone = TimeZone::get(timezone)
                    .map_err(|_| format!("unknown time zone `{timezone}`"))?;
                Ok(Trigger::Cron {
                    cron: Box::new(cron),
                    zone,
                })
            }
            (None, Some(every)) if every >= Duration::from_secs(1) => Ok(Trigger::Every(every)),
            (None, Some(_)) => Err("`every` must be at least 1s".into()),
            _ => Err("give exactly one of `cron` and `every`".into()),
        }
    }

    /// The first fire strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Trigger::Every(every) => {
                let step = i128::try_from(every.as_nanos()).ok()?;
                let now = after.as_nanosecond();
                let next = (now.div_euclid(step) + 1) * step;
                Timestamp::from_nanosecond(next).ok()
            }
            Trigger::Cron { cron, zone } => {
                let start = after.to_zoned(zone.clone());
                let next: Zoned = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp())
            }
        }
    }

    /// The fires in `(after, until]`, at most `limit`, oldest first.
    pub fn between(&self, after: Timestamp, until: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut fires = Vec::new();
        let mut cursor = after;
        while fires.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until => {
                    fires.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        fires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn local(trigger: &Trigger, fires: &[Timestamp]) -> Vec<String> {
        let Trigger::Cron { zone, .. } = trigger else {
            return Vec::new();
        };
        fires
            .iter()
            .map(|f| f.to_zoned(zone.clone()).strftime("%F %T %Z").to_string())
            .collect()
    }

    #[test]
    fn a_daily_cron_keeps_its_local_time_across_daylight_saving() {
        let trigger = Trigger::parse(Some("0 2 * * *"), None, "America/New_York").expect("valid");
        let fires = trigger.between(at("2026-10-30T12:00:00Z"), at("2026-11-03T12:00:00Z"), 10);
        assert_eq!(
            local(&trigger, &fires),
            [
                "2026-10-31 02:00:00 EDT",
                "2026-11-01 02:00:00 EST",
                "2026-11-02 02:00:00 EST",
                "2026-11-03 02:00:00 EST"
            ]
        );
    }

    #[test]
    fn a_time_in_the_skipped_hour_fires_once_after_the_gap() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29.
        let trigger = Trigger::parse(Some("30 2 * * *"), None, "Europe/Berlin").expect("valid");
        let fires = trigger.between(at("2026-03-27T12:00:00Z"), at("2026-03-31T12:00:00Z"), 10);
        assert_eq!(fires.len(), 4, "{:?}", local(&trigger, &fires));
        let days: Vec<String> = local(&trigger, &fires)
            .iter()
            .map(|f| f[..10].to_owned())
            .collect();
        assert_eq!(
            days,
            ["2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"]
        );
    }

    #[test]
    fn a_time_in_the_repeated_hour_fires_once() {
        // Europe/Berlin repeats 02:00-03:00 on 2026-10-25.
        let trigger = Trigger::parse(Some("30 2 * * *"), None, "Europe/Berlin").expect("valid");
        let fires = trigger.between(at("2026-10-24T12:00:00Z"), at("2026-10-26T12:00:00Z"), 10);
        assert_eq!(
            local(&trigger, &fires),
            ["2026-10-25 02:30:00 CEST", "2026-10-26 02:30:00 CET"]
        );
    }

    #[test]
    fn intervals_are_aligned_to_the_epoch() {
        let trigger = Trigger::parse(None, Some(Duration::from_secs(900)), "UTC").expect("valid");
        assert_eq!(
            trigger.next_after(at("2026-11-21T10:07:00Z")),
            Some(at("2026-11-21T10:15:00Z"))
        );
        assert_eq!(
            trigger.next_after(at("2026-11-21T10:15:00Z")),
            Some(at("2026-11-21T10:30:00Z"))
        );
        assert_eq!(
            trigger
                .between(at("2026-11-21T10:00:00Z"), at("2026-11-21T11:00:00Z"), 100)
                .len(),
            4
        );
        assert_eq!(
            trigger
                .between(at("2026-11-21T10:00:00Z"), at("2026-11-21T11:00:00Z"), 2)
                .len(),
            2
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(Trigger::parse(Some("0 25 * * *"), None, "UTC").is_err());
        assert!(Trigger::parse(Some("0 2 * *"), None, "UTC").is_err());
        assert!(Trigger::parse(Some("0 2 * * *"), None, "Mars/Olympus").is_err());
        assert!(Trigger::parse(None, Some(Duration::from_millis(10)), "UTC").is_err());
    }
}
