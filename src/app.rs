//! Composition root for `hal0 serve`. (In progress.)

use std::path::PathBuf;

pub async fn serve(_config: PathBuf) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
