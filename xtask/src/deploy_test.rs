//! `cargo xtask deploy-test`.

use anyhow::Result;

use crate::setup::BuildEnv;

pub fn run(env: &BuildEnv) -> Result<()> {
    let release = crate::dist::dist(env)?;
    crate::image::build(&release.binary)?;
    Ok(())
}
