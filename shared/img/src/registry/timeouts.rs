//! How long a registry may keep us waiting. A registry (or a host it sends us to) is not
//! trusted to answer at a useful speed: one that sends a manifest a byte a second would hold a
//! pull forever, because each byte resets an idle timer. So every request has three limits:
//!
//! - `connect`: to resolve the name and finish the TCP and TLS handshakes;
//! - `read`: the longest nothing may move, either way (the idle timer), for every request;
//! - `document`: the longest a small answer may take in full, from the first attempt to its
//!   last byte and across retries: `/v2/`, manifests, indexes, image configs, tokens, upload
//!   bookkeeping. Layers can be gigabytes on a slow link, so their transfers have no overall
//!   limit; the idle limit still ends one that stalls.
//!
//! Errors name the flag that sets the limit that was hit, so a user on a slow link knows what
//! to raise.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (name lookup, TCP, TLS); `None`: no limit.
    pub connect: Option<Duration>,
    /// The longest no data may move on a connection.
    pub read: Option<Duration>,
    /// The longest a document request may take in full, retries included.
    pub document: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Some(Duration::from_secs(30)),
            read: Some(Duration::from_secs(60)),
            document: Some(Duration::from_secs(300)),
        }
    }
}

/// What a request carries, which decides whether `document` applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// A small answer (or question): bounded by `document` as a whole.
    Document,
    /// A layer going either way: bounded only by `read` (and `connect`).
    Transfer,
}

/// Parses `90`, `90s`, `500ms`, `5m` or `1h` (`0`: no limit, see [`limit`]). The error is a
/// `String` so a command-line parser (clap) can use this as a value parser.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration (like 30s, 5m, 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A flag's duration as a limit: zero means none.
pub fn limit(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// A duration as a user would write it back in a flag: `3s`, `1.5s`, `5m`, `500ms`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

impl Timeouts {
    /// Words for a timeout ureq reported: which limit, and the flag that sets it.
    pub fn describe(&self, which: ureq::Timeout) -> String {
        use ureq::Timeout as T;
        let shown = |d: Option<Duration>| d.map_or_else(|| "its limit".to_string(), show);
        match which {
            T::Global | T::PerCall => {
                format!("no complete answer within {} (--timeout)", shown(self.document))
            }
            T::Resolve | T::Connect => {
                format!("cannot connect within {} (--connect-timeout)", shown(self.connect))
            }
            _ => format!("stalled: nothing moved for {} (--read-timeout)", shown(self.read)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows_durations() {
        let p = |s: &str| parse_duration(s).unwrap();
        assert_eq!(p("30"), Duration::from_secs(30));
        assert_eq!(p("30s"), Duration::from_secs(30));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("5m"), Duration::from_secs(300));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(limit(p("0")), None);
        assert!(parse_duration("soon").is_err() && parse_duration("3d").is_err());
        assert_eq!(show(Duration::from_secs(300)), "5m");
        assert_eq!(show(Duration::from_secs(3)), "3s");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
    }
}
