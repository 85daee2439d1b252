//! Measured memory of a provider: resident set now and its peak, from `/proc/<pid>/status`.

/// (resident bytes, peak resident bytes) of `pid`, if it runs.
pub fn measure(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let rss = field("VmRSS:")?;
    Some((rss, field("VmHWM:").unwrap_or(rss)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_memory_is_measured() {
        let (rss, peak) = super::measure(std::process::id()).expect("a running process");
        assert!(rss > 0 && peak >= rss);
        assert!(super::measure(u32::MAX).is_none());
    }
}
