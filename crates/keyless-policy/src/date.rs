//! Date values for the `Date*` condition operators: the W3C profile of ISO 8601 or epoch seconds.
//!
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Date>
//! Accepted: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, optionally followed by `T` and `hh`, `hh:mm`,
//! `hh:mm:ss` or `hh:mm:ss.fraction`, then `Z` or an offset `±hh`, `±hh:mm`, `±hhmm` (no zone
//! means UTC); or a whole number of seconds since the epoch.

use keyless_types::time::{days_in_month, unix_from_civil};

/// Milliseconds since the Unix epoch.
pub(crate) type Millis = i64;

/// Parses a date value, or `None` when it is in neither accepted form.
pub(crate) fn parse(text: &str) -> Option<Millis> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() != 4 {
        return text.parse::<i64>().ok()?.checked_mul(1000);
    }
    parse_iso(text)
}

fn parse_iso(text: &str) -> Option<Millis> {
    let mut s = Scanner(text.as_bytes());
    let year = s.digits(4)?;
    let (mut month, mut day) = (1, 1);
    if s.eat(b'-') {
        month = s.digits(2)?;
        if s.eat(b'-') {
            day = s.digits(2)?;
        }
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    let mut offset_minutes = 0i64;
    if s.eat(b'T') || s.eat(b't') {
        hour = s.digits(2)?;
        if s.eat(b':') {
            minute = s.digits(2)?;
            if s.eat(b':') {
                second = s.digits(2)?;
                if s.eat(b'.') {
                    let frac = s.take_digits();
                    if frac.is_empty() || frac.len() > 9 {
                        return None;
                    }
                    // The first three digits, padded: ".5" is 500 ms.
                    millis = frac
                        .iter()
                        .chain(std::iter::repeat(&b'0'))
                        .take(3)
                        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
                }
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        if s.eat(b'Z') || s.eat(b'z') {
        } else if let Some(sign) = s.sign() {
            let oh = s.digits(2)?;
            let om = if s.eat(b':') || !s.0.is_empty() {
                s.digits(2)?
            } else {
                0
            };
            if oh > 23 || om > 59 {
                return None;
            }
            offset_minutes = sign * (oh * 60 + om);
        }
    }
    if !s.0.is_empty() {
        return None;
    }
    let secs = unix_from_civil(year, month, day, hour, minute, second) - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

struct Scanner<'a>(&'a [u8]);

impl Scanner<'_> {
    fn eat(&mut self, b: u8) -> bool {
        if self.0.first() == Some(&b) {
            self.0 = &self.0[1..];
            true
        } else {
            false
        }
    }

    fn sign(&mut self) -> Option<i64> {
        if self.eat(b'+') {
            Some(1)
        } else if self.eat(b'-') {
            Some(-1)
        } else {
            None
        }
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let d = self.0.get(..n)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[n..];
        d.iter()
            .try_fold(0i64, |acc, b| Some(acc * 10 + i64::from(b - b'0')))
    }

    fn take_digits(&mut self) -> &[u8] {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_forms() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2019-07-16T12:00:00Z"), Some(1_563_278_400_000));
        assert_eq!(parse("2019-07-16"), Some(1_563_235_200_000));
        assert_eq!(parse("2019-07"), parse("2019-07-01"));
        assert_eq!(parse("2019"), parse("2019-01-01"));
        assert_eq!(parse("2019-07-16T12:00:00.5Z"), Some(1_563_278_400_500));
        assert_eq!(
            parse("2019-07-16T12:00:00.123456789Z"),
            Some(1_563_278_400_123)
        );
        assert_eq!(
            parse("2019-07-16T14:00:00+02:00"),
            parse("2019-07-16T12:00:00Z")
        );
        assert_eq!(
            parse("2019-07-16T10:00-0200"),
            parse("2019-07-16T12:00:00Z")
        );
        assert_eq!(parse("2000-02-29"), Some(951_782_400_000));
    }

    #[test]
    fn epoch_seconds() {
        assert_eq!(parse("1563278400"), Some(1_563_278_400_000));
        assert_eq!(parse("0"), Some(0));
    }

    #[test]
    fn rejects_the_rest() {
        for bad in [
            "",
            "yesterday",
            "2019-13-01",
            "2019-02-30",
            "2019-07-16T25:00:00Z",
            "2019-07-16 12:00",
            "2019-07-16T12:00:00Zjunk",
            "1.5",
            "-5",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
