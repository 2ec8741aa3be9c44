//! Kubernetes resource quantities (`1Gi`, `500M`, `1.5Ti`, `2e9`, `100m`) compared exactly: parsed to
//! billionths of a unit in 128 bits, so `1Gi` < `1.5Gi` < `2Gi` and `1000M` = `1G` with no float rounding.
//! (Only comparison is needed: claims are patched with the template's own string.)

/// The quantity's value in billionths of a unit; `None` when it is not a quantity (or too large).
pub fn nanos(q: &str) -> Option<u128> {
    let q = q.trim();
    let digits_end = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    // The number as an integer `mantissa` × 10^-`scale`.
    let mut mantissa: u128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    let scale = u32::try_from(fraction.len()).ok()?;
    let (multiplier, exp10): (u128, i64) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse::<i64>().ok().filter(|e| e.abs() <= 30)?),
        _ => return None,
    };
    // value × 10^9 = mantissa × multiplier × 10^(exp10 + 9 - scale), rounded up as the API server rounds.
    let power = exp10 + 9 - i64::from(scale);
    let base = mantissa.checked_mul(multiplier)?;
    if power >= 0 {
        base.checked_mul(10u128.checked_pow(u32::try_from(power).ok()?)?)
    } else {
        let div = 10u128.checked_pow(u32::try_from(-power).ok()?)?;
        Some(base.div_ceil(div))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole units (bytes, for storage), rounded up.
    fn units(q: &str) -> Option<u128> {
        nanos(q).map(|n| n.div_ceil(1_000_000_000))
    }

    #[test]
    fn quantities_compare_exactly() {
        let gi = 1u128 << 30;
        let table = [
            ("1Gi", Some(gi)),
            ("1.5Gi", Some(gi + gi / 2)),
            ("2Gi", Some(2 * gi)),
            ("1G", Some(1_000_000_000)),
            ("1000M", Some(1_000_000_000)),
            ("1e9", Some(1_000_000_000)),
            ("1E3", Some(1000)),
            ("500Mi", Some(500 << 20)),
            ("1000", Some(1000)),
            ("100m", Some(1)),
            ("0.5", Some(1)),
            ("", None),
            ("Gi", None),
            ("1GB", None),
            ("1..2", None),
            ("-1Gi", None),
        ];
        for (q, want) in table {
            assert_eq!(units(q), want, "{q}");
        }
        assert!(nanos("1Gi") < nanos("1.5Gi"));
        assert_eq!(nanos("100m"), Some(100_000_000));
        assert_eq!(nanos("99999999999999999999999999999999999999Ei"), None, "overflow is not a quantity");
    }
}
