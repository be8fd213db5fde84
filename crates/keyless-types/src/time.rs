//! Calendar arithmetic on Unix seconds (proleptic Gregorian, UTC), shared by the date
//! conditions, request timestamps and signatures. Howard Hinnant's days-from-civil algorithms.

/// Seconds since the epoch of a UTC date and time. Fields are not range-checked.
pub fn unix_from_civil(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

/// `(year, month, day, hour, minute, second)` of seconds since the epoch.
pub fn civil_from_unix(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY-MM-DDThh:mm:ssZ`. Written digit by digit: every request formats `aws:CurrentTime`
/// (and a session's `aws:TokenIssueTime`), and `format!` costs several times more.
pub fn iso8601(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
    }
    let mut out = String::with_capacity(20);
    let mut two = |n: i64, then: Option<char>| {
        // `n` is 0 to 99 here, so each digit fits.
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
        out.extend(then);
    };
    two(y / 100, None);
    two(y % 100, Some('-'));
    two(mo, Some('-'));
    two(d, Some('T'));
    two(h, Some(':'));
    two(mi, Some(':'));
    two(s, Some('Z'));
    out
}

/// `Mar 23, 2016 2:39:51 AM`: how CloudTrail writes a session's expiration (UTC).
pub fn cloudtrail_expiration(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    let month = MONTHS[usize::try_from(mo - 1).unwrap_or(0).min(11)];
    let (hour, half) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!("{month} {d}, {y} {hour}:{mi:02}:{s:02} {half}")
}

/// `YYYYMMDDThhmmssZ`, SigV4's `X-Amz-Date`.
pub fn amz_date(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Seconds since the epoch of a calendar date and time, or `None` when it is not one. A leap
/// second (`:60`) counts as the next second, as AWS's timestamps may carry one.
pub fn checked_unix_from_civil(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let valid = (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..61).contains(&s);
    valid.then(|| unix_from_civil(y, mo, d, h, mi, s))
}

/// The number in `text[range]`, all ASCII digits.
fn digits(text: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Seconds since the epoch of `YYYY-MM-DDThh:mm:ssZ` (what [`iso8601`] writes), with optional
/// fractional seconds, which are dropped: STS's `Expiration`, the metadata service's times.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let text = match text.split_once('.') {
        Some((whole, fraction))
            if !fraction.is_empty() && fraction.bytes().all(|c| c.is_ascii_digit()) =>
        {
            whole
        }
        Some(_) => return None,
        None => text,
    };
    let b = text.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let n = |r| digits(text, r);
    checked_unix_from_civil(
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    )
}

/// Seconds since the epoch of `YYYYMMDDThhmmssZ`, SigV4's `X-Amz-Date`.
pub fn parse_amz_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r| digits(text, r);
    checked_unix_from_civil(
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    )
}

/// Whether `year` is a leap year.
pub fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days of `month` (1 to 12) in `year`.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the epoch of an HTTP date in RFC 1123 form, as SigV2 clients send `Date` and
/// `x-amz-date`: `Wed, 25 Nov 2026 12:00:00 GMT` (also `UTC` or `+0000`).
pub fn parse_http_date(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, day, month, year, clock, zone] = parts.as_slice() else {
        return None;
    };
    if !matches!(*zone, "GMT" | "UTC" | "+0000" | "Z") {
        return None;
    }
    let number = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let (year, day) = (number(year)?, number(day)?);
    let hms: Vec<&str> = clock.split(':').collect();
    let [h, mi, s] = hms.as_slice() else {
        return None;
    };
    let (h, mi, s) = (number(h)?, number(mi)?, number(s)?);
    let valid = (1..=days_in_month(year, month)).contains(&day) && h < 24 && mi < 60 && s < 61;
    valid.then(|| unix_from_civil(year, month, day, h, mi, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CloudTrail's own example: `"expiration": "Mar 23, 2016 2:39:51 AM"`.
    #[test]
    fn expirations_read_as_cloudtrail_writes_them() {
        let at = unix_from_civil(2016, 3, 23, 2, 39, 51);
        assert_eq!(cloudtrail_expiration(at), "Mar 23, 2016 2:39:51 AM");
        assert_eq!(
            cloudtrail_expiration(unix_from_civil(2026, 12, 7, 0, 5, 0)),
            "Dec 7, 2026 12:05:00 AM"
        );
        assert_eq!(
            cloudtrail_expiration(unix_from_civil(2026, 7, 1, 12, 0, 9)),
            "Jul 1, 2026 12:00:09 PM"
        );
        assert_eq!(
            cloudtrail_expiration(unix_from_civil(2026, 7, 1, 23, 59, 59)),
            "Jul 1, 2026 11:59:59 PM"
        );
    }

    #[test]
    fn round_trips() {
        assert_eq!(unix_from_civil(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix_from_civil(2026, 11, 25, 12, 0, 0), 1_795_608_000);
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_651_199), "2026-11-25T23:59:59Z");
        assert_eq!(iso8601(-86_401), "1969-12-30T23:59:59Z");
        assert_eq!(iso8601(253_402_300_800), "10000-01-01T00:00:00Z");
        // Digit by digit agrees with `format!` wherever it is used.
        for secs in (0..4_102_444_800_i64).step_by(7_777_777) {
            let (y, mo, d, h, mi, s) = civil_from_unix(secs);
            assert_eq!(
                iso8601(secs),
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
            );
        }
        for secs in [-86_401, 0, 1, 951_782_399, 1_795_608_000, 4_102_444_800] {
            let (y, mo, d, h, mi, s) = civil_from_unix(secs);
            assert_eq!(unix_from_civil(y, mo, d, h, mi, s), secs);
        }
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
    }

    #[test]
    fn timestamps_parse_strictly() {
        assert_eq!(parse_iso8601("2026-11-25T12:00:00Z"), Some(1_795_608_000));
        assert_eq!(
            parse_iso8601("2026-11-25T12:00:00.123Z"),
            Some(1_795_608_000)
        );
        assert_eq!(parse_amz_date("20261125T120000Z"), Some(1_795_608_000));
        for bad in [
            "2026-11-25T12:00:00",
            "2026-11-25 12:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T12:00:00.Z",
            "2026-11-25T12:00:00.1xZ",
            "+026-11-25T12:00:00Z",
            "2026-11-31T02:00:00Z",
            "2026-13-01T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        for bad in ["20261125T120000", "2026112XT120000Z", "20261131T120000Z"] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Wed, 25 Nov 2026 12:00:00 GMT"),
            Some(1_795_608_000)
        );
        assert_eq!(
            parse_http_date("Wed, 25 Nov 2026 12:00:00 +0000"),
            Some(1_795_608_000)
        );
        for bad in [
            "",
            "Wed, 31 Nov 2026 12:00:00 GMT",
            "Wed, 25 Nov 2026 12:00 GMT",
            "Wed, 25 Foo 2026 12:00:00 GMT",
            "Wed, 25 Nov 2026 12:00:00 CET",
            "20261125T120000Z",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
