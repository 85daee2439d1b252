//! Replacing the config file without losing anyone's edit.
//!
//! A plain "check the revision, write a temp file, rename it over" has a gap: an edit by hand
//! (an editor's rename-save, a shell `>>`) that lands between the check and the rename is
//! overwritten silently. On Linux the rename is instead an atomic *exchange*
//! (`renameat2(RENAME_EXCHANGE)`): the new text goes in, and the file that was there comes out
//! under the temp name, so hal0 can see exactly what it replaced. If that is not the text the
//! edit was based on, someone edited the file in the gap: the two are exchanged back (their edit
//! is in place again) and the caller retries against it.
//!
//! Temp files are named `.<file>.hal0-tmp.<random>` and created with `O_EXCL`, so a leftover of
//! a killed process (or of a process that had the same PID, as PID 1 in a container always
//! has) can never collide; [`remove_leftovers`] deletes them when hal0 starts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The marker in hal0's temp file names (after `.<file>.`).
const TMP_MARK: &str = "hal0-tmp";

/// What a conditional replace did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    /// The file held `base` and now holds the new text.
    Done,
    /// The file no longer held `base` when it was replaced (an edit landed in the gap); the
    /// edit is back in place and nothing was changed.
    Raced,
}

/// Replaces `path` with `text` if it still holds `base`: temp file in the same directory,
/// fsync, atomic exchange (or rename where exchange is not supported), fsync of the directory.
/// A symlinked `path` has its target replaced, so the link stays.
pub fn replace_if_unchanged(path: &Path, base: &str, text: &str) -> std::io::Result<Replaced> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = parent_dir(&target);
    let (tmp, mut file) = create_temp(&target)?;
    let result = (|| {
        if let Ok(meta) = std::fs::metadata(&target) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        // A last look after the (slow) fsync: an edit that landed meanwhile is seen here and
        // never swapped out, so the window in which a reader could see our version in place
        // of a newer one shrinks from the fsync to the microseconds before the exchange.
        if read_to_string(&target)? != base {
            return Ok(Replaced::Raced);
        }
        let outcome = match exchange(&tmp, &target) {
            Ok(()) => after_exchange(&tmp, &target, base, text)?,
            Err(e) if exchange_unsupported(&e) => {
                // No exchange on this filesystem: rename right after the last look above (a
                // narrow gap stays).
                std::fs::rename(&tmp, &target)?;
                Replaced::Done
            }
            Err(e) => return Err(e),
        };
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(outcome)
    })();
    // After a successful exchange the temp name holds the old file; it is not needed any more.
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The exchange happened: `tmp` holds what was at `target`. If that is not `base`, put it back.
///
/// A writer that opened the file before the exchange (a shell's `>>`) may still write to it
/// under its new name, so the comparison waits until no other process has it open.
fn after_exchange(tmp: &Path, target: &Path, base: &str, text: &str) -> std::io::Result<Replaced> {
    // A race shows at once in most cases: put the other edit back without delay, so that the
    // moment our version stands in its place is as short as can be.
    let mut raced = read_to_string(tmp)? != base;
    if !raced {
        wait_until_closed(tmp);
        raced = read_to_string(tmp)? != base;
    }
    if !raced {
        return Ok(Replaced::Done);
    }
    exchange(tmp, target)?;
    // `tmp` holds our text again, unless someone wrote to it in the moment it was in place:
    // an append is carried over to the file; anything else is kept beside it.
    wait_until_closed(tmp);
    let ours = read_to_string(tmp)?;
    if ours != text {
        match ours.strip_prefix(text) {
            Some(appended) => {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(target)?
                    .write_all(appended.as_bytes())?;
            }
            None => {
                let keep = sibling(target, &format!("conflict-{}", random_hex()));
                std::fs::rename(tmp, &keep)?;
                tracing::warn!(
                    "{}: two edits raced with a write by hal0; one version is kept as {}",
                    target.display(),
                    keep.display()
                );
            }
        }
    }
    Ok(Replaced::Raced)
}

/// How long a replace waits for other processes to close the file it displaced.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits (at most [`CLOSE_WAIT`]) until no other process has `path` open, as `/proc/*/fd`
/// shows. Where `/proc` cannot be read this returns at once.
fn wait_until_closed(path: &Path) {
    let deadline = std::time::Instant::now() + CLOSE_WAIT;
    while open_elsewhere(path) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn open_elsewhere(path: &Path) -> bool {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let name = p.file_name();
        let pid = name.to_string_lossy();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            return false;
        };
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
    })
}

/// Writes `text` to `path` atomically with no condition (a new file, or `hal0 slot add` on a
/// file it has just read under the same lock).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = parent_dir(&target);
    let (tmp, mut file) = create_temp(&target)?;
    let result = (|| {
        if let Ok(meta) = std::fs::metadata(&target) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Deletes temp files an earlier process left next to `path` (this version's
/// `.<file>.hal0-tmp.*` and the older `.<file>.<pid>.<n>.tmp`). Returns how many.
pub fn remove_leftovers(path: &Path) -> usize {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(parent_dir(&target)) else {
        return 0;
    };
    let prefix = format!(".{name}.");
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        if (is_ours(rest) || is_old_style(rest)) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn is_ours(rest: &str) -> bool {
    rest.strip_prefix(TMP_MARK)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `<pid>.<n>.tmp`, the names of hal0 versions before this one.
fn is_old_style(rest: &str) -> bool {
    let mut parts = rest.split('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next())
        && digits(parts.next())
        && parts.next() == Some("tmp")
        && parts.next().is_none()
}

fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<file>.<what>` next to `target`.
fn sibling(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "hal0.toml".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(target).join(format!(".{name}.{what}"))
}

/// A new temp file beside `target`, under a random name created exclusively (a name that
/// exists is never reused; another is drawn).
fn create_temp(target: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = sibling(target, &format!("{TMP_MARK}.{}", random_hex()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot create a temp file")))
}

/// 16 random hex digits: from the kernel's random source, else from std's randomly keyed hasher.
fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_kernel {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        bytes = h.finish().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_to_string(p: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(p)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// The filesystem (or kernel) cannot exchange: fall back to a checked rename.
fn exchange_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(e.raw_os_error(), Some(code) if code == nix::libc::EINVAL || code == nix::libc::ENOSYS || code == nix::libc::EOPNOTSUPP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replace_on_an_unchanged_file_writes_it_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hal0.toml");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert_eq!(
            replace_if_unchanged(&p, "a = 1\n", "a = 2\n").unwrap(),
            Replaced::Done
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_replace_on_a_file_edited_since_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hal0.toml");
        std::fs::write(&p, "a = 1\n# mine\n").unwrap();
        assert_eq!(
            replace_if_unchanged(&p, "a = 1\n", "a = 2\n").unwrap(),
            Replaced::Raced
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 1\n# mine\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_of_any_process_are_removed_and_other_files_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hal0.toml");
        for f in [
            "hal0.toml",
            ".hal0.toml.1.0.tmp",
            ".hal0.toml.4242.17.tmp",
            ".hal0.toml.hal0-tmp.0123456789abcdef",
            ".hal0.toml.swp",
            ".other.toml.1.0.tmp",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        assert_eq!(remove_leftovers(&p), 3);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".hal0.toml.swp",
                ".other.toml.1.0.tmp",
                "hal0.toml",
                "notes.txt"
            ]
        );
    }

    #[test]
    fn temp_names_never_repeat() {
        let names: std::collections::BTreeSet<String> = (0..1000).map(|_| random_hex()).collect();
        assert_eq!(names.len(), 1000);
    }
}
