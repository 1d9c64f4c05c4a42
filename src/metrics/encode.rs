//! Byte-level exposition writing shared by the per-line renderer and the registry encoder:
//! numbers, label-value and HELP escaping, family headers. Everything appends to a `Vec<u8>`
//! so that rendering a sample allocates nothing.

use super::catalog::Family;
use super::negotiate::Format;

/// Integral floats below this print as integers (every integer up to 2^53 is exact).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Appends a sample value the way Prometheus clients print it: integers without a fraction or
/// exponent, `+Inf`, `-Inf`, `NaN`, otherwise the shortest text that parses back to `v`.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.trunc() == v && v.abs() < EXACT_INTEGER_LIMIT {
        write_i64(out, v as i64);
    } else {
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(v);
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
    }
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a label value escaped for both formats: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn write_label_value(out: &mut Vec<u8>, value: &str) {
    escape_into(out, value, true);
}

/// Appends `name="value"`, with a leading comma when `out` already holds a label of the set
/// (`first` false).
pub fn write_label(out: &mut Vec<u8>, first: bool, name: &str, value: &str) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    write_label_value(out, value);
    out.push(b'"');
}

fn escape_into(out: &mut Vec<u8>, text: &str, quote: bool) {
    let needs = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| needs(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            _ => out.push(b),
        }
    }
}

/// What a family header says, independent of where the family comes from.
pub struct Header<'a> {
    /// The sample name in text format (counters with `_total`).
    pub name: &'a str,
    /// The family name OpenMetrics declares (counters without `_total`).
    pub openmetrics_name: &'a str,
    pub help: &'a str,
    pub text_type: &'a str,
    pub openmetrics_type: &'a str,
    pub unit: Option<&'a str>,
}

impl Header<'static> {
    pub fn of(family: &'static Family) -> Header<'static> {
        Header {
            name: family.name,
            openmetrics_name: family.openmetrics_name(),
            help: family.help,
            text_type: family.kind.text_type(),
            openmetrics_type: family.kind.openmetrics_type(),
            unit: family.unit,
        }
    }
}

/// Appends `# HELP`, `# TYPE` (and in OpenMetrics `# UNIT`) lines.
pub fn write_header(out: &mut Vec<u8>, format: Format, header: &Header<'_>) {
    let (name, kind) = match format {
        Format::Text => (header.name, header.text_type),
        Format::OpenMetrics => (header.openmetrics_name, header.openmetrics_type),
    };
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    // Text format 0.0.4 escapes only `\` and newline in HELP; OpenMetrics also `"`.
    escape_into(out, header.help, format == Format::OpenMetrics);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
    if let (Format::OpenMetrics, Some(unit)) = (format, header.unit) {
        out.extend_from_slice(b"# UNIT ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(unit.as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn formats_floats_like_prometheus_clients() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-3.0, "-3"),
            (123.45, "123.45"),
            (0.1, "0.1"),
            (1e9, "1000000000"),
            (1_700_000_000.5, "1700000000.5"),
            (10_000_000_000.0, "10000000000"),
            (9_007_199_254_740_991.0, "9007199254740991"),
            (1e22, "1e22"),
            (1.5e-7, "1.5e-7"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, want) in cases {
            assert_eq!(f(v), want, "{v:?}");
        }
    }

    #[test]
    fn float_text_round_trips() {
        for v in [0.1 + 0.2, 1.0 / 3.0, 123_456_789.123_456_79, 5e-324, f64::MAX, 1e16 + 2.0] {
            assert_eq!(f(v).parse::<f64>().ok(), Some(v), "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_finite_float_round_trips(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            proptest::prop_assert_eq!(f(v).parse::<f64>().ok(), Some(v));
        }

        #[test]
        fn label_values_unescape_to_themselves(value in ".*") {
            let mut out = Vec::new();
            write_label_value(&mut out, &value);
            let text = String::from_utf8(out).unwrap_or_default();
            proptest::prop_assert!(!text.contains('\n'));
            let (mut back, mut chars) = (String::new(), text.chars());
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => back.push('\n'),
                        Some(e @ ('\\' | '"')) => back.push(e),
                        other => proptest::prop_assert!(false, "bad escape {:?}", other),
                    },
                    '"' => proptest::prop_assert!(false, "raw quote in {}", text),
                    c => back.push(c),
                }
            }
            proptest::prop_assert_eq!(back, value);
        }
    }

    #[test]
    fn escapes_label_values_and_help_per_format() {
        let mut out = Vec::new();
        write_label(&mut out, true, "a", "x\\y\"z\nw");
        write_label(&mut out, false, "b", "plain");
        assert_eq!(out, br#"a="x\\y\"z\nw",b="plain""#);

        let header = Header {
            name: "m_total",
            openmetrics_name: "m",
            help: "say \"hi\"\\\n",
            text_type: "counter",
            openmetrics_type: "counter",
            unit: None,
        };
        let mut text = Vec::new();
        write_header(&mut text, Format::Text, &header);
        assert_eq!(String::from_utf8_lossy(&text), "# HELP m_total say \"hi\"\\\\\\n\n# TYPE m_total counter\n");
        let mut om = Vec::new();
        write_header(&mut om, Format::OpenMetrics, &header);
        assert_eq!(String::from_utf8_lossy(&om), "# HELP m say \\\"hi\\\"\\\\\\n\n# TYPE m counter\n");
    }
}
