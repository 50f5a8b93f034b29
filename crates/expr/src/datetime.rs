//! .NET `DateTime` and `TimeSpan` for expressions: 100 ns ticks since 0001-01-01 (so arithmetic
//! and `Ticks` match .NET exactly), calendar fields through the `time` crate, and .NET's
//! standard and custom format strings (invariant culture). The gateway's local time zone is UTC,
//! so `Now` equals `UtcNow` (with `Kind` Local).

use std::fmt::Write as _;
use std::time::SystemTime;

use time::{Date, Month};

/// Ticks (100 ns) per unit.
pub(crate) const TICKS_PER_MILLISECOND: i64 = 10_000;
pub(crate) const TICKS_PER_SECOND: i64 = 10_000_000;
pub(crate) const TICKS_PER_MINUTE: i64 = 60 * TICKS_PER_SECOND;
pub(crate) const TICKS_PER_HOUR: i64 = 60 * TICKS_PER_MINUTE;
pub(crate) const TICKS_PER_DAY: i64 = 24 * TICKS_PER_HOUR;
/// `DateTime.MaxValue.Ticks`.
const MAX_TICKS: i64 = 3_155_378_975_999_999_999;
/// Ticks of 1970-01-01T00:00:00Z.
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
/// Julian day number of 0001-01-01 (proleptic Gregorian).
const JULIAN_DAY_OF_YEAR_ONE: i64 = 1_721_426;

/// `DateTimeKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DateTimeKind {
    /// No time zone information.
    Unspecified,
    /// UTC.
    Utc,
    /// The gateway's local time, which is UTC.
    Local,
}

/// A .NET `DateTime`. Equality and ordering compare ticks only, as .NET does.
#[derive(Clone, Copy, Debug)]
pub struct DateTime {
    ticks: i64,
    kind: DateTimeKind,
}

impl PartialEq for DateTime {
    fn eq(&self, other: &Self) -> bool {
        self.ticks == other.ticks
    }
}

impl Eq for DateTime {}

impl PartialOrd for DateTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DateTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ticks.cmp(&other.ticks)
    }
}

