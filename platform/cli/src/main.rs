//! `keyway`: one binary for every Keyway tool.

mod demo;
mod drayer;
mod identity;
mod keyfile;
mod namebump;
mod node;
mod registry;
mod registry_client;
mod serve_config;
mod sidewire;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A server request allocates a few dozen small buffers on its way through
/// the database driver; glibc's allocator spent ~3 % of the namebump
/// server's CPU per PUT on them, mimalloc ~1 % (issue 12, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "keyway",
    version,
    about = "Keyway: the Warpgate peer stack. A keypair is the account."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new secp256k1 private key (hex, mode 0600) and print its public key.
    Keygen {
        /// Where to write the key. An existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the compressed public key (hex) of a key file.
    Pubkey {
        #[arg(long)]
        key: PathBuf,
    },
    /// Run namebump, Drayer and sidewire on loopback in a temporary
    /// directory, printing each step with its timing.
    Demo {
        /// Instead, walk through one namebump PUT in memory: keygen, build,
        /// sign, encrypt, decrypt, verify, tamper.
        #[arg(long)]
        packet: bool,
    },
    /// The namebump name registry: run a server, or use one.
    #[command(subcommand)]
    Namebump(namebump::Command),
    /// sidewire signalling: signed messages to a public key over MQTT brokers.
    #[command(subcommand)]
    Sidewire(sidewire::Command),
    /// Drayer streams: signed, mutable record chains in SQLite files, synced over HTTP.
    #[command(subcommand)]
    Drayer(drayer::Command),
    /// A node's identity file: its secret keys sealed under a password.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// A network key: the secret every node of one network shares.
    #[command(subcommand)]
    Netkey(identity::NetkeyCommand),
    /// A node on secure links: run one, or send it a message.
    #[command(subcommand)]
    Node(node::Command),
    /// The name registry: run a server, or use one (issue 17).
    #[command(subcommand)]
    Registry(registry::Command),
}

fn main() -> ExitCode {
    // Kept beside the parsed form: `namebump serve` asks it which options
    // came from the command line, to let them beat `--config` (issue 12).
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    let result = match cli.command {
        Command::Keygen { out } => keyfile::generate(&out).map(|pk| println!("{pk}")),
        Command::Pubkey { key } => keyfile::load(&key).map(|kp| println!("{}", kp.public())),
        Command::Demo { packet: true } => demo::packet::run(&mut std::io::stdout().lock()),
        Command::Demo { packet: false } => demo::run(&mut std::io::stdout().lock()),
        Command::Namebump(command) => {
            let Some(namebump) = matches.subcommand_matches("namebump") else {
                eprintln!("keyway: the namebump options were not parsed");
                return ExitCode::FAILURE;
            };
            return namebump::run(command, namebump);
        }
        Command::Sidewire(command) => return sidewire::run(command),
        Command::Drayer(command) => return drayer::run(command),
        Command::Identity(command) => identity::run_identity(command),
        Command::Netkey(command) => identity::run_netkey(command),
        Command::Node(command) => return node::run(command),
        Command::Registry(command) => return registry::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
