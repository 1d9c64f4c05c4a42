//! Encodes the `prometheus` registry's gathered families (the exporter's own metrics, process
//! metrics, whatever the scheduler registers) in either format, with the same number and
//! escaping rules as the per-line part. Families in the catalogue take its header.

use prometheus::proto::{Metric, MetricFamily, MetricType};

use super::catalog::{self, Scope};
use super::encode::{write_f64, write_header, write_label, Header};
use super::negotiate::Format;

/// Appends `families`; a family named like a per-line family is left out (it would split a
/// family in two, which both formats forbid).
pub fn write_families(out: &mut Vec<u8>, format: Format, families: &[MetricFamily]) {
    for family in families {
        let name = family.name();
        let known = catalog::find(name);
        if known.is_some_and(|f| f.scope == Scope::Line) {
            tracing::warn!(metric = name, "registry family shadows a per-line family; left out");
            continue;
        }
        if family.get_metric().is_empty() {
            continue;
        }
        let kind = family.get_field_type();
        let header = match known {
            Some(f) => Header::of(f),
            None => header_of(family, kind),
        };
        write_header(out, format, &header);
        let counter_name;
        let sample_name = match (kind, format) {
            (MetricType::COUNTER, Format::OpenMetrics) if !name.ends_with("_total") => {
                counter_name = format!("{name}_total");
                counter_name.as_str()
            }
            _ => name,
        };
        for metric in family.get_metric() {
            write_metric(out, format, sample_name, kind, metric);
        }
    }
}

fn header_of(family: &MetricFamily, kind: MetricType) -> Header<'_> {
    let name = family.name();
    let (text_type, openmetrics_type) = match kind {
        MetricType::COUNTER => ("counter", "counter"),
        MetricType::GAUGE => ("gauge", "gauge"),
        MetricType::HISTOGRAM => ("histogram", "histogram"),
        MetricType::SUMMARY => ("summary", "summary"),
        MetricType::UNTYPED => ("untyped", "unknown"),
    };
    let openmetrics_name = match kind {
        MetricType::COUNTER => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    Header { name, openmetrics_name, help: family.help(), text_type, openmetrics_type, unit: None }
}

fn write_metric(out: &mut Vec<u8>, format: Format, name: &str, kind: MetricType, m: &Metric) {
    match kind {
        MetricType::COUNTER => sample(out, format, name, "", m, None, m.get_counter().get_value()),
        MetricType::GAUGE => sample(out, format, name, "", m, None, m.get_gauge().get_value()),
        // The `prometheus` crate builds no untyped metric (its plain model keeps the type only
        // for protobuf), so none reaches here.
        MetricType::UNTYPED => {}
        MetricType::HISTOGRAM => {
            let h = m.get_histogram();
            let mut inf_seen = false;
            let mut bound = Vec::new();
            for b in h.get_bucket() {
                let upper = b.upper_bound();
                inf_seen |= upper == f64::INFINITY;
                bound.clear();
                write_f64(&mut bound, upper);
                let le = std::str::from_utf8(&bound).unwrap_or("+Inf");
                let count = b.cumulative_count() as f64;
                sample(out, format, name, "_bucket", m, Some(("le", le)), count);
            }
            if !inf_seen {
                let count = h.get_sample_count() as f64;
                sample(out, format, name, "_bucket", m, Some(("le", "+Inf")), count);
            }
            sample(out, format, name, "_sum", m, None, h.get_sample_sum());
            sample(out, format, name, "_count", m, None, h.get_sample_count() as f64);
        }
        MetricType::SUMMARY => {
            let s = m.get_summary();
            let mut q = Vec::new();
            for quantile in s.get_quantile() {
                q.clear();
                write_f64(&mut q, quantile.quantile());
                let label = std::str::from_utf8(&q).unwrap_or("NaN");
                sample(out, format, name, "", m, Some(("quantile", label)), quantile.value());
            }
            sample(out, format, name, "_sum", m, None, s.sample_sum());
            sample(out, format, name, "_count", m, None, s.sample_count() as f64);
        }
    }
}

fn sample(
    out: &mut Vec<u8>,
    format: Format,
    name: &str,
    suffix: &str,
    m: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    let labels = m.get_label();
    if !labels.is_empty() || extra.is_some() {
        out.push(b'{');
        let mut first = true;
        for pair in labels {
            write_label(out, first, pair.name(), pair.value());
            first = false;
        }
        if let Some((label, value)) = extra {
            write_label(out, first, label, value);
        }
        out.push(b'}');
    }
    out.push(b' ');
    write_f64(out, value);
    let ms = m.timestamp_ms();
    if ms != 0 {
        out.push(b' ');
        match format {
            Format::Text => write_f64(out, ms as f64),
            // OpenMetrics timestamps are seconds.
            Format::OpenMetrics => write_f64(out, ms as f64 / 1000.0),
        }
    }
    out.push(b'\n');
}
