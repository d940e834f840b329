//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read from `/proc` at
//! scrape time, so dashboards made for any Prometheus-instrumented process work unchanged. On a
//! system without `/proc` nothing is reported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU time and start time in clock ticks of `USER_HZ`, which is 100 on every
/// architecture it exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `/proc/self` when scraped.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: f64,
    pub(crate) open_fds: f64,
    pub(crate) max_fds: f64,
    pub(crate) start_time: f64,
}

impl Reading {
    /// The process now, or `None` where `/proc` cannot be read.
    pub(crate) fn now() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
        Reading::parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// Pure: the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat`, `/proc/self/limits`.
    pub(crate) fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: usize) -> Option<Reading> {
        // The command name is in parentheses and may hold spaces: fields count from after it.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let cpu_ticks = field(14)? + field(15)?;
        let started_ticks = field(22)?;
        let boot_time = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<f64>().ok()?;
        let rss_kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse::<f64>().ok())
            .unwrap_or(0.0);
        Some(Reading {
            cpu_seconds: cpu_ticks / TICKS_PER_SECOND,
            resident_bytes: rss_kib.parse::<f64>().ok()? * 1024.0,
            open_fds: open_fds as f64,
            max_fds,
            start_time: boot_time + started_ticks / TICKS_PER_SECOND,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = Reading::now() else { return Ok(()) };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", r.resident_bytes),
            ("process_open_fds", "Number of open file descriptors", r.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors", r.max_fds),
            ("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds", r.start_time),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_parsed_from_procs_texts() {
        let stat = "4242 (cognito authz) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 1000 \
                    123456 7000 18446744073709551615";
        let status = "Name:\tcognito-authz\nVmRSS:\t   29696 kB\nThreads:\t9\n";
        let boot = "cpu  1 2 3\nbtime 1800000000\nprocesses 7\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        let r = Reading::parse(stat, status, boot, limits, 17).unwrap();
        assert_eq!(r.cpu_seconds, 3.0, "(250 + 50) ticks");
        assert_eq!(r.resident_bytes, 29696.0 * 1024.0);
        assert_eq!((r.open_fds, r.max_fds), (17.0, 1_048_576.0));
        assert_eq!(r.start_time, 1_800_000_010.0, "boot time + 1000 ticks");
        assert!(Reading::parse("garbage", status, boot, limits, 0).is_none());
    }

    #[test]
    fn this_process_can_be_read() {
        let r = Reading::now().expect("/proc on the test machine");
        assert!(r.resident_bytes > 0.0 && r.open_fds > 0.0 && r.start_time > 1.6e9);
    }
}
