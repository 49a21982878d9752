//! `keyway registry client|register|delete|lookup|list`: the registry's
//! client (issue 17; the lines on standard output are a contract other
//! checks drive). The REPL reads one command per line and prints exactly
//! the lines of its answer — no prompt, banner or echo; reasons for
//! failures go to standard error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use keyway_core::link::AllowList;
use keyway_core::registry::MAX_WAIT_MS;
use keyway_link::PeerAddress;
use keyway_registry::client::{Client, ClientOptions, Reply};
use tokio::sync::mpsc;

use crate::identity::PasswordArgs;
use crate::node::load_config;

/// How often the REPL pulls what others wrote when the server cannot tell
/// it when to (an older server, or the waiting request failed).
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How long the REPL asks the server to hold its waiting request (the
/// server's cap, keyway-core's `registry::MAX_WAIT_MS`).
const FOLLOW_WAIT: Duration = Duration::from_millis(MAX_WAIT_MS as u64);
/// Longest pause between pulls while they keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Commands read ahead of the one being answered.
const COMMAND_QUEUE: usize = 64;

/// What every client command needs.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// This client's identity file: the owner of what it registers.
    #[arg(long)]
    identity: PathBuf,
    /// The network key file.
    #[arg(long)]
    network_key: PathBuf,
    /// The registry server, PUBKEY@HOST:PORT (its node_pk and address).
    #[arg(long, value_name = "PUBKEY@HOST:PORT")]
    server: PeerAddress,
    /// The replica's directory (created if missing; kept across runs).
    #[arg(long, value_name = "PATH")]
    replica: PathBuf,
    #[command(flatten)]
    password: PasswordArgs,
    /// Hold only the N most recently written names (a newest-N replica).
    #[arg(long, value_name = "N")]
    newest: Option<usize>,
    /// Pull the registry's stream from this Drayer HTTP mirror
    /// (http://HOST:PORT) instead of over the link; records are checked
    /// the same way.
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Seconds allowed to reach the server, and for the replica to hold a
    /// write's record.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Read commands from standard input, one per line: `register NAME`,
    /// `delete NAME`, `lookup NAME`, `list`, `exit`.
    Client(ClientArgs),
    /// Register NAME for this identity; print the server's reply.
    Register {
        name: String,
        #[command(flatten)]
        args: ClientArgs,
    },
    /// Delete NAME (its owner only); print the server's reply.
    Delete {
        name: String,
        #[command(flatten)]
        args: ClientArgs,
    },
    /// Print NAME's owner (66 hex) or NOT FOUND, after syncing the replica.
    Lookup {
        name: String,
        #[command(flatten)]
        args: ClientArgs,
    },
    /// Print every name, one per line, then END, after syncing the replica.
    List {
        #[command(flatten)]
        args: ClientArgs,
    },
}

/// Exit code of `NOT FOUND`.
const NOT_FOUND: u8 = 2;

pub(crate) fn run(command: Command) -> ExitCode {
    match dispatch(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    let (args, one) = match command {
        Command::Client(args) => (args, None),
        Command::Register { name, args } => (args, Some(One::Register(name))),
        Command::Delete { name, args } => (args, Some(One::Delete(name))),
        Command::Lookup { name, args } => (args, Some(One::Lookup(name))),
        Command::List { args } => (args, Some(One::List)),
    };
    // A client serves nothing: its allow-list is empty.
    let config = Arc::new(load_config(
        &args.identity,
        &args.network_key,
        &args.password,
        AllowList::new(),
    )?);
    let options = ClientOptions {
        keep: args.newest,
        timeout: Duration::from_secs(args.timeout),
        mirror: args.mirror,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = Client::open(config, args.server, &args.replica, options).await?;
        match one {
            Some(one) => run_one(&client, one).await,
            None => repl(Arc::new(client)).await.map(|()| ExitCode::SUCCESS),
        }
    })
}

/// One command, from the command line or a line of input.
#[derive(Debug)]
enum One {
    Register(String),
    Delete(String),
    Lookup(String),
    List,
}

