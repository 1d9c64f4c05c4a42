//! Lenient value decoding for operator responses: types stay strict while the spellings
//! operators use are accepted ([`Num`] `"5,2"` or `5.2`, [`Quantity`] `"5,2 ГБ"`, [`Text`],
//! [`one_or_many`]), amounts, data sizes and their units, dates ([`parse_rfc3339`]), the
//! package rules of Russian operators ([`excluded_package`], unlimited sentinels), and the
//! units and currencies of the IoT platforms ([`mb`], [`currency_of`]).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Deserializer;
use serde::Deserialize;

use crate::config::units::ByteSize;
use crate::reading::Currency;

/// A number that operators send as a JSON number or as a string (`"60000"`, `"5,2"`,
/// `"-990.0"`, `"1 024"`). Anything else (an object, `true`, `"abc"`) is a decode error.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Num, E> {
                parse_amount(v).map(Num).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Other("text"), &self))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An amount with an optional unit, as a JSON number (`5.2`) or a string (`"5,2"`,
/// `"5,2 ГБ"`, `"300 мин"`); the unit is whatever word follows the number.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub unit: Option<String>,
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or a number with a unit")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity { value: v as f64, unit: None })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity { value: v as f64, unit: None })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity { value: v, unit: None })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                let t = v.trim();
                let split = t.find(|c: char| c.is_alphabetic()).unwrap_or(t.len());
                let (number, unit) = t.split_at(split);
                let unit = unit.trim();
                parse_amount(number)
                    .map(|value| Quantity { value, unit: (!unit.is_empty()).then(|| unit.to_string()) })
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Other("text"), &self))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Why a package is left out of "remaining" sums, from its (lower-cased) name: roaming,
/// tethering-only, rollover (part of the main remainder already, never summed twice) and
/// unlimited packages.
pub fn excluded_package(name: &str) -> Option<&'static str> {
    const RULES: [(&str, &str); 11] = [
        ("роуминг", "roaming"),
        ("roaming", "roaming"),
        ("раздач", "tethering"),
        ("tethering", "tethering"),
        ("перенос", "rollover"),
        ("переходящ", "rollover"),
        ("rollover", "rollover"),
        ("безлимит", "unlimited"),
        ("unlim", "unlimited"),
        ("shadow", "duplicate"),
        ("теневой", "duplicate"),
    ];
    let name = name.to_lowercase();
    RULES.iter().find(|(needle, _)| name.contains(needle)).map(|(_, why)| *why)
}

/// Whether an amount is a "no limit" sentinel: all nines (`999999999`), or negative (a
/// package size of `-1`).
pub fn is_unlimited_sentinel(value: f64) -> bool {
    value < 0.0 || (value >= 999_999_999.0 && ((value + 1.0).log10().fract()).abs() < 1e-9)
}

/// Data amounts this large (a pebibyte) mean "unlimited", whatever the sentinel.
pub const UNLIMITED_DATA_BYTES: f64 = (1u64 << 50) as f64;

/// An identifier that operators send as a string or as a number (`accountNo`, `ctn`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a whole number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// For `#[serde(deserialize_with = "one_or_many")]`: a list, or one object where sources
/// disagree on whether the operator wraps it in a list. `null` is an empty list.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Visitor<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or an object")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|one| vec![one])
        }
    }
    d.deserialize_any(Visitor(PhantomData))
}

/// A decimal as operators write it: `5,2`, `5.2`, `-990.0`, `1 024,5`, `+3`, `1,500.25`,
/// `1.500,25`, with an optional trailing currency or unit word ignored by callers that split it
/// off first. A lone comma before exactly three digits (`1,500`) is refused: it is 1.5 in a
/// Russian answer and 1500 in an English one, and a guessed balance is worse than none.
pub fn parse_amount(text: &str) -> Option<f64> {
    let cleaned: String = text.trim().chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '_')).collect();
    let cleaned = cleaned.strip_prefix('+').unwrap_or(&cleaned);
    if cleaned.is_empty() || !cleaned.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if !cleaned.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b',' | b'-')) {
        return None;
    }
    let (sign, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", cleaned),
    };
    let plain = decimal_point_form(digits)?;
    format!("{sign}{plain}").parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `digits` (no sign) with grouping separators removed and the decimal separator a point.