/// Calendar fields of a [`DateTime`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parts {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    /// Ticks within the second (0..10_000_000).
    pub fraction: i64,
    /// 0 = Sunday, as `DayOfWeek`.
    pub day_of_week: u8,
    pub day_of_year: u16,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl DateTime {
    /// From raw ticks; `None` outside `DateTime.MinValue..=MaxValue`.
    pub fn from_ticks(ticks: i64, kind: DateTimeKind) -> Option<Self> {
        (0..=MAX_TICKS)
            .contains(&ticks)
            .then_some(Self { ticks, kind })
    }

    /// A UTC `DateTime` from a system time (clamped to the representable range).
    pub fn from_system_time(t: SystemTime) -> Self {
        let nanos: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
            Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
        };
        let ticks = i128::from(UNIX_EPOCH_TICKS) + nanos / 100;
        let ticks = i64::try_from(ticks.clamp(0, i128::from(MAX_TICKS))).unwrap_or(0);
        Self {
            ticks,
            kind: DateTimeKind::Utc,
        }
    }

    /// Converts to a system time (UTC).
    pub fn to_system_time(self) -> SystemTime {
        let delta = self.ticks - UNIX_EPOCH_TICKS;
        let d = std::time::Duration::from_nanos(delta.unsigned_abs().saturating_mul(100));
        let t = if delta >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(d)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(d)
        };
        t.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// `Ticks`.
    pub fn ticks(self) -> i64 {
        self.ticks
    }

    /// `Kind`.
    pub fn kind(self) -> DateTimeKind {
        self.kind
    }

    pub(crate) fn with_kind(self, kind: DateTimeKind) -> Self {
        Self {
            ticks: self.ticks,
            kind,
        }
    }

    /// `new DateTime(y, m, d, h, mi, s, ms)`; `None` for an invalid date. (The parameters
    /// mirror .NET's constructor.)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        y: i64,
        mo: i64,
        d: i64,
        h: i64,
        mi: i64,
        s: i64,
        frac_ticks: i64,
        kind: DateTimeKind,
    ) -> Option<Self> {
        if !(1..=9999).contains(&y)
            || !(0..24).contains(&h)
            || !(0..60).contains(&mi)
            || !(0..60).contains(&s)
            || !(0..TICKS_PER_SECOND).contains(&frac_ticks)
        {
            return None;
        }
        let month = Month::try_from(u8::try_from(mo).ok()?).ok()?;
        let date =
            Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
        let days = i64::from(date.to_julian_day()) - JULIAN_DAY_OF_YEAR_ONE;
        let ticks = days * TICKS_PER_DAY
            + h * TICKS_PER_HOUR
            + mi * TICKS_PER_MINUTE
            + s * TICKS_PER_SECOND
            + frac_ticks;
        Self::from_ticks(ticks, kind)
    }

    pub(crate) fn parts(self) -> Parts {
        let days = self.ticks / TICKS_PER_DAY;
        let rem = self.ticks % TICKS_PER_DAY;
        let julian = i32::try_from(days + JULIAN_DAY_OF_YEAR_ONE).unwrap_or(i32::MAX);
        let date = Date::from_julian_day(julian).unwrap_or(Date::MIN);
        Parts {
            year: date.year(),
            month: u8::from(date.month()),
            day: date.day(),
            hour: rem / TICKS_PER_HOUR,
            minute: rem % TICKS_PER_HOUR / TICKS_PER_MINUTE,
            second: rem % TICKS_PER_MINUTE / TICKS_PER_SECOND,
            fraction: rem % TICKS_PER_SECOND,
            day_of_week: date.weekday().number_days_from_sunday(),
            day_of_year: date.ordinal(),
        }
    }

    /// Adds ticks; `None` when the result leaves the representable range.
    pub(crate) fn add_ticks(self, ticks: i64) -> Option<Self> {
        Self::from_ticks(self.ticks.checked_add(ticks)?, self.kind)
    }

    /// `AddMonths`: clamps the day to the target month's length, as .NET does.
    pub(crate) fn add_months(self, months: i64) -> Option<Self> {
        let p = self.parts();
        let total = (i64::from(p.year) * 12 + i64::from(p.month) - 1).checked_add(months)?;
        let (y, m) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
        let max_day = i64::from(time::util::days_in_month(month, i32::try_from(y).ok()?));
        let d = i64::from(p.day).min(max_day);
        let time_of_day = self.ticks % TICKS_PER_DAY;
        let base = Self::from_parts(y, m, d, 0, 0, 0, 0, self.kind)?;
        base.add_ticks(time_of_day)
    }

    /// The date part (`Date`).
    pub(crate) fn date(self) -> Self {
        Self {
            ticks: self.ticks - self.ticks % TICKS_PER_DAY,
            kind: self.kind,
        }
    }

    /// `ToString(format)` with .NET's invariant culture. `None` is the default (`G`).
    pub(crate) fn format(self, format: Option<&str>) -> Result<String, String> {
        let format = format.filter(|f| !f.is_empty()).unwrap_or("G");
        let pattern = if format.chars().count() == 1 {
            match format {
                "d" => "MM/dd/yyyy",
                "D" => "dddd, dd MMMM yyyy",
                "f" => "dddd, dd MMMM yyyy HH:mm",
                "F" | "U" => "dddd, dd MMMM yyyy HH:mm:ss",
                "g" => "MM/dd/yyyy HH:mm",
                "G" => "MM/dd/yyyy HH:mm:ss",
                "m" | "M" => "MMMM dd",
                "o" | "O" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
                "r" | "R" => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
                "s" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
                "t" => "HH:mm",
                "T" => "HH:mm:ss",
                "u" => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
                "y" | "Y" => "yyyy MMMM",
                other => {
                    return Err(format!(
                        "Input string '{other}' was not in a correct format."
                    ));
                }
            }
        } else {
            format
        };
        Ok(self.format_custom(pattern))
    }

    fn format_custom(self, pattern: &str) -> String {
        let p = self.parts();
        let mut out = String::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let mut run = 1;
            while i + run < chars.len() && chars[i + run] == c {
                run += 1;
            }
            match c {
                'y' => {
                    let y = i64::from(p.year);
                    match run {
                        1 => {
                            let _ = write!(out, "{}", y % 100);
                        }
                        2 => {
                            let _ = write!(out, "{:02}", y % 100);
                        }
                        n => {
                            let _ = write!(out, "{:0n$}", y, n = n);
                        }
                    }
                }
                'M' => match run {
                    1 => {
                        let _ = write!(out, "{}", p.month);
                    }
                    2 => {
                        let _ = write!(out, "{:02}", p.month);
                    }
                    3 => out.push_str(&MONTHS[usize::from(p.month - 1) % 12][..3]),
                    _ => out.push_str(MONTHS[usize::from(p.month - 1) % 12]),
                },
                'd' => match run {
                    1 => {
                        let _ = write!(out, "{}", p.day);
                    }
                    2 => {
                        let _ = write!(out, "{:02}", p.day);
                    }
                    3 => out.push_str(&DAYS[usize::from(p.day_of_week) % 7][..3]),
                    _ => out.push_str(DAYS[usize::from(p.day_of_week) % 7]),
                },
                'H' => pad(&mut out, p.hour, run),
                'h' => pad(
                    &mut out,
                    if p.hour % 12 == 0 { 12 } else { p.hour % 12 },
                    run,
                ),
                'm' => pad(&mut out, p.minute, run),
                's' => pad(&mut out, p.second, run),
                'f' | 'F' => {
                    let digits = run.min(7);
                    let value = p.fraction / 10i64.pow(7 - digits as u32);
                    let mut s = format!("{value:0digits$}");
                    if c == 'F' {
                        while s.ends_with('0') {
                            s.pop();
                        }
                        if s.is_empty() && out.ends_with('.') {
                            out.pop();
                        }
                    }
                    out.push_str(&s);
                }
                't' => {
                    let ampm = if p.hour < 12 { "AM" } else { "PM" };
                    out.push_str(if run == 1 { &ampm[..1] } else { ampm });
                }
                'K' => match self.kind {
                    DateTimeKind::Utc => out.push('Z'),
                    DateTimeKind::Local => out.push_str("+00:00"),
                    DateTimeKind::Unspecified => {}
                },
                'z' => out.push_str(match run {
                    1 => "+0",
                    2 => "+00",
                    _ => "+00:00",
                }),
                '\'' | '"' => {
                    let mut j = i + 1;
                    while j < chars.len() && chars[j] != c {
                        out.push(chars[j]);
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                '\\' => {
                    if let Some(next) = chars.get(i + 1) {
                        out.push(*next);
                    }
                    i += 2;
                    continue;
                }
                '%' => {
                    i += 1;
                    continue;
                }
                other => {
                    for _ in 0..run {
                        out.push(other);
                    }
                }
            }
            i += run;
        }
        out
    }

    /// `DateTime.Parse` (invariant culture): ISO 8601 (`2026-01-02`, `2026-01-02T03:04:05.123Z`,
    /// with an offset), RFC 1123 (`Fri, 02 Jan 2026 03:04:05 GMT`) and `MM/dd/yyyy[ HH:mm:ss]`.
    /// A time with a zone designator is converted to local time (UTC here), kind Local.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Some(dt) = parse_iso(t) {
            return Some(dt);
        }
        if let Ok(dt) =
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc2822)
        {
            let dt = Self::from_system_time(SystemTime::from(dt));
            return Some(dt.with_kind(DateTimeKind::Local));
        }
        parse_invariant(t)
    }
}

