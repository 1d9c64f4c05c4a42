//! Exposition formats and their choice from a scrape's `Accept` header. Text format 0.0.4 is
//! the default; OpenMetrics only when the client prefers it at least as much as text.

/// `Content-Type` of text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The one `Content-Type` a response in this format carries.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Chooses the format for an `Accept` header: OpenMetrics when `application/openmetrics-text`
/// is listed with a q-value above 0 and not below the best of `text/plain`, `text/*` and
/// `*/*`; text in every other case, including a header that does not parse.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut openmetrics: Option<f32> = None;
    let mut text: Option<f32> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                if param.trim().is_empty() {
                    continue;
                }
                return Format::Text;
            };
            if key.trim().eq_ignore_ascii_case("q") {
                match value.trim().parse::<f32>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => q = v,
                    _ => return Format::Text,
                }
            }
        }
        let slot = match media.as_str() {
            "application/openmetrics-text" => &mut openmetrics,
            "text/plain" | "text/*" | "*/*" => &mut text,
            _ => continue,
        };
        *slot = Some(slot.map_or(q, |old| old.max(q)));
    }
    match openmetrics {
        Some(om) if om > 0.0 && om >= text.unwrap_or(0.0) => Format::OpenMetrics,
        _ => Format::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_formats_from_accept_headers() {
        use Format::{OpenMetrics as OM, Text};
        let cases: &[(Option<&str>, Format)] = &[
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OM),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), OM),
            // Prometheus 2.x scrape header.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OM,
            ),
            // Prometheus 3.x default scrape protocols.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                     application/openmetrics-text;version=0.0.1;q=0.4,\
                     text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
                     text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                ),
                OM,
            ),
            // Prometheus with `scrape_protocols: [PrometheusText0.0.4]`.
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Text),
            (Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"), Text),
            (Some("text/plain;q=0.5, application/openmetrics-text;q=0.5"), OM),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text ; q=0.3 , */*;q=0.3"), OM),
            (Some("application/openmetrics-text;q=0.3, text/*;q=0.4"), Text),
            (Some("application/openmetrics-text;q=abc"), Text),
            (Some("application/openmetrics-text;q=2"), Text),
            (Some("application/openmetrics-text;garbage"), Text),
            (Some(",,application/openmetrics-text;;"), OM),
        ];
        for &(accept, want) in cases {
            assert_eq!(negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn content_types_name_version_and_charset() {
        assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(Format::OpenMetrics.content_type(), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    }
}
