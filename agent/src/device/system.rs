//! System figures for `device.status` (PROTOCOL.md §4): CPU %, memory, uptime
//! (crate `sysinfo`) and SoC temperature (`/sys/class/thermal`).

use std::fs;
use std::path::Path;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Where the kernel lists thermal zones.
pub const SYS_CLASS_THERMAL: &str = "/sys/class/thermal";

/// One sample of the system figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemFigures {
    /// Whole-system CPU use since the previous sample, percent (0–100).
    pub cpu_percent: f64,
    /// Memory in use, MiB.
    pub mem_used_mb: u64,
    /// System uptime, s.
    pub uptime_s: u64,
    /// SoC temperature, °C, if a thermal zone is readable.
    pub temperature_c: Option<f64>,
}

/// Keeps the `sysinfo` state between samples (CPU % is a difference of two).
pub struct SystemSampler {
    sys: System,
}

impl Default for SystemSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemSampler {
    /// A sampler primed with a first CPU reading.
    pub fn new() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Self { sys }
    }

    /// Take a sample. CPU % covers the time since the previous call (or since
    /// [`SystemSampler::new`]).
    pub fn sample(&mut self) -> SystemFigures {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let cpu = f64::from(self.sys.global_cpu_usage());
        SystemFigures {
            cpu_percent: (cpu * 10.0).round() / 10.0,
            mem_used_mb: self.sys.used_memory() / (1024 * 1024),
            uptime_s: System::uptime(),
            temperature_c: temperature(Path::new(SYS_CLASS_THERMAL)),
        }
    }
}

/// Temperature of the SoC, °C: the first thermal zone whose `type` mentions `soc`
/// or `cpu`, else the first readable zone. `None` without thermal zones.
pub fn temperature(sys_class_thermal: &Path) -> Option<f64> {
    let mut zones: Vec<_> = fs::read_dir(sys_class_thermal)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("thermal_zone"))
        })
        .collect();
    zones.sort();
    let read = |zone: &Path| -> Option<f64> {
        let milli: f64 = fs::read_to_string(zone.join("temp"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some((milli / 100.0).round() / 10.0)
    };
    let preferred = zones.iter().find(|z| {
        fs::read_to_string(z.join("type"))
            .map(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("soc") || t.contains("cpu")
            })
            .unwrap_or(false)
    });
    preferred
        .and_then(|z| read(z))
        .or_else(|| zones.iter().find_map(|z| read(z)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_plausible() {
        let mut s = SystemSampler::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let f = s.sample();
        assert!((0.0..=100.0).contains(&f.cpu_percent), "{f:?}");
        assert!(f.mem_used_mb > 0 && f.uptime_s > 0, "{f:?}");
    }

    #[test]
    fn temperature_prefers_the_soc_zone() {
        let root = tempfile::tempdir().unwrap();
        for (zone, kind, milli) in [
            ("thermal_zone0", "gpu-thermal", "61000"),
            ("thermal_zone1", "soc-thermal", "48512"),
        ] {
            let d = root.path().join(zone);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("type"), kind).unwrap();
            fs::write(d.join("temp"), milli).unwrap();
        }
        assert_eq!(temperature(root.path()), Some(48.5));
        assert_eq!(temperature(&root.path().join("none")), None);
    }
}