fn pad(out: &mut String, value: i64, run: usize) {
    if run >= 2 {
        let _ = write!(out, "{value:02}");
    } else {
        let _ = write!(out, "{value}");
    }
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_iso(t: &str) -> Option<DateTime> {
    let (date, rest) = match t.find(['T', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mut dp = date.split('-');
    let (y, m, d) = (dp.next()?, dp.next()?, dp.next()?);
    if dp.next().is_some() || y.len() != 4 {
        return None;
    }
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    let Some(rest) = rest else {
        return DateTime::from_parts(y, m, d, 0, 0, 0, 0, DateTimeKind::Unspecified);
    };
    // Split off the zone designator.
    let (clock, offset) = if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z'))
    {
        (c, Some(0))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (zh, zm) = match z.split_once(':') {
            Some((h, m)) => (num(h)?, num(m)?),
            None if z.len() == 4 => (num(z.get(..2)?)?, num(z.get(2..)?)?),
            None => (num(z)?, 0),
        };
        (
            c,
            Some(sign * (zh * TICKS_PER_HOUR + zm * TICKS_PER_MINUTE)),
        )
    } else {
        (rest, None)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let mut tp = hms.split(':');
    let h = num(tp.next()?)?;
    let mi = num(tp.next()?)?;
    let s = match tp.next() {
        Some(s) => num(s)?,
        None => 0,
    };
    if tp.next().is_some() {
        return None;
    }
    let frac_ticks = match frac {
        Some(f) => {
            let digits: String = f.chars().take(7).collect();
            let n = num(&digits)?;
            n * 10i64.pow(7 - u32::try_from(digits.len()).ok()?)
        }
        None => 0,
    };
    let kind = if offset.is_some() {
        DateTimeKind::Local
    } else {
        DateTimeKind::Unspecified
    };
    let local = DateTime::from_parts(y, m, d, h, mi, s, frac_ticks, kind)?;
    match offset {
        Some(off) => local.add_ticks(-off),
        None => Some(local),
    }
}

fn parse_invariant(t: &str) -> Option<DateTime> {
    let (date, clock) = match t.split_once(' ') {
        Some((d, c)) => (d, Some(c.trim())),
        None => (t, None),
    };
    let mut dp = date.split('/');
    let (m, d, y) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() {
        return None;
    }
    let (mut h, mut mi, mut s) = (0, 0, 0);
    if let Some(clock) = clock {
        let (clock, ampm) = match clock.rsplit_once(' ') {
            Some((c, ap)) if ap.eq_ignore_ascii_case("AM") || ap.eq_ignore_ascii_case("PM") => {
                (c, Some(ap.eq_ignore_ascii_case("PM")))
            }
            _ => (clock, None),
        };
        let mut tp = clock.split(':');
        h = num(tp.next()?)?;
        mi = num(tp.next()?)?;
        if let Some(sec) = tp.next() {
            s = num(sec)?;
        }
        if let Some(pm) = ampm {
            h = h % 12 + if pm { 12 } else { 0 };
        }
    }
    DateTime::from_parts(y, m, d, h, mi, s, 0, DateTimeKind::Unspecified)
}

/// A .NET `TimeSpan`: a signed number of 100 ns ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan {
    ticks: i64,
}

impl TimeSpan {
    /// From ticks.
    pub fn from_ticks(ticks: i64) -> Self {
        Self { ticks }
    }

    /// `Ticks`.
    pub fn ticks(self) -> i64 {
        self.ticks
    }

    /// From a duration (saturating).
    pub fn from_duration(d: std::time::Duration) -> Self {
        Self {
            ticks: i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX),
        }
    }

    /// `TimeSpan.FromX(value)` with `ticks_per_unit`; `None` on overflow or NaN, as .NET throws.
    pub(crate) fn from_units(value: f64, ticks_per_unit: i64) -> Option<Self> {
        let ticks = (value * ticks_per_unit as f64).round();
        (ticks.is_finite() && ticks.abs() < 9.2e18).then_some(Self {
            ticks: ticks as i64,
        })
    }

    pub(crate) fn total(self, ticks_per_unit: i64) -> f64 {
        self.ticks as f64 / ticks_per_unit as f64
    }

    /// The component (`Hours`, `Minutes`…): truncated, sign of the whole span.
    pub(crate) fn component(self, ticks_per_unit: i64, modulo: i64) -> i64 {
        self.ticks / ticks_per_unit % modulo
    }

    /// `ToString()`: the constant format `[-][d.]hh:mm:ss[.fffffff]`.
    pub(crate) fn format(self) -> String {
        let mut out = String::new();
        if self.ticks < 0 {
            out.push('-');
        }
        let t = self.ticks.unsigned_abs();
        let day = TICKS_PER_DAY.unsigned_abs();
        let days = t / day;
        if days > 0 {
            let _ = write!(out, "{days}.");
        }
        let rem = t % day;
        let h = rem / TICKS_PER_HOUR.unsigned_abs();
        let m = rem / TICKS_PER_MINUTE.unsigned_abs() % 60;
        let s = rem / TICKS_PER_SECOND.unsigned_abs() % 60;
        let f = rem % TICKS_PER_SECOND.unsigned_abs();
        let _ = write!(out, "{h:02}:{m:02}:{s:02}");
        if f > 0 {
            let _ = write!(out, ".{f:07}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> DateTime {
        DateTime::from_parts(y, mo, d, h, mi, s, 0, DateTimeKind::Utc).unwrap()
    }

    #[test]
    fn ticks_match_dotnet() {
        assert_eq!(dt(1970, 1, 1, 0, 0, 0).ticks(), UNIX_EPOCH_TICKS);
        assert_eq!(dt(1, 1, 1, 0, 0, 0).ticks(), 0);
        let now = DateTime::from_system_time(SystemTime::UNIX_EPOCH);
        assert_eq!(now.ticks(), UNIX_EPOCH_TICKS);
        assert_eq!(now.to_system_time(), SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn formats() {
        let d = dt(2026, 1, 2, 15, 4, 5);
        assert_eq!(d.format(Some("yyyy-MM-dd")).unwrap(), "2026-01-02");
        assert_eq!(d.format(None).unwrap(), "01/02/2026 15:04:05");
        assert_eq!(d.format(Some("o")).unwrap(), "2026-01-02T15:04:05.0000000Z");
        assert_eq!(
            d.format(Some("r")).unwrap(),
            "Fri, 02 Jan 2026 15:04:05 GMT"
        );
        assert_eq!(d.format(Some("s")).unwrap(), "2026-01-02T15:04:05");
        assert_eq!(d.format(Some("h:mm tt")).unwrap(), "3:04 PM");
        assert_eq!(
            d.format(Some("yyyy-MM-ddTHH:mm:ss.FFFK")).unwrap(),
            "2026-01-02T15:04:05Z"
        );
        assert!(d.format(Some("q")).is_err());
    }

    #[test]
    fn parses() {
        let d = DateTime::parse("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(d, dt(2026, 1, 2, 3, 4, 5));
        let d = DateTime::parse("2026-01-02T05:04:05+02:00").unwrap();
        assert_eq!(d, dt(2026, 1, 2, 3, 4, 5));
        assert_eq!(
            DateTime::parse("2026-01-02").unwrap(),
            dt(2026, 1, 2, 0, 0, 0)
        );
        assert_eq!(
            DateTime::parse("Fri, 02 Jan 2026 03:04:05 GMT").unwrap(),
            dt(2026, 1, 2, 3, 4, 5)
        );
        assert_eq!(
            DateTime::parse("01/02/2026 3:04:05 PM").unwrap(),
            dt(2026, 1, 2, 15, 4, 5)
        );
        assert!(DateTime::parse("yesterday").is_none());
        // Found by fuzzing: a 4-byte zone that isn't 4 characters.
        assert!(DateTime::parse("2026-01-02T03:04+1\u{FFFD}").is_none());
    }

    #[test]
    fn months_clamp() {
        let d = dt(2024, 1, 31, 1, 0, 0).add_months(1).unwrap();
        assert_eq!(d, dt(2024, 2, 29, 1, 0, 0));
    }

    #[test]
    fn timespan_format() {
        assert_eq!(
            TimeSpan::from_units(90.0, TICKS_PER_SECOND)
                .unwrap()
                .format(),
            "00:01:30"
        );
        assert_eq!(
            TimeSpan::from_ticks(-TICKS_PER_DAY - 5).format(),
            "-1.00:00:00.0000005"
        );
    }
}
