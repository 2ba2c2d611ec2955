//! Cron expressions with seconds, evaluated in an IANA time zone, with the daylight-saving
//! rules people expect of cron:
//!
//! - a local time that does not exist (the hour skipped in spring) fires once, at the first
//!   instant after the gap;
//! - a local time that happens twice (the hour repeated in autumn) fires once, at its first
//!   occurrence — unless the expression fires every hour (`*` or a step in the hour field),
//!   in which case both passes of the repeated hour fire, as the clock says they happen.
//!
//! Expressions have six fields (`sec min hour day-of-month month day-of-week`) or seven (with a
//! year); a five-field expression gets `0` seconds prepended. The macros `@yearly` (or
//! `@annually`), `@monthly`, `@weekly` (Sunday), `@daily` (or `@midnight`) and `@hourly` fire
//! at the start of their period. An invalid field is named with its range (`hours must be
//! 0–23, got 24`), not with the `cron` crate's own words.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed expression in its time zone.
#[derive(Clone, Debug)]
pub struct CronSpec {
    expr: String,
    tz: Tz,
    schedule: cron::Schedule,
    hourly: bool,
}

/// Which input was wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronError {
    /// `cron` or `timezone`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.message)
    }
}

impl std::error::Error for CronError {}

/// How far around an instant a daylight-saving shift is looked for.
const SHIFT_WINDOW: i64 = 3 * 3600;

impl CronSpec {
    /// Parses `expr` for the zone named `timezone` (e.g. `Europe/Berlin`, `UTC`).
    pub fn parse(expr: &str, timezone: &str) -> Result<CronSpec, CronError> {
        let tz = Tz::from_str(timezone).map_err(|_| CronError {
            field: "timezone",
            message: format!("{timezone:?} is not an IANA time zone (e.g. Europe/Berlin, UTC)"),
        })?;
        let (shown, full) = match expr.trim().strip_prefix('@') {
            Some(name) => {
                let full = expand_macro(name).ok_or_else(|| CronError {
                    field: "cron",
                    message: format!(
                        "{expr:?}: no such macro; use @yearly, @annually, @monthly, @weekly, \
                         @daily, @midnight or @hourly"
                    ),
                })?;
                (format!("@{}", name.to_ascii_lowercase()), full.to_owned())
            }
            None => {
                let full = full_fields(expr)?;
                (full.clone(), full)
            }
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| CronError {
            field: "cron",
            message: format!("{expr:?}: {}", explain(&full, &e.to_string())),
        })?;
        let hour = full.split_whitespace().nth(2).unwrap_or("*");
        let hourly = hour == "*" || hour.contains('/');
        let spec = CronSpec {
            expr: shown,
            tz,
            schedule,
            hourly,
        };
        if spec.next_after(Utc::now()).is_none() {
            return Err(CronError {
                field: "cron",
                message: format!("{expr:?} never fires again"),
            });
        }
        Ok(spec)
    }

    /// The expression, normalised to six or seven fields (a macro stays a macro, in lower
    /// case).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The next fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let near_shift = self.offset_at(t - Duration::seconds(SHIFT_WINDOW))
            != self.offset_at(t + Duration::seconds(SHIFT_WINDOW));
        let local = t.with_timezone(&self.tz).naive_local();
        if !near_shift {
            // No shift within hours: local times map one to one.
            let naive = self.naive_after(local)?;
            return self.instants(naive).into_iter().find(|i| *i > t);
        }
        // Near a shift, instants do not follow local order: look at every local candidate
        // in a window around `t` and take the earliest instant after it.
        let start = local - Duration::seconds(SHIFT_WINDOW);
        let end = local + Duration::seconds(2 * SHIFT_WINDOW);
        let mut best: Option<DateTime<Utc>> = None;
        let mut naive = start;
        while let Some(candidate) = self.naive_after(naive) {
            if candidate > end {
                break;
            }
            for instant in self.instants(candidate) {
                if instant > t && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            naive = candidate;
        }
        match best {
            Some(best) => Some(best),
            // Nothing within hours (a rare schedule): nothing fires before `t` + 3 h either.
            None => self.next_after(t + Duration::seconds(SHIFT_WINDOW)),
        }
    }

