//! `/metrics`: the gateway's Prometheus exposition, encoded by prometheus-client from the
//! workers' telemetry at scrape time.
//!
//! prometheus-client writes OpenMetrics. Scrapers that ask for it (`Accept:
//! application/openmetrics-text`) get it as is; everything else gets the classic text format
//! 0.0.4, which differs only in the names of counter families (`x_total` instead of `x`) and in
//! having no `# UNIT` and `# EOF` lines.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::ConfigHandle;
use crate::status::{LinkGauges, State};
use crate::telemetry::{Histogram, Telemetry};

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub telemetry: Arc<Telemetry>,
    pub config: ConfigHandle,
    /// The link of a self-hosted gateway; `None` for the built-in one.
    pub link: Option<Arc<crate::status::Status>>,
}

/// Encodes everything, as OpenMetrics when `openmetrics`, else as the classic text format.
pub fn render(sources: &Sources, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(sources.clone())));
    let mut out = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    if openmetrics { out } else { to_classic(&out) }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4.
fn to_classic(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct Scrape(Sources);

type Labels = Vec<(String, String)>;

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, Histogram)],
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in series {
        family
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.cumulative(), None)?;
    }
    Ok(())
}

fn status_class(status: u16) -> String {
    format!("{}xx", status / 100)
}

