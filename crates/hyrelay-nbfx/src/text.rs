//! Text rendering of typed values, matching what the .NET Framework / Mono binary reader
//! returns as the string value (`XmlConvert.ToString` rules).

use crate::record::{DateTime, Decimal, Guid, TimeSpan};

const TICKS_PER_SECOND: u64 = 10_000_000;
const TICKS_PER_MINUTE: u64 = 60 * TICKS_PER_SECOND;
const TICKS_PER_HOUR: u64 = 60 * TICKS_PER_MINUTE;
const TICKS_PER_DAY: u64 = 24 * TICKS_PER_HOUR;

/// Significant digits of `|v|` rounded to `precision` digits, and the decimal exponent of
/// the first digit. Uses Rust's exact formatting (`{:e}`).
fn digits(sci: &str) -> (String, i32) {
    // `sci` looks like "1.2345e-7" or "5e3".
    let (mant, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    (d, exp)
}

/// `a` (finite, > 0) in Rust's `d.ddde±x` form with `p` significant digits, rounded the
/// way .NET Framework / Mono do: half away from zero on the exact decimal expansion
/// (Rust's `{:e}` rounds exact ties to even: 61.12890625 to 9 digits is `61.1289063` in
/// .NET, `61.1289062` in Rust).
fn sci_half_up(a: f64, p: usize) -> String {
    // 1100 fraction digits hold the exact expansion of every finite f64.
    let exact = format!("{:.1100e}", a);
    let (mant, exp) = exact.split_once('e').unwrap_or((&exact, "0"));
    let mut exp: i32 = exp.parse().unwrap_or(0);
    let all: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    let mut d: Vec<u8> = all[..p.min(all.len())].to_vec();
    if all.get(p).is_some_and(|&c| c >= b'5') {
        let mut i = d.len();
        loop {
            if i == 0 {
                d.insert(0, b'1');
                d.truncate(p);
                exp += 1;
                break;
            }
            i -= 1;
            if d[i] == b'9' {
                d[i] = b'0';
            } else {
                d[i] += 1;
                break;
            }
        }
    }
    let d = String::from_utf8(d).unwrap_or_default();
    format!("{}.{}e{exp}", &d[..1], &d[1..])
}

/// .NET "G"-style layout of `digits` × 10^`exp` with `max_digits` as the switch to
/// scientific notation.
fn general(negative: bool, d: &str, exp: i32, max_digits: i32) -> String {
    let mut s = String::new();
    if negative {
        s.push('-');
    }
    let scale = exp + 1;
    if scale > max_digits || scale < -3 {
        s.push_str(&d[..1]);
        if d.len() > 1 {
            s.push('.');
            s.push_str(&d[1..]);
        }
        s.push('E');
        s.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            s.push('0');
        }
        s.push_str(&e.to_string());
    } else if scale <= 0 {
        s.push_str("0.");
        for _ in 0..(-scale) {
            s.push('0');
        }
        s.push_str(d);
    } else {
        let scale = scale as usize;
        if d.len() <= scale {
            s.push_str(d);
            for _ in d.len()..scale {
                s.push('0');
            }
        } else {
            s.push_str(&d[..scale]);
            s.push('.');
            s.push_str(&d[scale..]);
        }
    }
    s
}

/// `XmlConvert.ToString(double)`: `INF`, `-INF`, `NaN`, `-0`, otherwise .NET Framework "R"
/// (15 significant digits if they round-trip, else 17; scientific `E+XX` when the exponent
/// is ≥ the digit count or below −4).
pub fn format_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "INF" } else { "-INF" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let a = v.abs();
    let mut p = 15;
    let mut sci = sci_half_up(a, p);
    if sci.parse::<f64>().ok() != Some(a) {
        p = 17;
        sci = sci_half_up(a, p);
    }
    let (d, exp) = digits(&sci);
    general(v < 0.0, &d, exp, p as i32)
}

/// `XmlConvert.ToString(float)`: like [`format_double`] with 7 / 9 digits.
pub fn format_float(v: f32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "INF" } else { "-INF" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let a = v.abs();
    let mut p = 7;
    let mut sci = sci_half_up(f64::from(a), p);
    if sci.parse::<f32>().ok() != Some(a) {
        p = 9;
        sci = sci_half_up(f64::from(a), p);
    }
    let (d, exp) = digits(&sci);
    general(v < 0.0, &d, exp, p as i32)
}

/// Invariant decimal text keeping the scale (`1000.00`, `-1.5`, `0.0000000000000000000000000001`).
pub fn format_decimal(d: Decimal) -> String {
    let m = d.mantissa();
    let scale = d.scale() as usize;
    let mut digits = m.to_string();
    if digits.len() <= scale {
        let pad = scale + 1 - digits.len();
        digits.insert_str(0, &"0".repeat(pad));
    }
    let mut s = String::new();
    if d.is_negative() && m != 0 {
        s.push('-');
    }
    if scale == 0 {
        s.push_str(&digits);
    } else {
        let split = digits.len() - scale;
        s.push_str(&digits[..split]);
        s.push('.');
        s.push_str(&digits[split..]);
    }
    s
}

