//! A small Prometheus registry: request latency histograms and counters.
//!
//! Written here rather than pulled in as a crate because the server needs
//! one histogram family and a few counters; the text format is simple and
//! stable (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Labels come only from the matched route template, the method and the
//! status code, never from the raw path or the caller: a client cannot
//! create new series, and no tenant data appears in the output. The watch's
//! series (audit chain, misuse signals) come from `service::WatchStats` and
//! are labelled by signal kind only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Route label used for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// One request series: which route template, method and status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// Named counters the server keeps besides the request histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// Requests refused by the per-token rate limit.
    RateLimited,
    /// Requests with a missing, malformed or unknown bearer token.
    Unauthenticated,
    /// Requests that ran past the request timeout.
    TimedOut,
}

impl Counter {
    const ALL: [Counter; 3] = [
        Counter::RateLimited,
        Counter::Unauthenticated,
        Counter::TimedOut,
    ];

    fn name(self) -> &'static str {
        match self {
            Counter::RateLimited => "nexus_attack_rate_limited_total",
            Counter::Unauthenticated => "nexus_attack_unauthenticated_total",
            Counter::TimedOut => "nexus_attack_request_timeouts_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Counter::RateLimited => "Requests refused by the per-token rate limit.",
            Counter::Unauthenticated => "Requests with a missing, malformed or unknown token.",
            Counter::TimedOut => "Requests that exceeded the request timeout.",
        }
    }
}

/// The process-wide metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Series, Histogram>>,
    counters: Mutex<BTreeMap<Counter, u64>>,
    /// The watch's counters, kept by the service.
    watch: Option<service::WatchStats>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also renders the watch's counters (audit chain verification,
    /// misuse signals).
    pub fn with_watch(mut self, stats: service::WatchStats) -> Self {
        self.watch = Some(stats);
        self
    }

    /// Records one finished request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        let series = Series {
            route: route.to_string(),
            method: method.to_string(),
            status,
        };

        // Poisoning only means a panic elsewhere; the counts stay usable.
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = requests.entry(series).or_default();
        histogram.buckets[slot] += 1;
        histogram.sum += seconds;
        histogram.count += 1;
    }

    /// The `q` quantile (0 to 1) of the latency of successful (2xx)
    /// `method route` requests, as the upper bound of the bucket that holds
    /// it (a quantile past the last bound reads as that bound), with the
    /// number of requests; `None` before the first one.
    pub fn quantile(&self, route: &str, method: &str, q: f64) -> Option<(f64, u64)> {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut buckets = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut count = 0u64;
        for (series, h) in requests.iter() {
            if series.route == route && series.method == method && series.status / 100 == 2 {
                for (total, n) in buckets.iter_mut().zip(h.buckets) {
                    *total += n;
                }
                count += h.count;
            }
        }
        if count == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest bucket whose
        // cumulative count reaches it holds the value.
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut cumulative = 0;
        for (slot, n) in buckets.iter().enumerate() {
            cumulative += n;
            if cumulative >= rank {
                let bound = LATENCY_BUCKETS
                    .get(slot)
                    .or(LATENCY_BUCKETS.last())
                    .copied()
                    .unwrap_or_default();
                return Some((bound, count));
            }
        }
        None
    }

    /// Adds one to a counter.
    pub fn increment(&self, counter: Counter) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *counters.entry(counter).or_default() += 1;
    }

    /// The registry in Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();

        let histogram = "nexus_attack_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {histogram} HTTP request latency by route template, method and status."
        );
        let _ = writeln!(out, "# TYPE {histogram} histogram");
        for (series, h) in &requests {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{}\"",
                escape(&series.route),
                escape(&series.method),
                series.status
            );
            let mut cumulative = 0;
            for (le, count) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "{histogram}_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{histogram}_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{histogram}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{histogram}_count{{{labels}}} {}", h.count);
        }

        let total = "nexus_attack_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {total} HTTP requests by route template, method and status."
        );
        let _ = writeln!(out, "# TYPE {total} counter");
        for (series, h) in &requests {
            let _ = writeln!(
                out,
                "{total}{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}",
                escape(&series.route),
                escape(&series.method),
                series.status,
                h.count
            );
        }

        for counter in Counter::ALL {
            let name = counter.name();
            let _ = writeln!(out, "# HELP {name} {}", counter.help());
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(
                out,
                "{name} {}",
                counters.get(&counter).copied().unwrap_or(0)
            );
        }
        if let Some(watch) = &self.watch {
            render_watch(&mut out, &watch.snapshot());
        }
        out
    }
}

