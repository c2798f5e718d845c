//! Time comes from a [`Clock`], so that expiry, backoff and dates are testable.

use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

/// Where the library reads the time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move: for tests and examples.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The day `at` falls on in Europe/Rome, where due dates are printed.
pub fn rome_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono_tz::Europe::Rome).date_naive()
}

/// The last second of `day` in Europe/Rome (23:59:59, CET or CEST as the day has it), in
/// UTC: when a due date or a validity printed as `day` ends. Someone paying that evening
/// is in time.
pub fn end_of_day(day: NaiveDate) -> DateTime<Utc> {
    let last = day.and_hms_opt(23, 59, 59).unwrap_or_default();
    chrono_tz::Europe::Rome
        .from_local_datetime(&last)
        .latest()
        .map(|t| t.with_timezone(&Utc))
        // 23:59:59 exists every day in Rome (the clocks change at 02:00 and 03:00).
        .unwrap_or_else(|| last.and_utc())
}

/// `days` days after the day `at` falls on in Europe/Rome, to its end
/// ([`end_of_day`]): a validity counted in days from a moment.
pub fn days_after(at: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    end_of_day(rome_day(at) + chrono::Duration::days(days.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn a_day_ends_at_midnight_in_rome_across_daylight_saving_and_new_year() {
        // CET (UTC+1) in winter, CEST (UTC+2) in summer.
        assert_eq!(
            end_of_day(day("2026-12-31")).to_rfc3339(),
            "2026-12-31T22:59:59+00:00"
        );
        assert_eq!(
            end_of_day(day("2027-07-15")).to_rfc3339(),
            "2027-07-15T21:59:59+00:00"
        );
        // The days the clocks change: 29 March 2026 (to CEST), 25 October 2026 (to CET).
        assert_eq!(
            end_of_day(day("2026-03-29")).to_rfc3339(),
            "2026-03-29T21:59:59+00:00"
        );
        assert_eq!(
            end_of_day(day("2026-10-25")).to_rfc3339(),
            "2026-10-25T22:59:59+00:00"
        );
        // The day before each change still ends in its own offset.
        assert_eq!(
            end_of_day(day("2026-03-28")).to_rfc3339(),
            "2026-03-28T22:59:59+00:00"
        );
        assert_eq!(
            end_of_day(day("2026-10-24")).to_rfc3339(),
            "2026-10-24T21:59:59+00:00"
        );
    }

    #[test]
    fn a_validity_in_days_ends_at_the_end_of_its_last_day_in_rome() {
        // Created at 00:30 in Rome on New Year's Day (23:30 UTC the day before).
        let at = "2026-12-31T23:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(rome_day(at), day("2027-01-01"));
        assert_eq!(days_after(at, 30).to_rfc3339(), "2027-01-31T22:59:59+00:00");
        // Created in the afternoon of the day before the clocks go back, valid for a day.
        let at = "2026-10-24T15:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(days_after(at, 1).to_rfc3339(), "2026-10-25T22:59:59+00:00");
        // Someone paying at 23:00 in Rome on the last day is in time; at 00:00:00 next
        // day, not.
        let last = days_after("2027-03-01T08:00:00Z".parse().unwrap(), 0);
        assert!("2027-03-01T22:00:00Z".parse::<DateTime<Utc>>().unwrap() < last);
        assert!("2027-03-01T23:00:00Z".parse::<DateTime<Utc>>().unwrap() > last);
    }
}
