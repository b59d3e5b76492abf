//! The guest's memory, printed on the console at a fixed interval as
//! [`cloister_protocol::console::MemoryReading`] lines (sizes only; see there why).

use std::time::Duration;

use cloister_protocol::console::MemoryReading;

/// This process's reading now (`None` without `/proc`).
pub fn read() -> Option<MemoryReading> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    MemoryReading::parse(&status, &meminfo)
}

/// Prints a reading on the console now and then every `every`.
pub fn spawn_report(every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Some(r) = read() {
                eprintln!("{}", r.line());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let r = super::read().expect("/proc is mounted on the test machine");
        assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib);
        assert!(r.total_kib > r.available_kib && r.used_kib() > 0);
    }
}