/// Calendar date of a day number (0 = 0001-01-01), .NET's algorithm.
fn civil(days: u64) -> (u64, u64, u64) {
    let mut n = days;
    let y400 = n / 146_097;
    n -= y400 * 146_097;
    let mut y100 = n / 36_524;
    if y100 == 4 {
        y100 = 3;
    }
    n -= y100 * 36_524;
    let y4 = n / 1461;
    n -= y4 * 1461;
    let mut y1 = n / 365;
    if y1 == 4 {
        y1 = 3;
    }
    let year = y400 * 400 + y100 * 100 + y4 * 4 + y1 + 1;
    n -= y1 * 365;
    let leap = y1 == 3 && (y4 != 24 || y100 == 3);
    let month_days: [u64; 12] = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for md in month_days {
        if n < md {
            break;
        }
        n -= md;
        month += 1;
    }
    (year, month, n + 1)
}

fn push_fraction(s: &mut String, frac: u64, width: usize) {
    if frac != 0 {
        let mut f = format!("{frac:0width$}");
        while f.ends_with('0') {
            f.pop();
        }
        s.push('.');
        s.push_str(&f);
    }
}

/// `XmlConvert.ToString(DateTime, RoundtripKind)`: `yyyy-MM-ddTHH:mm:ss[.fffffff]` with
/// trailing fraction zeros removed, then `Z` for UTC, nothing for unspecified, or the
/// local offset `±hh:mm` for local kinds. Local values are stored as UTC ticks; they are
/// shifted by `local_offset_minutes` (the offset the rendering side considers local).
pub fn format_datetime(d: DateTime, local_offset_minutes: i32) -> String {
    let max = crate::record::DATETIME_MAX_TICKS as i128;
    let (ticks, suffix) = match d.kind() {
        0 => (d.ticks() as i128, String::new()),
        1 => (d.ticks() as i128, "Z".to_owned()),
        _ => {
            const CEILING: i128 = 0x4000_0000_0000_0000;
            let mut t = d.ticks() as i128;
            if t > CEILING - TICKS_PER_DAY as i128 {
                t -= CEILING;
            }
            let off = i128::from(local_offset_minutes) * TICKS_PER_MINUTE as i128;
            let sign = if local_offset_minutes < 0 { '-' } else { '+' };
            let m = local_offset_minutes.unsigned_abs();
            (
                (t + off).clamp(0, max),
                format!("{sign}{:02}:{:02}", m / 60, m % 60),
            )
        }
    };
    let ticks = ticks.clamp(0, max) as u64;
    let (y, mo, day) = civil(ticks / TICKS_PER_DAY);
    let rem = ticks % TICKS_PER_DAY;
    let h = rem / TICKS_PER_HOUR;
    let mi = rem % TICKS_PER_HOUR / TICKS_PER_MINUTE;
    let s = rem % TICKS_PER_MINUTE / TICKS_PER_SECOND;
    let mut out = format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}");
    push_fraction(&mut out, rem % TICKS_PER_SECOND, 7);
    out.push_str(&suffix);
    out
}

/// `XmlConvert.ToString(TimeSpan)`: xsd:duration such as `P1DT2H3M4.005S`, `-PT0.0000001S`,
/// `PT0S`.
pub fn format_timespan(t: TimeSpan) -> String {
    let mut ticks = t.0.unsigned_abs();
    let mut s = String::new();
    if t.0 < 0 {
        s.push('-');
    }
    s.push('P');
    let days = ticks / TICKS_PER_DAY;
    ticks %= TICKS_PER_DAY;
    let hours = ticks / TICKS_PER_HOUR;
    ticks %= TICKS_PER_HOUR;
    let minutes = ticks / TICKS_PER_MINUTE;
    ticks %= TICKS_PER_MINUTE;
    let seconds = ticks / TICKS_PER_SECOND;
    let nanos = (ticks % TICKS_PER_SECOND) * 100;
    if days != 0 {
        s.push_str(&format!("{days}D"));
    }
    if hours != 0 || minutes != 0 || seconds != 0 || nanos != 0 {
        s.push('T');
        if hours != 0 {
            s.push_str(&format!("{hours}H"));
        }
        if minutes != 0 {
            s.push_str(&format!("{minutes}M"));
        }
        if seconds != 0 || nanos != 0 {
            s.push_str(&seconds.to_string());
            push_fraction(&mut s, nanos, 9);
            s.push('S');
        }
    }
    if s.ends_with('P') {
        s.push_str("T0S");
    }
    s
}