/// The watch's series: verification counts, the last verdict (absent until
/// the first verification, so an unchecked chain never reads as intact), and
/// misuse signals by kind.
fn render_watch(out: &mut String, watch: &service::WatchSnapshot) {
    let counters = [
        (
            "nexus_attack_audit_verifications_total",
            "Audit chain verifications run by the watch.",
            watch.audit_verifications,
        ),
        (
            "nexus_attack_audit_verification_failures_total",
            "Audit chain verifications that found the chain broken.",
            watch.audit_failures,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {value}");
    }

    let gauge = "nexus_attack_audit_chain_ok";
    let _ = writeln!(
        out,
        "# HELP {gauge} 1 when the last audit chain verification found every hash and link intact, else 0."
    );
    let _ = writeln!(out, "# TYPE {gauge} gauge");
    if let Some(ok) = watch.audit_chain_ok {
        let _ = writeln!(out, "{gauge} {}", u8::from(ok));
    }

    let signals = "nexus_attack_misuse_signals_total";
    let _ = writeln!(
        out,
        "# HELP {signals} Misuse signals raised (one per actor and window) by kind."
    );
    let _ = writeln!(out, "# TYPE {signals} counter");
    for (kind, count) in &watch.signals {
        let _ = writeln!(out, "{signals}{{kind=\"{}\"}} {count}", kind.as_str());
    }
}

/// Escapes a label value as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_add_up() {
        let metrics = Metrics::new();
        let route = "/api/v1/taxonomy/{domain}/tactics";
        metrics.observe_request(route, "GET", 200, Duration::from_micros(500));
        metrics.observe_request(route, "GET", 200, Duration::from_millis(30));
        metrics.observe_request(route, "GET", 200, Duration::from_secs(20));
        metrics.increment(Counter::RateLimited);

        let text = metrics.render();
        let labels = format!("route=\"{route}\",method=\"GET\",status=\"200\"");
        let line = |suffix: &str| {
            let prefix = format!("nexus_attack_http_request_duration_seconds{suffix}");
            text.lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .map(str::to_string)
                .unwrap_or_default()
        };
        assert_eq!(line(&format!("_bucket{{{labels},le=\"0.001\"}}")), "1");
        assert_eq!(line(&format!("_bucket{{{labels},le=\"0.025\"}}")), "1");
        assert_eq!(line(&format!("_bucket{{{labels},le=\"0.05\"}}")), "2");
        assert_eq!(line(&format!("_bucket{{{labels},le=\"10\"}}")), "2");
        assert_eq!(line(&format!("_bucket{{{labels},le=\"+Inf\"}}")), "3");
        assert_eq!(line(&format!("_count{{{labels}}}")), "3");
        assert!(text.contains(&format!("nexus_attack_http_requests_total{{{labels}}} 3")));
        assert!(text.contains("nexus_attack_rate_limited_total 1"));
        assert!(text.contains("nexus_attack_request_timeouts_total 0"));
    }

    #[test]
    fn quantiles_read_the_bucket_bounds_of_successes_only() {
        let metrics = Metrics::new();
        let route = "/api/v1/matrix";
        assert_eq!(metrics.quantile(route, "GET", 0.95), None);
        for _ in 0..19 {
            metrics.observe_request(route, "GET", 200, Duration::from_millis(3));
        }
        metrics.observe_request(route, "GET", 200, Duration::from_millis(300));
        metrics.observe_request(route, "GET", 500, Duration::from_secs(20));
        // 20 successes: rank 19 is the 19th fastest, in the 5 ms bucket.
        assert_eq!(metrics.quantile(route, "GET", 0.95), Some((0.005, 20)));
        assert_eq!(metrics.quantile(route, "GET", 1.0), Some((0.5, 20)));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
