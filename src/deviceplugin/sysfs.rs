//! Reading sysfs attributes: PCI identity, bound driver, NUMA node, amdgpu memory counters.
//!
//! Every function takes the device directory it reads, so discovery runs against any tree (the
//! host's `/sys`, a mounted `/host/sys`, or a fixture). Nothing here panics on odd content: a
//! value that does not parse is an error naming the file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("cannot read {path}: {source}")]
    ReadFailed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds {value:?}, expected {expected}")]
    ParseFailed {
        path: PathBuf,
        value: String,
        expected: &'static str,
    },
}

pub type Result<T, E = SysfsError> = std::result::Result<T, E>;

/// Vendor, device and revision of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciId {
    /// `vendor`: 1002 for AMD graphics, 1022 for other AMD functions such as the NPU.
    pub vendor: u16,
    /// `device`: names the chip (1586 is Strix Halo's iGPU).
    pub device: u16,
    /// `revision`: tells NPU generations apart that share a device ID.
    pub revision: u8,
}

impl std::fmt::Display for PciId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:04x} rev {:02x}",
            self.vendor, self.device, self.revision
        )
    }
}

/// Reads one attribute file, trimmed.
pub fn read_attr(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| SysfsError::ReadFailed {
            path: path.to_path_buf(),
            source,
        })
}

fn parse_hex(path: &Path, value: &str, expected: &'static str) -> Result<u64> {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    u64::from_str_radix(digits, 16).map_err(|_| SysfsError::ParseFailed {
        path: path.to_path_buf(),
        value: value.to_string(),
        expected,
    })
}

fn read_hex<T: TryFrom<u64>>(path: &Path, expected: &'static str) -> Result<T> {
    let value = read_attr(path)?;
    let n = parse_hex(path, &value, expected)?;
    T::try_from(n).map_err(|_| SysfsError::ParseFailed {
        path: path.to_path_buf(),
        value,
        expected,
    })
}

/// `vendor`, `device` and `revision` of the PCI function at `dev_dir`.
pub fn pci_id(dev_dir: &Path) -> Result<PciId> {
    Ok(PciId {
        vendor: read_hex(&dev_dir.join("vendor"), "a 16-bit hex vendor ID")?,
        device: read_hex(&dev_dir.join("device"), "a 16-bit hex device ID")?,
        revision: read_hex(&dev_dir.join("revision"), "an 8-bit hex revision")?,
    })
}

/// The PCI class code (`0x030000` for a VGA controller), if readable.
pub fn pci_class(dev_dir: &Path) -> Result<u32> {
    read_hex(&dev_dir.join("class"), "a 24-bit hex class code")
}

/// Name of the driver bound to the device, from the `driver` symlink; `None` when unbound.
/// Only the link's own text is read, so a link whose target is not mounted still names it.
pub fn driver(dev_dir: &Path) -> Option<String> {
    let target = fs::read_link(dev_dir.join("driver")).ok()?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
}

/// The NUMA node of the device; `None` for `-1` (no affinity, as on every single-socket APU)
/// or an unreadable attribute.
pub fn numa_node(dev_dir: &Path) -> Option<i64> {
    read_attr(&dev_dir.join("numa_node"))
        .ok()?
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
}

/// A decimal byte counter such as amdgpu's `mem_info_gtt_total`; `None` when absent.
pub fn read_bytes(path: &Path) -> Result<Option<u64>> {
    match fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SysfsError::ReadFailed {
            path: path.to_path_buf(),
            source,
        }),
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| SysfsError::ParseFailed {
                path: path.to_path_buf(),
                value: s.trim().to_string(),
                expected: "a decimal byte count",
            }),
    }
}

/// Entries of `dir` whose names start with `prefix`, sorted the way a person numbers them
/// (`accel2` before `accel10`). A missing directory has no entries.
pub fn entries_with_prefix(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let read = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SysfsError::ReadFailed {
                path: dir.to_path_buf(),
                source,
            });
        }
        Ok(read) => read,
    };
    let mut out: Vec<(String, PathBuf)> = read
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            name.starts_with(prefix).then(|| (name, entry.path()))
        })
        .collect();
    out.sort_by_key(|(name, _)| natural_key(name));
    Ok(out)
}

fn natural_key(name: &str) -> (String, u64) {
    let digits_at = name
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let (stem, number) = name.split_at(digits_at);
    (stem.to_string(), number.parse().unwrap_or(u64::MAX))
}

/// Human size for log lines: `512 MiB`, `64.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values_with_and_without_prefix_parse() {
        let p = Path::new("x");
        assert_eq!(parse_hex(p, "0x1586", "id").ok(), Some(0x1586));
        assert_eq!(parse_hex(p, "17f0", "id").ok(), Some(0x17f0));
        assert!(parse_hex(p, "garbage", "id").is_err());
    }

    #[test]
    fn entries_sort_by_number_not_by_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["accel10", "accel2", "card0"] {
            fs::write(dir.path().join(name), "").expect("write");
        }
        let names: Vec<String> = entries_with_prefix(dir.path(), "accel")
            .expect("read")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["accel2", "accel10"]);
        assert!(
            entries_with_prefix(&dir.path().join("missing"), "x")
                .expect("missing is empty")
                .is_empty()
        );
    }

    #[test]
    fn byte_counts_render_for_people() {
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        assert_eq!(human_bytes(64 << 30), "64.0 GiB");
    }
}