    /// The next `count` fires after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(count);
        let mut at = t;
        while fires.len() < count {
            match self.next_after(at) {
                Some(next) => {
                    fires.push(next);
                    at = next;
                }
                None => break,
            }
        }
        fires
    }

    fn offset_at(&self, t: DateTime<Utc>) -> i32 {
        use chrono::Offset;
        self.tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// The next local time after `naive` that the expression matches.
    fn naive_after(&self, naive: NaiveDateTime) -> Option<NaiveDateTime> {
        self.schedule
            .after(&Utc.from_utc_datetime(&naive))
            .next()
            .map(|t| t.naive_utc())
    }

    /// The instants a matching local time fires at.
    fn instants(&self, naive: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.hourly => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None => {
                // In the skipped hour: fire when the gap ends, the first local time that exists.
                let mut probe = naive.with_second(0).unwrap_or(naive);
                for _ in 0..(4 * 60) {
                    probe += Duration::minutes(1);
                    if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                        self.tz.from_local_datetime(&probe)
                    {
                        return vec![t.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
        }
    }
}

/// The six or seven fields of `expr` (`0` seconds before five fields).
fn full_fields(expr: &str) -> Result<String, CronError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        5 => Ok(format!("0 {}", fields.join(" "))),
        6 | 7 => Ok(fields.join(" ")),
        n => Err(CronError {
            field: "cron",
            message: format!(
                "{n} fields; expected 6 (sec min hour day month weekday), 7 (with a year), 5, \
                 or a macro such as @daily"
            ),
        }),
    }
}

/// The six fields a macro (without its `@`) stands for.
fn expand_macro(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => Some("0 0 0 1 1 *"),
        "monthly" => Some("0 0 0 1 * *"),
        "weekly" => Some("0 0 0 * * SUN"),
        "daily" | "midnight" => Some("0 0 0 * * *"),
        "hourly" => Some("0 0 * * * *"),
        _ => None,
    }
}

/// Each field as the `cron` crate names it, as people name it, its values, and the largest
/// step it takes.
const FIELDS: [(&str, &str, &str, u32); 7] = [
    ("Seconds", "seconds", "0–59", 59),
    ("Minutes", "minutes", "0–59", 59),
    ("Hours", "hours", "0–23", 23),
    ("Days of Month", "day of month", "1–31", 31),
    ("Months", "month", "1–12 or JAN–DEC", 12),
    (
        "Days of Week",
        "day of week",
        "1–7 (1 is Sunday) or SUN–SAT",
        7,
    ),
    ("Years", "year", "1970–2100", 2100),
];

