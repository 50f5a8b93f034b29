//! ISO 8601 durations, as Azure API Management writes them in a backend's circuit breaker rules
//! (`interval`, `tripDuration`): `PT10S`, `PT1M`, `PT1H30M`, `P1D`, `PT0.5S`.
//!
//! Only lengths that are the same every time are taken: weeks, days, hours, minutes and seconds.
//! Years and months are refused (a month has no fixed length), as are negative durations. The
//! last number may have a fraction (`PT1.5S`, `PT0,5M`). The control plane parses a rule once,
//! when it compiles the snapshot; gateways receive plain milliseconds.

use std::time::Duration;

/// The longest duration taken: a year (365 days).
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses an ISO 8601 duration. The error says what is wrong, for a message that starts with
/// the field's name.
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_inner(text.trim()).map_err(|why| {
        format!("'{text}' is not an ISO 8601 duration such as PT10S, PT1M or P1D: {why}")
    })
}

/// Formats `d` as an ISO 8601 duration (`PT1M30S`, `P1DT2H`, `PT0.25S`), the shortest form
/// [`parse`] reads back to the same value (to the millisecond).
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "PT0S".to_owned();
    }
    let mut out = String::from("P");
    let days = ms / 86_400_000;
    ms %= 86_400_000;
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if ms > 0 {
        out.push('T');
        let (h, m) = (ms / 3_600_000, ms % 3_600_000 / 60_000);
        let (s, frac) = (ms % 60_000 / 1000, ms % 1000);
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || frac > 0 {
            if frac > 0 {
                let f = format!("{frac:03}");
                out.push_str(&format!("{s}.{}S", f.trim_end_matches('0')));
            } else {
                out.push_str(&format!("{s}S"));
            }
        }
    }
    out
}

const NANOS_PER: [(char, u128); 5] = [
    ('W', 7 * 86_400 * 1_000_000_000),
    ('D', 86_400 * 1_000_000_000),
    ('H', 3_600 * 1_000_000_000),
    ('M', 60 * 1_000_000_000),
    ('S', 1_000_000_000),
];

