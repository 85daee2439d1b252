//! The sysfs/dev fixture trees under tests/fixtures/sysfs (see make-fixtures.sh there), and
//! writable copies of them for tests that change a node under a running plugin.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fixture node: `<node>/sys` and `<node>/dev`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

/// Copies a fixture node (files, directories and symlinks as they are).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("readlink");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A writable copy of a fixture node; the TempDir keeps it alive.
pub fn mutable_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join(name);
    copy_tree(&fixture(name), &node);
    (dir, node)
}
