//! The W3C trace context (`traceparent`) of a checked request: pure parsing. Only a well-formed
//! value is read, so only hex ids reach a log line, and a request without one pays for no span.

/// The W3C trace context (`traceparent`) of the checked request.
#[derive(Debug, PartialEq, Eq)]
pub struct TraceContext<'a> {
    /// The trace, 32 lower-case hex digits.
    pub trace_id: &'a str,
    /// The caller's span, 16 lower-case hex digits.
    pub parent_id: &'a str,
}

/// `version-traceid-parentid-flags`, lower-case hex; all-zero ids and version `ff` are invalid.
/// Versions above 00 may append fields, which are ignored.
pub fn parse_traceparent(value: &str) -> Option<TraceContext<'_>> {
    let mut parts = value.trim_matches([' ', '\t']).split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let well_formed = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && !zero(trace_id)
        && !zero(parent_id)
        && (version != "00" || parts.next().is_none());
    well_formed.then_some(TraceContext { trace_id, parent_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_only_when_well_formed() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(good),
            Some(TraceContext { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736", parent_id: "00f067aa0ba902b7" })
        );
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").is_some());
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736\n-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }
}