fn decimal_point_form(digits: &str) -> Option<String> {
    let commas = digits.matches(',').count();
    let points = digits.matches('.').count();
    match (commas, points) {
        (0, 0 | 1) => Some(digits.to_string()),
        // `1,500.25`: commas group, the point is the decimal one.
        (_, 1) if digits.rfind(',') < digits.find('.') => ungrouped(digits, ',', '.'),
        // `1.500,25`: points group, the comma is the decimal one.
        (1, 1..) if digits.rfind('.') < digits.find(',') => ungrouped(digits, '.', ','),
        // `5,2` or `0,500`: a decimal comma, unless it reads as thousands just as well.
        (1, 0) => {
            let (int, frac) = digits.split_once(',')?;
            let ambiguous = frac.len() == 3 && !int.is_empty() && !int.starts_with('0') && int.len() <= 3;
            (!ambiguous).then(|| format!("{int}.{frac}"))
        }
        // `1,500,000` or `1.500.000`: grouping only.
        (_, 0) => ungrouped(digits, ',', '.'),
        (0, _) => ungrouped(digits, '.', ','),
        _ => None,
    }
}

/// Removes `group` separators (each followed by exactly three digits, the first group one to
/// three digits) and makes `decimal` a point; `None` when the groups are not thousands.
fn ungrouped(digits: &str, group: char, decimal: char) -> Option<String> {
    let (int, frac) = match digits.split_once(decimal) {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let mut groups = int.split(group);
    let first = groups.next()?;
    if first.is_empty() || first.len() > 3 || !groups.clone().all(|g| g.len() == 3) {
        return None;
    }
    let mut out: String = std::iter::once(first).chain(groups).collect();
    if let Some(frac) = frac {
        if frac.contains(group) || frac.contains(decimal) {
            return None;
        }
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Bytes per unit of a data unit, in the binary steps every client uses (1 KB = 1024 B):
/// `B`, `KB`/`KBYTE`/`КБ`, `MB`/`МБ`, `GB`/`ГБ`, `TB`/`ТБ`, case-insensitive.
pub fn data_unit_bytes(unit: &str) -> Option<u64> {
    let u = unit.trim().trim_end_matches('.').to_lowercase();
    Some(match u.as_str() {
        "b" | "byte" | "bytes" | "б" | "байт" => 1,
        "kb" | "kbyte" | "kbytes" | "kilobyte" | "kib" | "кб" | "кбайт" => 1 << 10,
        "mb" | "mbyte" | "mbytes" | "megabyte" | "mib" | "мб" | "мбайт" => 1 << 20,
        "gb" | "gbyte" | "gbytes" | "gigabyte" | "gib" | "гб" | "гбайт" => 1 << 30,
        "tb" | "tbyte" | "tbytes" | "terabyte" | "tib" | "тб" | "тбайт" => 1 << 40,
        _ => return None,
    })
}

/// A data amount with its unit, as in `"5,2 ГБ"` or `"300 MB"`, in bytes (binary steps).
pub fn parse_data_size(text: &str) -> Option<ByteSize> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_alphabetic())?;
    let (number, unit) = t.split_at(split);
    let value = parse_amount(number)?;
    let bytes = value * data_unit_bytes(unit)? as f64;
    (bytes >= 0.0 && bytes < u64::MAX as f64).then(|| ByteSize(bytes.round() as u64))
}

/// A Russian MSISDN as the ten national digits operators' APIs want (`+79261234567`,
/// `89261234567` and `9261234567` all give `9261234567`); other numbers keep their digits.
pub fn national_number(msisdn: &str) -> String {
    let digits: String = msisdn.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        11 if digits.starts_with('7') || digits.starts_with('8') => digits[1..].to_string(),
        _ => digits,
    }
}

