//! What each step used, from Linux's per-process accounting:
//! - the peak resident memory: reset before a step (`/proc/self/clear_refs`) and read after it
//!   (`VmHWM` in `/proc/self/status`); within a step, reset again before each of its parts (a SQL
//!   model) to measure that part alone, the step's peak carried over the part's reset;
//! - the CPU time of all the process's threads, user and system (`/proc/self/stat`), read before
//!   and after the step.
//!
//! Elsewhere, or where the files cannot be used, nothing is measured.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kernel's unit of the CPU times in `/proc/<pid>/stat`: `USER_HZ`, fixed at 100 per second
/// on every architecture Linux runs on (it is part of the ABI, unlike the kernel's own tick rate).
const TICKS_PER_SECOND: u64 = 100;

/// The CPU time the process has used so far (all threads, user plus system), in milliseconds.
pub(crate) fn cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_ms_of(&stat)
}

/// The CPU time in one `/proc/<pid>/stat` line: fields 14 (utime) and 15 (stime), counted after the
/// command name, which is in parentheses and may itself hold spaces and parentheses.
fn cpu_ms_of(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) * 1000 / TICKS_PER_SECOND)
}

/// The step's peak before the last [`reset_part_peak`], in MiB (0 before any).
static STEP_PEAK_BEFORE_PART_MIB: AtomicU64 = AtomicU64::new(0);

/// Starts a step's peak at the current resident size.
pub(crate) fn reset_peak() {
    STEP_PEAK_BEFORE_PART_MIB.store(0, Ordering::Relaxed);
    reset_kernel_peak();
}

/// Starts a part of a step (a SQL model): [`part_peak_mib`] is then the part's peak, while
/// [`peak_mib`] stays the whole step's.
pub(crate) fn reset_part_peak() {
    if let Some(peak) = kernel_peak_mib() {
        STEP_PEAK_BEFORE_PART_MIB.fetch_max(peak, Ordering::Relaxed);
    }
    reset_kernel_peak();
}

fn reset_kernel_peak() {
    // "5" resets the peak resident set size (Linux 4.0 and later); failure only loses the figure.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the step started, in MiB.
pub(crate) fn peak_mib() -> Option<u64> {
    let peak = kernel_peak_mib()?;
    Some(peak.max(STEP_PEAK_BEFORE_PART_MIB.load(Ordering::Relaxed)))
}

/// The peak resident memory since the part started ([`reset_part_peak`]), in MiB.
pub(crate) fn part_peak_mib() -> Option<u64> {
    kernel_peak_mib()
}

/// The kernel's high-water mark of resident memory since its last reset, in MiB.
fn kernel_peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    /// The peak is the process's: tests that reset it run one at a time.
    static PEAKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (clientele (x) y) R 1 4242 4242 0 -1 4194304 1234 0 0 0 250 37 0 0 20 0 3";
        assert_eq!(super::cpu_ms_of(stat), Some(2_870));
        assert_eq!(super::cpu_ms_of("4242 (clientele) R 1"), None);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = super::cpu_ms() else {
            return;
        };
        let started = std::time::Instant::now();
        let mut x = 1u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let after = super::cpu_ms().unwrap_or(0);
        assert!(
            after >= before + 200,
            "cpu {before} ms, then {after} ms ({x})"
        );
    }

    #[test]
    fn the_peak_follows_an_allocation() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        let _one_at_a_time = PEAKS.lock();
        super::reset_peak();
        let before = super::peak_mib().unwrap_or(0);
        let block = vec![1u8; 64 << 20];
        let after = super::peak_mib().unwrap_or(0);
        assert!(block.iter().all(|&b| b == 1));
        assert!(after >= before + 60, "peak {before} MiB, then {after} MiB");
    }

    #[test]
    fn a_part_has_its_own_peak_and_the_step_keeps_the_highest() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        let _one_at_a_time = PEAKS.lock();
        super::reset_peak();
        let block = vec![1u8; 96 << 20];
        assert!(block.iter().all(|&b| b == 1));
        drop(block);
        let step_after_block = super::peak_mib().unwrap_or(0);
        super::reset_part_peak();
        let part = super::part_peak_mib().unwrap_or(0);
        let step = super::peak_mib().unwrap_or(0);
        assert!(
            step >= step_after_block && step >= part + 90,
            "step {step} MiB (after the block {step_after_block}), part {part} MiB"
        );
    }
}
