//! `keyway identity …` and `keyway netkey …`: a node's password-sealed
//! identity file and its network key (issue 16).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keyway_link::identity_file::{self, NodeSecrets, UnlockedIdentity};
use keyway_link::network_key::NetworkKey;
use keyway_link::password::{self, Prompt};
use keyway_link::sealing_key::KdfParams;

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Create an identity file (secp256k1 identity and Noise static key,
    /// sealed under a password) and print `node_pk=<66 hex>`.
    New {
        /// Where to write it. An existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Unlock an identity file and print `node_pk=<66 hex>`.
    Show {
        file: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NetkeyCommand {
    /// Write a new random 32-byte network key (hex, mode 0600).
    New {
        /// Where to write it. An existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the identity file's password comes from. Never an argument: any
/// local user can read a process's command line.
#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// Read the password from this file (a trailing newline is ignored).
    /// Without it: the KEYWAY_PASSWORD environment variable, else a prompt
    /// on the terminal.
    #[arg(long, value_name = "F")]
    pub(crate) password_file: Option<PathBuf>,
}

impl PasswordArgs {
    fn read(&self, what: &Path, prompt: Prompt) -> Result<zeroize::Zeroizing<String>> {
        Ok(password::read(
            self.password_file.as_deref(),
            &what.display().to_string(),
            prompt,
        )?)
    }

    /// Unlocks the identity file at `path`.
    pub(crate) fn unlock(&self, path: &Path) -> Result<UnlockedIdentity> {
        let password = self.read(path, Prompt::Once)?;
        Ok(identity_file::unlock(path, password.as_bytes())?)
    }
}

pub(crate) fn run_identity(command: IdentityCommand) -> Result<()> {
    match command {
        IdentityCommand::New { out, password } => {
            let pw = password.read(&out, Prompt::Confirm)?;
            let created = identity_file::create(
                &out,
                pw.as_bytes(),
                KdfParams::DEFAULT,
                NodeSecrets::generate(),
            )?;
            println!("node_pk={}", created.secrets.public_key());
        }
        IdentityCommand::Show { file, password } => {
            let unlocked = password.unlock(&file)?;
            println!("node_pk={}", unlocked.secrets.public_key());
        }
    }
    Ok(())
}

pub(crate) fn run_netkey(command: NetkeyCommand) -> Result<()> {
    match command {
        NetkeyCommand::New { out } => NetworkKey::generate()
            .write_new(&out)
            .with_context(|| "cannot write the network key".to_owned())?,
    }
    Ok(())
}
