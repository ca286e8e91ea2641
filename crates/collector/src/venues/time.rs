//! Venue timestamps: RFC 3339 times and civil dates in unix terms.

use crate::venues::Reject;

/// `2021-04-17T16:43:37.075687Z` in unix microseconds (digits past the
/// sixth are dropped).
pub fn rfc3339_us(text: &str) -> Result<i64, Reject> {
    let bad = || Reject::new("number", format!("time '{text}' is not an RFC 3339 UTC timestamp"));
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let digit = |i: usize| {
        let d = b[i].wrapping_sub(b'0');
        if d < 10 { Ok(i64::from(d)) } else { Err(bad()) }
    };
    let two = |i: usize| Ok::<i64, Reject>(digit(i)? * 10 + digit(i + 1)?);
    let (year, month, day) = (two(0)? * 100 + two(2)?, two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let micros = match &b[19..] {
        [b'Z'] => 0,
        [b'.', frac @ ..] => {
            // The first six digits, padded with zeros: `.5` is 500,000 µs.
            let digits = frac.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || &frac[digits..] != b"Z" {
                return Err(bad());
            }
            let mut us = 0;
            for i in 0..6 {
                us = us * 10 + frac.get(i).filter(|_| i < digits).map_or(0, |b| i64::from(b - b'0'));
            }
            us
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    Ok((((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(rfc3339_us("1970-01-02T00:00:00.5Z").unwrap(), 86_400_500_000);
    }

    /// Times of every kind read as humantime reads them, truncated to the
    /// microsecond: whole seconds, and one to nine fraction digits.
    #[test]
    fn times_read_as_humantime_reads_them() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            // 1970 to 2100, to the nanosecond.
            let nanos = next() % 4_102_444_800_000_000_000;
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
            let full = humantime::format_rfc3339_nanos(time).to_string();
            // `…SS.123456789Z`: keep 0 to 9 fraction digits.
            let digits = (next() % 10) as usize;
            let text = match digits {
                0 => format!("{}Z", &full[..19]),
                n => format!("{}Z", &full[..20 + n]),
            };
            let expected = humantime::parse_rfc3339(&text)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros();
            assert_eq!(rfc3339_us(&text).unwrap(), expected as i64, "{text}");
        }
        for bad in [
            "2021-04-17T16:43:37.Z",
            "2021-04-17T16:43:37.123",
            "2021-04-17T16:43:37.123ZZ",
            "2021-04-17T16:43:37",
            "2021-04-17T16:43:37+00:00",
            "2021-04-17T16:43:37.12a4Z",
            "2021-13-17T16:43:37Z",
            "2021-04-17 16:43:37Z",
        ] {
            assert!(rfc3339_us(bad).is_err(), "{bad}");
        }
    }
}