fn parse_inner(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
    let rest = text
        .strip_prefix(['P', 'p'])
        .ok_or("it must start with 'P' (PT30S is 30 seconds, P1D one day)")?;
    if rest.is_empty() {
        return Err("'P' must be followed by at least one number and unit".into());
    }
    let mut total: u128 = 0;
    let mut in_time = false;
    // The index in NANOS_PER the next unit must come at or after, so units come in order.
    let mut next_unit = 0;
    let mut components = 0;
    let mut fraction_seen = false;
    let mut chars = rest.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == 'T' || c == 't' {
            if in_time {
                return Err("'T' appears twice".into());
            }
            in_time = true;
            next_unit = 2;
            chars.next();
            if chars.peek().is_none() {
                return Err("'T' must be followed by hours, minutes or seconds".into());
            }
            continue;
        }
        if fraction_seen {
            return Err("only the last number may have a fraction".into());
        }
        // A number: digits, then an optional fraction.
        let mut end = start;
        let mut whole = String::new();
        let mut fraction = String::new();
        let mut in_fraction = false;
        while let Some(&(i, d)) = chars.peek() {
            if d.is_ascii_digit() {
                if in_fraction {
                    fraction.push(d);
                } else {
                    whole.push(d);
                }
            } else if (d == '.' || d == ',') && !in_fraction {
                in_fraction = true;
            } else {
                break;
            }
            end = i + d.len_utf8();
            chars.next();
        }
        if end == start {
            return Err(format!("expected a number at '{}'", &rest[start..]));
        }
        if whole.is_empty() {
            return Err("a number needs a digit before its fraction (0.5, not .5)".into());
        }
        if in_fraction && fraction.is_empty() {
            return Err("a fraction needs digits after its separator".into());
        }
        let Some((_, unit)) = chars.next() else {
            return Err(format!(
                "the number {} has no unit (W, D, H, M or S)",
                &rest[start..end]
            ));
        };
        let unit = unit.to_ascii_uppercase();
        let index = match (unit, in_time) {
            ('Y', false) | ('M', false) => {
                return Err(
                    "years and months have no fixed length; give days (P30D) or hours instead"
                        .into(),
                );
            }
            ('W', false) => 0,
            ('D', false) => 1,
            ('H', true) => 2,
            ('M', true) => 3,
            ('S', true) => 4,
            ('H' | 'S', false) => {
                return Err(format!(
                    "hours, minutes and seconds come after 'T' (PT{}{unit})",
                    &rest[start..end]
                ));
            }
            ('W' | 'D', true) => {
                return Err("weeks and days come before 'T' (P1DT2H)".into());
            }
            (other, _) => return Err(format!("'{other}' is not a unit (W, D, H, M or S)")),
        };
        if index < next_unit {
            return Err("the units must come once each, in the order W, D, T, H, M, S".into());
        }
        next_unit = index + 1;
        let per = NANOS_PER[index].1;
        // Numbers longer than this are over the maximum whatever their unit.
        if whole.trim_start_matches('0').len() > 12 {
            return Err(too_long());
        }
        let whole: u128 = whole.parse().map_err(|_| too_long())?;
        let mut value = whole.checked_mul(per).ok_or_else(too_long)?;
        if !fraction.is_empty() {
            fraction_seen = true;
            // Nine digits are a nanosecond of a second; more change nothing that counts.
            let digits: String = fraction.chars().take(12).collect();
            let scale = 10u128.pow(digits.len() as u32);
            let numerator: u128 = digits.parse().map_err(|_| too_long())?;
            value = value
                .checked_add(numerator * per / scale)
                .ok_or_else(too_long)?;
        }
        total = total.checked_add(value).ok_or_else(too_long)?;
        components += 1;
    }
    if components == 0 {
        return Err("it has no number and unit".into());
    }
    if total > MAX.as_nanos() {
        return Err(too_long());
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

fn too_long() -> String {
    "it is longer than a year (P365D), the longest taken".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_forms_read() {
        for (text, secs) in [
            ("PT10S", 10.0),
            ("PT1M", 60.0),
            ("PT1H", 3600.0),
            ("PT1H30M", 5400.0),
            ("P1D", 86_400.0),
            ("P1DT12H", 129_600.0),
            ("P2W", 14.0 * 86_400.0),
            ("PT0.5S", 0.5),
            ("PT1,5M", 90.0),
            ("PT0S", 0.0),
            ("pt2s", 2.0),
            (" PT3S ", 3.0),
            ("PT90S", 90.0),
            ("P365D", 365.0 * 86_400.0),
        ] {
            assert_eq!(parse(text).unwrap().as_secs_f64(), secs, "{text}");
        }
    }

    #[test]
    fn bad_forms_say_why() {
        for (text, why) in [
            ("", "must start with 'P'"),
            ("10s", "must start with 'P'"),
            ("P", "at least one"),
            ("PT", "'T' must be followed"),
            ("P1Y", "years and months"),
            ("P1M", "years and months"),
            ("PT1D", "weeks and days come before 'T'"),
            ("P1H", "come after 'T'"),
            ("PT1S1M", "in the order"),
            ("PT1M1M", "in the order"),
            ("PT1.5M3S", "only the last number"),
            ("PT5", "has no unit"),
            ("PT.5S", "a digit before"),
            ("PT5.S", "digits after"),
            ("PTXS", "expected a number"),
            ("PT5X", "is not a unit"),
            ("-PT5S", "negative"),
            ("P366D", "longer than a year"),
            (
                "PT99999999999999999999999999999999999S",
                "longer than a year",
            ),
            ("PT1ST1S", "'T' appears twice"),
            ("P1TT1S", "is not a unit"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("ISO 8601"), "{text}: {e}");
        }
    }

    #[test]
    fn formats_read_back() {
        for ms in [
            1u64, 500, 1000, 10_000, 60_000, 90_500, 3_600_000, 86_400_000, 90_061_001,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)).unwrap(), d, "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(60)), "PT1M");
        assert_eq!(format(Duration::from_millis(250)), "PT0.25S");
        assert_eq!(format(Duration::ZERO), "PT0S");
    }

    proptest::proptest! {
        /// Whatever the text, parsing answers (a value or a reason) and never panics; what it
        /// accepts is at most a year.
        #[test]
        fn any_text_parses_or_says_why(text in "\\PC{0,40}") {
            if let Ok(d) = parse(&text) {
                proptest::prop_assert!(d <= MAX);
            }
        }

        /// Text close to the grammar, where the edge cases are.
        #[test]
        fn near_misses_never_panic(text in "[-+ ]?[Pp]?[0-9TtWDHMSYs.,]{0,30}") {
            if let Ok(d) = parse(&text) {
                proptest::prop_assert!(d <= MAX);
            }
        }

        #[test]
        fn seconds_round_trip(secs in 0u64..=365 * 86_400) {
            let d = Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}
