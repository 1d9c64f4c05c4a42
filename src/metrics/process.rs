//! The standard `process_*` metrics, with `process_cpu_seconds_total` to the microsecond.
//!
//! The `prometheus` crate's process collector counts CPU time in whole seconds (an integer
//! counter of clock ticks divided by `CLK_TCK`), so an exporter that uses a tenth of a second of
//! CPU a minute shows `rate(process_cpu_seconds_total[5m])` as 0, then a jump of 1. Its other
//! families (memory, file descriptors, threads, start time) are right and are kept; the CPU
//! counter is replaced by one read from `getrusage`, user plus system time.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Opts};

const CPU: &str = "process_cpu_seconds_total";

pub struct ProcessMetrics {
    inner: ProcessCollector,
    cpu: Counter,
}

impl ProcessMetrics {
    pub fn for_self() -> ProcessMetrics {
        let cpu = Counter::with_opts(Opts::new(CPU, "Total user and system CPU time spent in seconds."))
            .expect("a valid name and help");
        ProcessMetrics { inner: ProcessCollector::for_self(), cpu }
    }
}

/// User plus system CPU time of this process so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the pointer it is given and reads nothing.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (zeroed before in any case).
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs: Vec<&Desc> = self.inner.desc().into_iter().filter(|d| d.fq_name != CPU).collect();
        descs.extend(self.cpu.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(now) = cpu_seconds() {
            // A counter only goes up; CPU time of a process never goes back.
            let past = self.cpu.get();
            if now > past {
                self.cpu.inc_by(now - past);
            }
        }
        let mut families: Vec<MetricFamily> = self.inner.collect().into_iter().filter(|f| f.name() != CPU).collect();
        families.extend(self.cpu.collect());
        families
    }
}