/// The `cron` crate's error for `full`, said correctly: its own text puts the bound of a
/// range off by one ("Hours must be less than 23" when 23 is allowed) and is empty for a
/// bad year. The text is the input, a line with `^` under the field at fault, and a verdict.
fn explain(full: &str, text: &str) -> String {
    let mut lines = text.lines().skip(1);
    let caret = lines.next().and_then(|line| line.find('^'));
    let verdict = lines.map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let named = FIELDS.iter().position(|(name, ..)| {
        verdict.starts_with(&format!("{name} must"))
            || verdict.contains(&format!("for {name}:"))
            || verdict.contains(&format!("'{name}'"))
    });
    let by_place = || {
        let before = full.get(..caret?)?;
        Some(before.split_whitespace().count()).filter(|i| *i < FIELDS.len())
    };
    let index = if verdict.ends_with("not a valid day of the week.") {
        Some(5)
    } else if verdict.ends_with("not a valid month name.") {
        Some(4)
    } else {
        named.or_else(by_place)
    };
    let Some((_, field, range, max_step)) = index.map(|i| FIELDS[i]) else {
        return "not a cron expression".to_owned();
    };
    // The value at fault is the last one quoted ('24' specified; 'FOO' is not valid).
    let quoted = verdict.rsplit('\'').nth(1).filter(|q| !q.is_empty());
    if verdict.contains("must be between 1 and") || verdict == "range step cannot be zero" {
        let step = quoted.unwrap_or("0");
        return format!("a step in {field} must be 1–{max_step}, got {step}");
    }
    if let Some((_, span)) = verdict
        .split_once("range for ")
        .and_then(|(_, rest)| rest.split_once(": "))
    {
        return format!("the {field} range {span} must go upwards within {range}");
    }
    match quoted {
        Some(value) => format!("{field} must be {range}, got {value}"),
        None => format!("{field} must be {range}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_in_berlin_fires_once_on_both_transition_days() {
        let spec = CronSpec::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        let spring = spec.upcoming(utc("2026-03-27T12:00:00Z"), 4);
        assert_eq!(
            spring,
            [
                utc("2026-03-28T01:30:00Z"), // 02:30 CET
                utc("2026-03-29T01:00:00Z"), // the gap ends: 03:00 CEST, once
                utc("2026-03-30T00:30:00Z"), // 02:30 CEST
                utc("2026-03-31T00:30:00Z"),
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let autumn = spec.upcoming(utc("2026-10-23T12:00:00Z"), 4);
        assert_eq!(
            autumn,
            [
                utc("2026-10-24T00:30:00Z"), // 02:30 CEST
                utc("2026-10-25T00:30:00Z"), // the first 02:30 only
                utc("2026-10-26T01:30:00Z"), // 02:30 CET
                utc("2026-10-27T01:30:00Z"),
            ]
        );
    }

    #[test]
    fn hourly_schedules_fire_in_both_passes_of_the_repeated_hour() {
        let spec = CronSpec::parse("0 0 * * * *", "Europe/Berlin").unwrap();
        let fires = spec.upcoming(utc("2026-10-24T23:30:00Z"), 4);
        assert_eq!(
            fires,
            [
                utc("2026-10-25T00:00:00Z"), // 02:00 CEST
                utc("2026-10-25T01:00:00Z"), // 02:00 CET, the hour again
                utc("2026-10-25T02:00:00Z"), // 03:00 CET
                utc("2026-10-25T03:00:00Z"),
            ]
        );
        // In spring the skipped hour simply does not happen.
        let spring = spec.upcoming(utc("2026-03-28T23:30:00Z"), 3);
        assert_eq!(
            spring,
            [
                utc("2026-03-29T00:00:00Z"), // 01:00 CET
                utc("2026-03-29T01:00:00Z"), // 03:00 CEST (02:00 maps here too: one fire)
                utc("2026-03-29T02:00:00Z"), // 04:00 CEST
            ]
        );
    }

    #[test]
    fn every_second_in_utc_is_every_second() {
        let spec = CronSpec::parse("* * * * * *", "UTC").unwrap();
        let fires = spec.upcoming(utc("2026-11-24T10:00:00Z"), 3);
        assert_eq!(
            fires,
            [
                utc("2026-11-24T10:00:01Z"),
                utc("2026-11-24T10:00:02Z"),
                utc("2026-11-24T10:00:03Z")
            ]
        );
        let five = CronSpec::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(five.expr(), "0 */15 * * * *");
    }

    #[test]
    fn bad_input_names_its_field() {
        assert_eq!(
            CronSpec::parse("0 30 2 * * *", "Mars/Olympus")
                .unwrap_err()
                .field,
            "timezone"
        );
        assert_eq!(
            CronSpec::parse("61 * * * * *", "UTC").unwrap_err().field,
            "cron"
        );
        assert_eq!(CronSpec::parse("* *", "UTC").unwrap_err().field, "cron");
        assert_eq!(
            CronSpec::parse("0 0 0 1 1 * 2001", "UTC")
                .unwrap_err()
                .field,
            "cron"
        );
    }

    fn message(expr: &str) -> String {
        let error = CronSpec::parse(expr, "UTC").unwrap_err();
        assert_eq!(error.field, "cron");
        let prefix = format!("{expr:?}: ");
        error.message.strip_prefix(&prefix).unwrap().to_owned()
    }

    #[test]
    fn a_bad_field_is_named_with_its_true_range() {
        // The largest value of each field is allowed.
        CronSpec::parse("59 59 23 31 12 * 2100", "UTC").unwrap();
        CronSpec::parse("0 0 0 * * 7", "UTC").unwrap();
        for (expr, said) in [
            ("60 * * * * *", "seconds must be 0–59, got 60"),
            ("0 60 * * * *", "minutes must be 0–59, got 60"),
            ("0 0 24 * * *", "hours must be 0–23, got 24"),
            ("0 0 0 32 * *", "day of month must be 1–31, got 32"),
            ("0 0 0 0 * *", "day of month must be 1–31, got 0"),
            ("0 0 0 * 13 *", "month must be 1–12 or JAN–DEC, got 13"),
            ("0 0 0 * 0 *", "month must be 1–12 or JAN–DEC, got 0"),
            (
                "0 0 0 * * 8",
                "day of week must be 1–7 (1 is Sunday) or SUN–SAT, got 8",
            ),
            (
                "0 0 0 * * 0",
                "day of week must be 1–7 (1 is Sunday) or SUN–SAT, got 0",
            ),
            (
                "0 0 0 * * FOO",
                "day of week must be 1–7 (1 is Sunday) or SUN–SAT, got FOO",
            ),
            ("0 0 0 * FOO *", "month must be 1–12 or JAN–DEC, got FOO"),
            ("0 0 0 * * * 1969", "year must be 1970–2100"),
            ("0 0 0 * * * 2101", "year must be 1970–2100"),
            ("x * * * * *", "seconds must be 0–59, got x"),
            (
                "0 0 5-30 * * *",
                "the hours range 5-30 must go upwards within 0–23",
            ),
            (
                "0 0 20-5 * * *",
                "the hours range 20-5 must go upwards within 0–23",
            ),
            (
                "0 0 0 * MAR-JAN *",
                "the month range MAR-JAN must go upwards within 1–12 or JAN–DEC",
            ),
            ("0 0 */24 * * *", "a step in hours must be 1–23, got 24"),
            ("0 */0 * * * *", "a step in minutes must be 1–59, got 0"),
            // Five fields: seconds are prepended, the fields keep their names.
            ("0 24 * * *", "hours must be 0–23, got 24"),
        ] {
            assert_eq!(message(expr), said, "{expr}");
        }
        assert!(message("@fortnightly").contains("no such macro"));
    }

    #[test]
    fn macros_fire_at_the_start_of_their_period() {
        // 2026-11-24 is a Tuesday.
        let from = utc("2026-11-24T10:30:00Z");
        for (expr, next) in [
            ("@yearly", "2027-01-01T00:00:00Z"),
            ("@annually", "2027-01-01T00:00:00Z"),
            ("@monthly", "2026-12-01T00:00:00Z"),
            ("@weekly", "2026-11-29T00:00:00Z"),
            ("@daily", "2026-11-25T00:00:00Z"),
            ("@midnight", "2026-11-25T00:00:00Z"),
            ("@hourly", "2026-11-24T11:00:00Z"),
            (" @DAILY ", "2026-11-25T00:00:00Z"),
        ] {
            let spec = CronSpec::parse(expr, "UTC").unwrap();
            assert_eq!(spec.next_after(from), Some(utc(next)), "{expr}");
        }
        assert_eq!(CronSpec::parse(" @DAILY ", "UTC").unwrap().expr(), "@daily");
        // In a zone, at the zone's midnight.
        let berlin = CronSpec::parse("@daily", "Europe/Berlin").unwrap();
        assert_eq!(berlin.next_after(from), Some(utc("2026-11-24T23:00:00Z")));
    }
}
