//! Lines the guest prints on its serial console for the host to read (the console is
//! host-visible: nothing here may carry content, keys or tokens).
//!
//! [`MemoryReading`]: PID 1's memory, printed at an interval. From outside, the host sees only
//! QEMU's resident set, which grows as the guest touches pages and never shrinks; whether the
//! *runtime* leaks is visible only inside. Sizes only — and the host already observes the
//! guest's memory use page by page (it owns the nested page tables), so this reveals nothing it
//! could not measure itself.

/// One reading, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    /// Resident set of this process (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set of this process (`VmHWM`).
    pub hwm_kib: u64,
    /// Memory the kernel manages (`MemTotal`).
    pub total_kib: u64,
    /// Memory available to new allocations without swapping (`MemAvailable`).
    pub available_kib: u64,
}

/// The console line's prefix; the rest is `rss-kib=N hwm-kib=N total-kib=N available-kib=N`.
pub const PREFIX: &str = "cloister: memory ";

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl MemoryReading {
    /// Reads the texts of `/proc/self/status` and `/proc/meminfo`; `None` if a field is missing.
    pub fn parse(status: &str, meminfo: &str) -> Option<MemoryReading> {
        Some(MemoryReading {
            rss_kib: field(status, "VmRSS")?,
            hwm_kib: field(status, "VmHWM")?,
            total_kib: field(meminfo, "MemTotal")?,
            available_kib: field(meminfo, "MemAvailable")?,
        })
    }

    /// The console line.
    pub fn line(&self) -> String {
        format!(
            "{PREFIX}rss-kib={} hwm-kib={} total-kib={} available-kib={}",
            self.rss_kib, self.hwm_kib, self.total_kib, self.available_kib
        )
    }

    /// Reads a console line back (host side: tests and operators); `None` for any other line.
    pub fn from_line(line: &str) -> Option<MemoryReading> {
        let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
        let get = |key: &str| -> Option<u64> {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(MemoryReading {
            rss_kib: get("rss-kib")?,
            hwm_kib: get("hwm-kib")?,
            total_kib: get("total-kib")?,
            available_kib: get("available-kib")?,
        })
    }

    /// Memory in use in the whole guest (`MemTotal - MemAvailable`), in KiB.
    pub fn used_kib(&self) -> u64 {
        self.total_kib.saturating_sub(self.available_kib)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcloister-runtim\nVmPeak:\t  123456 kB\nVmHWM:\t   45678 kB\nVmRSS:\t   40000 kB\nThreads:\t4\n";
    const MEMINFO: &str =
        "MemTotal:        1014000 kB\nMemFree:          700000 kB\nMemAvailable:     800123 kB\n";

    #[test]
    fn reads_proc_and_round_trips_through_the_console_line() {
        let r = MemoryReading::parse(STATUS, MEMINFO).expect("fields present");
        assert_eq!(
            r,
            MemoryReading {
                rss_kib: 40000,
                hwm_kib: 45678,
                total_kib: 1014000,
                available_kib: 800123
            }
        );
        let line = format!("[   12.345678] {}", r.line());
        assert_eq!(MemoryReading::from_line(&line), Some(r));
        assert_eq!(r.used_kib(), 1014000 - 800123);
    }

    #[test]
    fn missing_or_malformed_fields_give_none() {
        assert_eq!(MemoryReading::parse("VmRSS:\t1 kB\n", MEMINFO), None);
        assert_eq!(MemoryReading::parse(STATUS, "MemFree: 1 kB\n"), None);
        // `VmRSSx` is not `VmRSS`.
        assert_eq!(
            MemoryReading::parse("VmRSSx:\t1 kB\nVmHWM:\t2 kB\n", MEMINFO),
            None
        );
        assert_eq!(
            MemoryReading::from_line("cloister: READY vsock-port=1"),
            None
        );
        assert_eq!(
            MemoryReading::from_line(
                "cloister: memory rss-kib=x hwm-kib=1 total-kib=3 available-kib=2"
            ),
            None
        );
    }
}