/// Lower-case `8-4-4-4-12` form of a GUID in wire (`ToByteArray`) order.
pub fn format_guid(g: Guid) -> String {
    let b = g.0;
    let a = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let b1 = u16::from_le_bytes([b[4], b[5]]);
    let c = u16::from_le_bytes([b[6], b[7]]);
    let mut s = format!("{a:08x}-{b1:04x}-{c:04x}-{:02x}{:02x}-", b[8], b[9]);
    for x in &b[10..] {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Parse the lower- or upper-case `8-4-4-4-12` form into wire order.
pub fn parse_guid(s: &str) -> Option<Guid> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, r) in raw.iter_mut().enumerate() {
        *r = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut w = raw;
    w[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    w[4..6].copy_from_slice(&[raw[5], raw[4]]);
    w[6..8].copy_from_slice(&[raw[7], raw[6]]);
    Some(Guid(w))
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // exact binary values, written out in full on purpose
mod tests {
    use super::*;

    #[test]
    fn doubles() {
        for (v, s) in [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (3e38, "3E+38"),
            (1e300, "1E+300"),
            (1.0 / 3.0, "0.33333333333333331"),
            (123456789.0, "123456789"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1e15, "1E+15"),
            (123456789012345.0, "123456789012345"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "INF"),
            (f64::NEG_INFINITY, "-INF"),
            (f64::NAN, "NaN"),
            (-0.0, "-0"),
            (f64::MAX, "1.7976931348623157E+308"),
        ] {
            assert_eq!(format_double(v), s, "{v:e}");
        }
        // Exact ties round away from zero, as in .NET / Mono (found by the Mono oracle).
        for (v, s) in [
            (2738837074117.15625f64, "2738837074117.1563"),
            (0.776477813720703125, "0.77647781372070313"),
        ] {
            assert_eq!(format_double(v), s);
        }
    }

    #[test]
    fn floats() {
        for (v, s) in [
            (1.25f32, "1.25"),
            (0.1, "0.1"),
            (-0.25, "-0.25"),
            (3e38, "3E+38"),
            (f32::MAX, "3.40282347E+38"),
            (16777216.0, "16777216"),
        ] {
            assert_eq!(format_float(v), s, "{v:e}");
        }
        for (v, s) in [
            (61.12890625f32, "61.1289063"),
            (-1054.765625, "-1054.76563"),
        ] {
            assert_eq!(format_float(v), s);
        }
    }

    #[test]
    fn decimals() {
        let d = |flags, hi, lo| format_decimal(Decimal { flags, hi, lo });
        assert_eq!(d(0x0002_0000, 0, 100_000), "1000.00");
        assert_eq!(d(0x8001_0000, 0, 15), "-1.5");
        assert_eq!(d(0, 0, 0), "0");
        assert_eq!(d(0, u32::MAX, u64::MAX), "79228162514264337593543950335");
        assert_eq!(d(0x001C_0000, 0, 1), "0.0000000000000000000000000001");
    }

    #[test]
    fn datetimes() {
        assert_eq!(format_datetime(DateTime(0), 0), "0001-01-01T00:00:00");
        assert_eq!(
            format_datetime(DateTime((1 << 62) | 3_155_378_975_999_999_999), 0),
            "9999-12-31T23:59:59.9999999Z"
        );
        // 2024-02-29T13:45:30.5Z
        let t = 638_448_111_305_000_000u64;
        assert_eq!(
            format_datetime(DateTime((1 << 62) | t), 0),
            "2024-02-29T13:45:30.5Z"
        );
        assert_eq!(
            format_datetime(DateTime((2 << 62) | t), 90),
            "2024-02-29T15:15:30.5+01:30"
        );
        assert_eq!(
            format_datetime(DateTime((2 << 62) | t), -300),
            "2024-02-29T08:45:30.5-05:00"
        );
    }

    #[test]
    fn timespans() {
        assert_eq!(format_timespan(TimeSpan(0)), "PT0S");
        assert_eq!(format_timespan(TimeSpan(-1)), "-PT0.0000001S");
        assert_eq!(format_timespan(TimeSpan(54_000_000_000)), "PT1H30M");
        assert_eq!(format_timespan(TimeSpan(15_000_000)), "PT1.5S");
        assert_eq!(format_timespan(TimeSpan(937_840_050_000)), "P1DT2H3M4.005S");
        assert_eq!(format_timespan(TimeSpan(864_000_000_000)), "P1D");
        assert!(format_timespan(TimeSpan(i64::MIN)).starts_with("-P10675199D"));
    }

    #[test]
    fn guids() {
        let g = parse_guid("a79b1b5e-2835-492b-8cf1-fb70b792b442").unwrap();
        assert_eq!(
            g.0,
            [
                0x5E, 0x1B, 0x9B, 0xA7, 0x35, 0x28, 0x2B, 0x49, 0x8C, 0xF1, 0xFB, 0x70, 0xB7, 0x92,
                0xB4, 0x42
            ]
        );
        assert_eq!(format_guid(g), "a79b1b5e-2835-492b-8cf1-fb70b792b442");
        assert!(parse_guid("a79b1b5e-2835-492b-8cf1-fb70b792b44").is_none());
        assert!(parse_guid("a79b1b5e+2835-492b-8cf1-fb70b792b442").is_none());
    }
}
