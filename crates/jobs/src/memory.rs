//! The peak resident memory of each step, from Linux's per-process accounting: the peak is reset
//! before a step (`/proc/self/clear_refs`) and read after it (`VmHWM` in `/proc/self/status`).
//! Elsewhere, or where the files cannot be used, nothing is measured.

/// Starts a new peak at the current resident size.
pub(crate) fn reset_peak() {
    // "5" resets the peak resident set size (Linux 4.0 and later); failure only loses the figure.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the last reset, in MiB.
pub(crate) fn peak_mib() -> Option<u64> {
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
    #[test]
    fn the_peak_follows_an_allocation() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        super::reset_peak();
        let before = super::peak_mib().unwrap_or(0);
        let block = vec![1u8; 64 << 20];
        let after = super::peak_mib().unwrap_or(0);
        assert!(block.iter().all(|&b| b == 1));
        assert!(after >= before + 60, "peak {before} MiB, then {after} MiB");
    }
}