/// An RFC 3339 / ISO 8601 timestamp (`2026-07-31T20:59:59Z`, `2026-08-01T00:00:00.000+03:00`,
/// `2026-08-01T00:00:00+0300`, or a bare date taken as UTC midnight).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    let num =
        |s: &str| -> Option<i64> { (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())? };
    let (date, rest) = t.split_at(t.find(['T', 't', ' ']).unwrap_or(t.len()));
    let mut parts = date.split('-');
    let (y, m, d) = (num(parts.next()?)?, num(parts.next()?)?, num(parts.next()?)?);
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut seconds = days_from_civil(y, m, d) * 86_400;
    let rest = rest.get(1..).unwrap_or("");
    if !rest.is_empty() {
        let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (time, zone) = rest.split_at(zone_at);
        let time = time.split('.').next()?;
        let mut hms = time.split(':');
        let (h, mi) = (num(hms.next()?)?, num(hms.next()?)?);
        let s = hms.next().map(num).unwrap_or(Some(0))?;
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        seconds += h * 3600 + mi * 60 + s;
        let offset = match zone {
            "" | "Z" | "z" => 0,
            z => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
                if digits.len() != 4 {
                    return None;
                }
                sign * (num(&digits[..2])? * 3600 + num(&digits[2..])? * 60)
            }
        };
        seconds -= offset;
    }
    if seconds >= 0 {
        Some(UNIX_EPOCH + Duration::from_secs(seconds as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "MB" on the 1NCE/emnify platform: "1 megabyte = 1024 kilobytes" (iot.md §1.3).
pub const MB: f64 = 1_048_576.0;

/// Megabytes (binary, see [`MB`]) as bytes; negative is 0.
pub fn mb(value: f64) -> ByteSize {
    ByteSize((value.max(0.0) * MB).round() as u64)
}

/// Rubles under their many spellings; another ISO code as itself; anything else rubles.
pub fn currency_of(text: &str) -> Currency {
    let t = text.trim().trim_end_matches('.').to_lowercase();
    match t.as_str() {
        "rub" | "rur" | "руб" | "р" | "₽" | "rouble" | "ruble" => Currency::RUB,
        _ => Currency::parse(&t).unwrap_or(Currency::RUB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_numbers_become_ten_national_digits() {
        assert_eq!(national_number("+79261234567"), "9261234567");
        assert_eq!(national_number("89061234567"), "9061234567");
        assert_eq!(national_number("9261234567"), "9261234567");
        assert_eq!(national_number("+4915112345678"), "4915112345678");
    }
    #[test]
    fn one_or_many_accepts_a_list_an_object_or_null() {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(deserialize_with = "one_or_many", default)]
            items: Vec<Num>,
        }
        #[derive(Deserialize, Debug, PartialEq)]
        struct Item {
            a: Num,
        }
        #[derive(Deserialize)]
        struct Objects {
            #[serde(deserialize_with = "one_or_many")]
            items: Vec<Item>,
        }
        let many: Outer = serde_json::from_str(r#"{"items":[1,"2,5"]}"#).unwrap();
        assert_eq!(many.items, vec![Num(1.0), Num(2.5)]);
        let none: Outer = serde_json::from_str(r#"{"items":null}"#).unwrap();
        assert!(none.items.is_empty());
        let one: Objects = serde_json::from_str(r#"{"items":{"a":3}}"#).unwrap();
        assert_eq!(one.items, vec![Item { a: Num(3.0) }]);
    }

    #[test]
    fn amounts_and_sizes_in_operator_spellings() {
        assert_eq!(parse_amount("5,2"), Some(5.2));
        assert_eq!(parse_amount("-990.0"), Some(-990.0));
        assert_eq!(parse_amount("1 024,5"), Some(1024.5));
        assert_eq!(parse_amount("+3"), Some(3.0));
        // Finding 13 of issue 14: "1,500" used to read as 1.5.
        assert_eq!(parse_amount("1,500"), None, "ambiguous: 1.5 or 1500");
        assert_eq!(parse_amount("1,500.25"), Some(1500.25));
        assert_eq!(parse_amount("1.500,25"), Some(1500.25));
        assert_eq!(parse_amount("-1,234,567"), Some(-1_234_567.0));
        assert_eq!(parse_amount("1.500.000"), Some(1_500_000.0));
        assert_eq!(parse_amount("0,500"), Some(0.5));
        assert_eq!(parse_amount("1234,500"), Some(1234.5), "no thousands group has four digits");
        assert_eq!(parse_amount("12,5"), Some(12.5));
        assert_eq!(parse_amount("1,50,0"), None);
        assert_eq!(parse_amount("1.2.3,4,5"), None);
        assert_eq!(parse_amount("1e25"), None, "no exponents from operators' texts");
        assert_eq!(parse_amount("abc"), None);
        assert_eq!(parse_amount(""), None);
        assert_eq!(parse_data_size("5,2 ГБ"), Some(ByteSize((5.2 * 1073741824.0_f64).round() as u64)));
        assert_eq!(parse_data_size("300 МБ"), Some(ByteSize(300 << 20)));
        assert_eq!(parse_data_size("512 KB"), Some(ByteSize(512 << 10)));
        assert_eq!(parse_data_size("12 parsecs"), None);
        assert_eq!(data_unit_bytes("KBYTE"), Some(1024));
    }

    #[test]
    fn rfc3339_timestamps() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(at("2026-07-31T20:59:59Z"), Some(1_785_531_599));
        assert_eq!(at("2026-08-01T00:00:00.000+03:00"), Some(1_785_531_600));
        assert_eq!(at("2026-08-01T00:00:00+0300"), Some(1_785_531_600));
        assert_eq!(at("2026-08-01"), Some(1_785_542_400));
        assert_eq!(at("2026-13-01"), None);
        assert_eq!(at("yesterday"), None);
    }
}
