//! The disk side of a download, off tokio's workers: the part file is opened, (when resuming)
//! re-hashed, appended to, hashed and fsynced on one blocking thread, fed through a small
//! bounded channel. A multi-GB write, its SHA-256 and the final fsync never stall the gateway
//! or the API sharing the runtime; the channel's bound keeps the network from running ahead of
//! the disk by more than a few chunks.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{PullError, Result, io};

/// Chunks in flight between the network and the disk (hyper's frames are up to ~16 KiB..1 MiB).
const IN_FLIGHT: usize = 16;

/// A part file being written by its own blocking thread.
pub(super) struct PartWriter {
    part: PathBuf,
    tx: Option<mpsc::Sender<Bytes>>,
    /// None once awaited (after the writer stopped early).
    done: Option<JoinHandle<Result<String>>>,
}

impl PartWriter {
    /// Opens `part` (appending when `resumed`, after hashing what is there; else truncating).
    pub(super) fn start(part: PathBuf, resumed: bool) -> Self {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let path = part.clone();
        let done = tokio::task::spawn_blocking(move || write_part(&path, resumed, rx));
        PartWriter {
            part,
            tx: Some(tx),
            done: Some(done),
        }
    }

    /// Queues `data`; waits while the disk is behind. An error is the writer's own.
    pub(super) async fn write(&mut self, data: Bytes) -> Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(data).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped early: its error says why.
        self.tx = None;
        match self.done.take() {
            Some(done) => match done.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) | Err(_) => Err(writer_gone(&self.part)),
            },
            None => Err(writer_gone(&self.part)),
        }
    }

    /// Closes the channel, waits until everything queued is written and fsynced; the
    /// SHA-256 (hex) of the whole part file.
    pub(super) async fn finish(mut self) -> Result<String> {
        self.tx = None;
        match self.done.take() {
            Some(done) => done.await.unwrap_or_else(|_| Err(writer_gone(&self.part))),
            None => Err(writer_gone(&self.part)),
        }
    }
}

fn writer_gone(part: &Path) -> PullError {
    PullError::Io {
        path: part.to_path_buf(),
        source: std::io::Error::other("the download's writer thread stopped"),
    }
}

fn write_part(part: &Path, resumed: bool, mut rx: mpsc::Receiver<Bytes>) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed)
        .open(part)
        .map_err(io(part))?;
    if resumed {
        hash_file(part, &mut hasher)?;
    }
    while let Some(data) = rx.blocking_recv() {
        out.write_all(&data).map_err(io(part))?;
        hasher.update(&data);
    }
    out.sync_all().map_err(io(part))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn hash_file(path: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// Renames the finished part into place and fsyncs the directory, on a blocking thread.
pub(super) async fn commit(part: PathBuf, dest: PathBuf) -> Result<()> {
    let named = dest.clone();
    let joined = tokio::task::spawn_blocking(move || {
        std::fs::rename(&part, &dest).map_err(io(&dest))?;
        if let Some(dir) = dest.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    })
    .await;
    joined.unwrap_or_else(|_| Err(writer_gone(&named)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resumed_part_is_hashed_whole_and_appended_to() {
        let dir = std::env::temp_dir().join(format!("hal0-part-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let part = dir.join("m.gguf.part");
        std::fs::write(&part, b"hello ").expect("first half");
        let mut w = PartWriter::start(part.clone(), true);
        w.write(Bytes::from_static(b"world")).await.expect("write");
        let sha = w.finish().await.expect("finish");
        assert_eq!(std::fs::read(&part).expect("read"), b"hello world");
        let want: String = Sha256::digest(b"hello world")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, want);

        let mut w = PartWriter::start(part.clone(), false);
        w.write(Bytes::from_static(b"new")).await.expect("write");
        w.finish().await.expect("finish");
        assert_eq!(std::fs::read(&part).expect("read"), b"new");

        let dest = dir.join("m.gguf");
        commit(part.clone(), dest.clone()).await.expect("commit");
        assert!(dest.is_file() && !part.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_part_that_cannot_be_opened_is_an_error_naming_it() {
        let part = PathBuf::from("/proc/hal0-no-such-dir/m.part");
        let mut w = PartWriter::start(part, false);
        let first = w.write(Bytes::from_static(b"x")).await;
        let err = match first {
            Err(e) => e,
            Ok(()) => w.finish().await.expect_err("the open fails"),
        };
        assert!(
            err.to_string().contains("/proc/hal0-no-such-dir/m.part"),
            "{err}"
        );
    }
}