async fn run_one(client: &Client, one: One) -> Result<ExitCode> {
    // A one-shot read first brings the replica up to the server.
    if matches!(one, One::Lookup(_) | One::List) {
        client.catch_up().await?;
    }
    let mut out = std::io::stdout().lock();
    let code = answer(client, one, &mut out).await?;
    out.flush()?;
    Ok(code)
}

/// Answers one command on `out`; the exit code it stands for.
async fn answer(client: &Client, one: One, out: &mut impl Write) -> Result<ExitCode> {
    let reply = |reply: Reply, out: &mut dyn Write| -> Result<ExitCode> {
        writeln!(out, "{}", reply.line)?;
        Ok(if reply.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    };
    match one {
        One::Register(name) => reply(client.register(&name).await?, out),
        One::Delete(name) => reply(client.delete(&name).await?, out),
        One::Lookup(name) => match client.lookup(&name).await? {
            Some(owner) => {
                writeln!(out, "{owner}")?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                writeln!(out, "NOT FOUND")?;
                Ok(ExitCode::from(NOT_FOUND))
            }
        },
        One::List => {
            for name in client.list().await? {
                writeln!(out, "{name}")?;
            }
            writeln!(out, "END")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads commands until `exit` or the end of input. Every command gets
/// its lines on standard output, even when it fails (then `ERR:` and the
/// reason, which also goes to standard error), so a driver reading one
/// answer per command never waits for ever.
async fn repl(client: Arc<Client>) -> Result<()> {
    if let Err(e) = client.sync().await {
        // The replica still answers what it holds.
        eprintln!("keyway: sync: {e}");
    }
    let follower = tokio::spawn(follow(client.clone()));
    let mut lines = read_stdin();
    let mut out = std::io::stdout();
    while let Some(line) = lines.recv().await {
        let line = line.trim();
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let name = rest.trim();
        let one = match (word, name.is_empty()) {
            ("", _) => continue,
            ("exit", true) => break,
            ("register", false) => One::Register(name.to_owned()),
            ("delete", false) => One::Delete(name.to_owned()),
            ("lookup", false) => One::Lookup(name.to_owned()),
            ("list", true) => One::List,
            _ => {
                writeln!(
                    out,
                    "ERR:Unknown command (expected register NAME, delete NAME, lookup NAME, list, exit)"
                )?;
                out.flush()?;
                continue;
            }
        };
        let mut buffer = Vec::new();
        if let Err(e) = answer(&client, one, &mut buffer).await {
            eprintln!("keyway: {e:#}");
            buffer.clear();
            writeln!(buffer, "ERR:{e:#}")?;
        }
        out.write_all(&buffer)?;
        out.flush()?;
    }
    follower.abort();
    Ok(())
}

/// Pulls what others write while the REPL runs: asks the server to answer
/// once its stream moves beyond the replica (a long poll) and pulls at
/// once; polls every [`FOLLOW_EVERY`] instead when the server answers
/// without waiting (an older one) or the wait fails, backing off while
/// pulls fail. A failure is reported on standard error once, until a sync
/// succeeds again.
async fn follow(client: Arc<Client>) {
    let mut failing = false;
    // The last pull fell short of what the server announced (a mirror
    // behind the server): the server would keep answering "moved" at once.
    let mut short = false;
    let mut pause = FOLLOW_EVERY;
    loop {
        let asked = tokio::time::Instant::now();
        let (moved, target) = match client.position().await {
            Ok(after) => match client.wait_beyond(after, FOLLOW_WAIT).await {
                Ok(position) => (position > after, position),
                Err(_) => (false, after),
            },
            Err(_) => (false, i64::MIN),
        };
        // A full wait that ended unchanged needs no pause: ask again. An
        // early unchanged answer, a failed wait, a failing or a short pull
        // must not spin.
        if failing || short || (!moved && asked.elapsed() < FOLLOW_WAIT / 2) {
            tokio::time::sleep(pause).await;
        }
        match client.sync().await {
            Ok(held) => {
                failing = false;
                short = moved && held < target;
                pause = FOLLOW_EVERY;
            }
            Err(e) => {
                if !failing {
                    eprintln!("keyway: sync: {e}");
                    failing = true;
                }
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Standard input's lines, read on a thread of their own (a blocking
/// read must not hold a runtime thread).
fn read_stdin() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}
