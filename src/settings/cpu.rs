//! How many CPUs this process may use: the cgroup CPU quota when one is set (a Kubernetes
//! `limits.cpu`), else the cores the scheduler gives it; at least 1. A sidecar with a 500m limit
//! thus runs one worker thread instead of one per core of the node.

/// The worker threads to run when the settings say `threads: 0` (auto).
pub(crate) fn available() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let quota = read("/sys/fs/cgroup/cpu.max")
        .and_then(|s| quota_v2(&s))
        .or_else(|| {
            let q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?;
            let p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?;
            quota_v1(&q, &p)
        });
    threads_for(cores, quota)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// cgroup v2 `cpu.max`: `"<quota> <period>"` or `"max <period>"`; CPUs as a fraction.
fn quota_v2(cpu_max: &str) -> Option<f64> {
    let mut parts = cpu_max.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// cgroup v1: `cpu.cfs_quota_us` (-1 when unlimited) over `cpu.cfs_period_us`.
fn quota_v1(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Whole CPUs of the quota, rounded up, never more than the cores, at least 1.
fn threads_for(cores: usize, quota: Option<f64>) -> usize {
    let by_quota = quota.map_or(cores, |q| q.ceil().min(cores as f64) as usize);
    by_quota.clamp(1, cores.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_round_up_and_stay_within_the_cores() {
        assert_eq!(quota_v2("50000 100000"), Some(0.5));
        assert_eq!(quota_v2("max 100000"), None);
        assert_eq!(quota_v1("-1", "100000"), None);
        assert_eq!(quota_v1("150000\n", "100000\n"), Some(1.5));
        assert_eq!(
            threads_for(8, Some(0.5)),
            1,
            "a 500m sidecar runs one worker"
        );
        assert_eq!(threads_for(8, Some(1.5)), 2);
        assert_eq!(threads_for(2, Some(4.0)), 2, "never more than the cores");
        assert_eq!(threads_for(4, None), 4);
        assert_eq!(threads_for(0, None), 1);
        assert!(available() >= 1);
    }
}