fn text(v: &Option<Arc<str>>) -> String {
    v.as_deref().unwrap_or_default().to_owned()
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let config = s.config.current();
        let gateway = config
            .as_ref()
            .map(|c| c.gateway_id.to_string())
            .unwrap_or_default();
        let location = s.telemetry.settings().location.clone();
        let base = || -> Labels {
            vec![
                ("gateway".to_owned(), gateway.clone()),
                ("location".to_owned(), location.clone()),
            ]
        };

        let requests = s.telemetry.request_metrics();
        let mut totals = Vec::with_capacity(requests.len());
        // Histograms by API, operation, product and status class only: the exact codes,
        // cache and error labels would multiply the buckets for little gain.
        let mut by_class: std::collections::BTreeMap<_, [Histogram; 3]> = Default::default();
        for (k, m) in &requests {
            let mut labels = base();
            labels.push(("api".to_owned(), text(&k.api)));
            labels.push(("operation".to_owned(), text(&k.operation)));
            labels.push(("product".to_owned(), text(&k.product)));
            if s.telemetry.settings().subscription_labels {
                labels.push(("subscription".to_owned(), text(&k.subscription)));
            }
            labels.push(("code_class".to_owned(), status_class(k.status)));
            labels.push(("code".to_owned(), k.status.to_string()));
            labels.push((
                "backend_code".to_owned(),
                k.backend_status.map(|c| c.to_string()).unwrap_or_default(),
            ));
            labels.push((
                "cache".to_owned(),
                match k.cache {
                    Some(true) => "hit",
                    Some(false) => "miss",
                    None => "",
                }
                .to_owned(),
            ));
            labels.push((
                "error_reason".to_owned(),
                k.error.as_deref().unwrap_or_default().to_owned(),
            ));
            labels.push((
                "grpc_status".to_owned(),
                k.grpc_status.map(|c| c.to_string()).unwrap_or_default(),
            ));
            totals.push((labels, m.requests));
            let h = by_class
                .entry((
                    text(&k.api),
                    text(&k.operation),
                    text(&k.product),
                    status_class(k.status),
                ))
                .or_default();
            h[0].merge(&m.total);
            h[1].merge(&m.backend);
            h[2].merge(&m.gateway);
        }
        counter(
            &mut encoder,
            "gatehouse_requests",
            "Requests the gateway answered",
            &totals,
        )?;
        for (index, name, help) in [
            (
                0,
                "gatehouse_request_duration",
                "Time from the request's arrival to the end of its response",
            ),
            (
                1,
                "gatehouse_backend_duration",
                "Time the backend took to send its response headers",
            ),
            (
                2,
                "gatehouse_gateway_duration",
                "Time spent in the gateway: the request's duration less the backend's",
            ),
        ] {
            let series: Vec<(Labels, Histogram)> = by_class
                .iter()
                .filter(|(_, h)| h[index].count > 0)
                .map(|((api, op, product, class), h)| {
                    let mut labels = base();
                    labels.push(("api".to_owned(), api.clone()));
                    labels.push(("operation".to_owned(), op.clone()));
                    labels.push(("product".to_owned(), product.clone()));
                    labels.push(("code_class".to_owned(), class.clone()));
                    (labels, h[index].clone())
                })
                .collect();
            histogram(&mut encoder, name, help, &series)?;
        }

        gauge(
            &mut encoder,
            "gatehouse_requests_in_flight",
            "Requests whose response has not finished",
            None,
            &[(base(), s.telemetry.in_flight() as f64)],
        )?;

        let custom = s.telemetry.custom_metrics();
        if !custom.is_empty() {
            let mut sums = Vec::new();
            let mut counts = Vec::new();
            for (k, v) in custom {
                let mut labels = base();
                labels.push(("name".to_owned(), k.name.to_string()));
                labels.push(("namespace".to_owned(), k.namespace.to_string()));
                for (n, value) in &k.dimensions {
                    labels.push((dimension_label(n), value.clone()));
                }
                sums.push((labels.clone(), v.sum));
                counts.push((labels, v.count));
            }
            gauge(
                &mut encoder,
                "gatehouse_custom_metric_value",
                "Sum of the values emitted by emit-metric policies",
                None,
                &sums,
            )?;
            counter(
                &mut encoder,
                "gatehouse_custom_metric_emitted",
                "Values emitted by emit-metric policies",
                &counts,
            )?;
        }

        let loggers = s.telemetry.loggers.all();
        if !loggers.is_empty() {
            let series = |pick: fn(&crate::loggers::LoggerCounters) -> u64| -> Vec<(Labels, u64)> {
                loggers
                    .iter()
                    .map(|(id, c)| {
                        let mut labels = base();
                        labels.push(("logger".to_owned(), id.to_string()));
                        (labels, pick(c))
                    })
                    .collect()
            };
            counter(
                &mut encoder,
                "gatehouse_logger_sent",
                "log-to-eventhub messages the logger accepted",
                &series(|c| c.sent.load(std::sync::atomic::Ordering::Relaxed)),
            )?;
            counter(
                &mut encoder,
                "gatehouse_logger_dropped",
                "log-to-eventhub messages dropped: the logger's queue was full, sending failed, or the logger is unknown",
                &series(|c| c.dropped.load(std::sync::atomic::Ordering::Relaxed)),
            )?;
            let queued: Vec<(Labels, f64)> =
                series(|c| c.queued.load(std::sync::atomic::Ordering::Relaxed))
                    .into_iter()
                    .map(|(l, v)| (l, v as f64))
                    .collect();
            gauge(
                &mut encoder,
                "gatehouse_logger_queued",
                "log-to-eventhub messages waiting to be sent",
                None,
                &queued,
            )?;
        }

        let up = &s.telemetry.upstream;
        gauge(
            &mut encoder,
            "gatehouse_upstream_connections",
            "Connections to backends open now, pooled or in use",
            None,
            &[(
                base(),
                up.open.load(std::sync::atomic::Ordering::Relaxed) as f64,
            )],
        )?;
        counter(
            &mut encoder,
            "gatehouse_upstream_connections_opened",
            "Connections to backends opened; few means the pools reuse them",
            &[(base(), up.opened.load(std::sync::atomic::Ordering::Relaxed))],
        )?;

        let revision = config.as_ref().map(|c| c.revision);
        gauge(
            &mut encoder,
            "gatehouse_config_revision",
            "Revision of the configuration in force (-1 before the first)",
            None,
            &[(base(), revision.map_or(-1.0, |r| r as f64))],
        )?;
        let errors = config.as_ref().map_or(0, |c| c.problems().len());
        gauge(
            &mut encoder,
            "gatehouse_config_errors",
            "APIs of the configuration in force that could not be compiled (their calls get 500)",
            None,
            &[(base(), errors as f64)],
        )?;
        let breakers = config
            .as_ref()
            .map(|c| c.backends.breakers())
            .unwrap_or_default();
        if !breakers.is_empty() {
            let now = crate::breaker::now_ms();
            let labelled = |b: &crate::breaker::Breaker| {
                let mut labels = base();
                labels.push(("backend".to_owned(), b.backend().to_string()));
                labels
            };
            let open: Vec<(Labels, f64)> = breakers
                .iter()
                .map(|b| (labelled(b), if b.is_open(now) { 1.0 } else { 0.0 }))
                .collect();
            gauge(
                &mut encoder,
                "gatehouse_backend_circuit_open",
                "1 while the backend's circuit breaker is open (the backend gets no requests), 0 while it is closed",
                None,
                &open,
            )?;
            let trips: Vec<(Labels, u64)> =
                breakers.iter().map(|b| (labelled(b), b.trips())).collect();
            counter(
                &mut encoder,
                "gatehouse_backend_circuit_trips",
                "Times the backend's circuit breaker tripped, since this gateway took up its URL and rule",
                &trips,
            )?;
        }
        if let Some(link) = &s.link {
            let g: LinkGauges = link.gauges();
            let states = [State::Starting, State::Ready, State::Stale, State::Degraded]
                .into_iter()
                .map(|st| {
                    let mut labels = base();
                    labels.push((
                        "state".to_owned(),
                        match st {
                            State::Starting => "starting",
                            State::Ready => "ready",
                            State::Stale => "stale",
                            State::Degraded => "degraded",
                        }
                        .to_owned(),
                    ));
                    (labels, if st == g.state { 1.0 } else { 0.0 })
                })
                .collect::<Vec<_>>();
            gauge(
                &mut encoder,
                "gatehouse_link_state",
                "1 for the state the link to the control plane is in",
                None,
                &states,
            )?;
            if let Some(since) = g.since_sync {
                gauge(
                    &mut encoder,
                    "gatehouse_last_sync_age",
                    "Seconds since the control plane last answered",
                    Some(&Unit::Seconds),
                    &[(base(), since.as_secs_f64())],
                )?;
            }
            if let Some(age) = g.backup_age {
                gauge(
                    &mut encoder,
                    "gatehouse_backup_age",
                    "Seconds since a configuration was last written to the backup",
                    Some(&Unit::Seconds),
                    &[(base(), age.as_secs_f64())],
                )?;
            }
        }
        let t = &s.telemetry;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        counter(
            &mut encoder,
            "gatehouse_telemetry_batches_sent",
            "Telemetry batches delivered to the control plane",
            &[(base(), load(&t.batches_sent))],
        )?;
        counter(
            &mut encoder,
            "gatehouse_redis_errors",
            "Redis calls (shared counters and cache, --redis) that failed or timed out; each fell back as --redis-failure says",
            &[(base(), load(&t.redis_errors))],
        )?;
        counter(
            &mut encoder,
            "gatehouse_telemetry_spool_dropped_batches",
            "Telemetry batches dropped, oldest first, because the spool was full",
            &[(base(), load(&t.spool_dropped))],
        )?;
        gauge(
            &mut encoder,
            "gatehouse_telemetry_spool_batches",
            "Telemetry batches waiting to be delivered",
            None,
            &[(base(), load(&t.spool_batches) as f64)],
        )?;
        gauge(
            &mut encoder,
            "gatehouse_telemetry_spool",
            "Size of the telemetry batches waiting to be delivered",
            Some(&Unit::Bytes),
            &[(base(), load(&t.spool_bytes) as f64)],
        )?;
        Ok(())
    }
}

/// A dimension name as a label name: `[a-z0-9_]`, prefixed so it cannot clash with the
/// fixed labels.
fn dimension_label(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("dim_{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_by_their_samples() {
        let open = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n# HELP d Time.\n# TYPE d histogram\n# UNIT d seconds\nd_sum 1.0\n# EOF\n";
        assert_eq!(
            to_classic(open),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n# HELP d Time.\n# TYPE d histogram\nd_sum 1.0\n"
        );
    }

    #[test]
    fn dimension_names_become_label_names() {
        assert_eq!(dimension_label("User-Agent"), "dim_user_agent");
    }
}
