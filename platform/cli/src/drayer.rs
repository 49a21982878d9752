//! `keyway drayer …`: Drayer stream files — create, read, write, verify,
//! serve over HTTP and mirror from a peer.
//!
//! Values of type `obj` (the default) follow the original's dict API: the
//! value is the msgpack of the string given (so the original reads it
//! back as a str); `--raw` stores and prints bytes as given. `get` exits 2
//! when the record is absent, 1 on any other failure.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use keyway_drayer::http::{DeadlineListener, HttpSource, Limits, router_with, serve};
use keyway_drayer::sync::{PullLimits, pull_newest_with, pull_with};
use keyway_drayer::{Stream, file_record, parse_public_key};
use serde_json::json;

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a stream file and its .privatekey; print the public key (base64).
    New { path: PathBuf },
    /// Set KEY to VALUE.
    Set {
        path: PathBuf,
        key: String,
        value: String,
        #[arg(long = "type", default_value = "obj")]
        kind: String,
        /// Store VALUE's bytes as given instead of as a msgpack string.
        #[arg(long)]
        raw: bool,
    },
    /// Print KEY's value (exit 2 if absent).
    Get {
        path: PathBuf,
        key: String,
        #[arg(long = "type", default_value = "obj")]
        kind: String,
        /// Print the stored bytes, without decoding an `obj` value.
        #[arg(long)]
        raw: bool,
    },
    /// Delete KEY.
    Del {
        path: PathBuf,
        key: String,
        #[arg(long = "type", default_value = "obj")]
        kind: String,
    },
    /// List records (by id).
    Ls {
        path: PathBuf,
        #[arg(long = "type")]
        kind: Option<String>,
        /// One JSON object per record: id, type, key, modified, value_hex.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's signature and hash and both chains.
    Verify { path: PathBuf },
    /// Serve streams over HTTP (the original's sync API).
    Serve {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:33125")]
        listen: SocketAddr,
        /// Also take part in DrayerUDP LAN discovery (224.7.130.8:15723):
        /// answer peers asking for these streams, and pull from peers that
        /// announce newer records.
        #[arg(long)]
        lan: bool,
        /// Also announce each stream on BitTorrent's Mainline DHT with this
        /// server's HTTP port, again every 15 minutes (issue 17).
        #[arg(long)]
        dht: bool,
        /// DHT node to join through (HOST:PORT, repeatable; default: the
        /// public Mainline bootstrap nodes).
        #[arg(long, value_name = "HOST:PORT", requires = "dht")]
        dht_bootstrap: Vec<String>,
        /// Connections open at once from one source address (IPv6: one
        /// /64); behind a reverse proxy every client shares its address.
        #[arg(long, default_value_t = Limits::default().max_per_source)]
        max_per_source: usize,
        /// Connections open at once in all.
        #[arg(long, default_value_t = Limits::default().max_connections)]
        max_connections: usize,
    },
    /// Clone (PATH absent, with --pubkey) or update a mirror from a server,
    /// or from a node over a secure link (--via).
    Sync {
        path: PathBuf,
        /// The server's base URL, e.g. http://host:33125/ (default: the
        /// stream's primary servers, in turn, until one answers).
        #[arg(long, conflicts_with_all = ["dht", "via"])]
        from: Option<String>,
        /// Find servers of the stream on BitTorrent's Mainline DHT and pull
        /// from the first that answers (at most 16 tried).
        #[arg(long, conflicts_with = "via")]
        dht: bool,
        /// DHT node to join through (HOST:PORT, repeatable; default: the
        /// public Mainline bootstrap nodes).
        #[arg(long, value_name = "HOST:PORT", requires = "dht")]
        dht_bootstrap: Vec<String>,
        /// Pull over a secure link from the node PUBKEY@HOST:PORT (it must
        /// serve the stream and grant this identity sync:KEY or sync:*).
        #[arg(long, value_name = "PUBKEY@HOST:PORT", requires_all = ["identity", "network_key"])]
        via: Option<keyway_link::PeerAddress>,
        /// With --via: this node's identity file.
        #[arg(long, requires = "via")]
        identity: Option<PathBuf>,
        /// With --via: the network key file.
        #[arg(long, requires = "via")]
        network_key: Option<PathBuf>,
        #[command(flatten)]
        password: crate::identity::PasswordArgs,
        /// The stream's public key (base64); needed to clone.
        #[arg(long)]
        pubkey: Option<String>,
        /// Keep record metadata only (values are left out; signatures
        /// still verify from the hashes).
        #[arg(long)]
        metadata_only: bool,
        /// Mirror only the N most recent records (needs a Keyway server
        /// for the first sync).
        #[arg(long, value_name = "N")]
        newest: Option<usize>,
        /// Stop the pull after this many seconds (what it applied is kept;
        /// the next sync goes on from there). With --dht, for all the peers
        /// tried together, so hostile peers cannot stretch it 16-fold.
        #[arg(long, value_name = "SECONDS", default_value_t = PullLimits::DEFAULT_MAX_TIME.as_secs())]
        max_seconds: u64,
        /// Stop the pull after receiving this many MiB of records.
        #[arg(long, value_name = "MIB", default_value_t = PullLimits::DEFAULT_MAX_BYTES >> 20)]
        max_mib: u64,
    },
    /// Print the stream's primary servers, or set them to URL….
    Primary { path: PathBuf, urls: Vec<String> },
    /// Import every file under DIR as `file` records (unchanged files skipped).
    ImportDir { path: PathBuf, dir: PathBuf },
    /// Write every `file` record into DIR (unchanged files skipped).
    ExportDir { path: PathBuf, dir: PathBuf },
    /// Set KEY to VALUE for each `KEY<TAB>VALUE` line on stdin, one write
    /// (one durable commit) at a time; print each KEY once its write is on
    /// disk.
    SetLines {
        path: PathBuf,
        #[arg(long = "type", default_value = "obj")]
        kind: String,
        /// Store each VALUE's bytes as given instead of as a msgpack string.
        #[arg(long)]
        raw: bool,
    },
}

pub(crate) fn run(command: Command) -> ExitCode {
    match dispatch(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open(path: &Path) -> Result<Stream> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(Stream::open(path)?)
}

fn open_read_only(path: &Path) -> Result<Stream> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(Stream::open_read_only(path)?)
}

/// Pulls `stream` from the node at `via` over a secure link, verifying
/// every record as over HTTP (the same pull, another [`Source`]).
///
/// [`Source`]: keyway_drayer::sync::Source
fn sync_via(
    stream: &mut Stream,
    via: &keyway_link::PeerAddress,
    identity: &Path,
    network_key: &Path,
    password: &crate::identity::PasswordArgs,
    limits: &PullLimits,
) -> Result<ExitCode> {
    use std::sync::Arc;

    use keyway_core::link::AllowList;
    use keyway_link::connection::NoService;
    use keyway_link::dial::{dial, with_retries};
    use keyway_link::stream_sync::LinkSource;

    // A mirror serves nothing over this link: its allow-list is empty.
    let config = Arc::new(crate::node::load_config(
        identity,
        network_key,
        password,
        AllowList::new(),
    )?);
    let runtime = tokio::runtime::Runtime::new()?;
    let link = runtime
        .block_on(with_retries(DIAL_TIMEOUT, |left| {
            dial(config.clone(), via, Arc::new(NoService), left)
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut source = LinkSource::new(link, *stream.public_key());
    let pulled = runtime
        .block_on(pull_with(stream, &mut source, limits))
        .map_err(|e| anyhow::anyhow!("{via}: {e}"))?;
    println!(
        "{} new records, {} repairs, {} records held",
        pulled.inserted,
        pulled.repairs,
        stream.count()?
    );
    Ok(ExitCode::SUCCESS)
}

/// How long `sync --via` tries to reach the node.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::New { path } => {
            let stream = Stream::create(&path)?;
            println!("{}", stream.public_key_base64());
        }
        Command::Set {
            path,
            key,
            value,
            kind,
            raw,
        } => {
            let bytes = if raw || kind != "obj" {
                value.into_bytes()
            } else {
                keyway_drayer::obj::encode_str(&value)
            };
            open(&path)?.set(&key, &kind, &bytes)?;
        }
        Command::Get {
            path,
            key,
            kind,
            raw,
        } => {
            let Some(value) = open_read_only(&path)?.get(&key, &kind)? else {
                eprintln!("keyway: no {kind} record {key:?}");
                return Ok(ExitCode::from(2));
            };
            let shown = if !raw && kind == "obj" {
                keyway_drayer::obj::decode_bytes(&value).unwrap_or(&value)
            } else {
                &value
            };
            let mut out = std::io::stdout().lock();
            out.write_all(shown)?;
            out.flush()?;
        }
        Command::Del { path, key, kind } => open(&path)?.delete(&key, &kind)?,
        Command::Ls { path, kind, json } => {
            let stream = open_read_only(&path)?;
            let mut out = std::io::stdout().lock();
            for e in stream.list(kind.as_deref())? {
                if json {
                    let value_hex = e.value.as_deref().map(base16ct::lower::encode_string);
                    let line = json!({
                        "id": e.id, "type": e.kind, "key": e.key,
                        "modified": e.modified, "value_hex": value_hex,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    let size = e
                        .value
                        .as_ref()
                        .map_or("-".to_owned(), |v| v.len().to_string());
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{size}",
                        e.id, e.kind, e.key, e.modified
                    )?;
                }
            }
        }
        Command::Verify { path } => {
            let report = open_read_only(&path)?.verify()?;
            println!("{} records", report.records);
            if !report.problems.is_empty() {
                for problem in &report.problems {
                    eprintln!("{problem}");
                }
                bail!("{} problems in {}", report.problems.len(), path.display());
            }
        }
        Command::Serve {
            paths,
            listen,
            lan,
            dht,
            dht_bootstrap,
            max_per_source,
            max_connections,
        } => {
            let streams = paths
                .iter()
                .map(|p| open(p).with_context(|| p.display().to_string()))
                .collect::<Result<Vec<_>>>()?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let bound = listener.local_addr()?;
                println!("listening={bound}");
                std::io::stdout().flush()?;
                if lan {
                    let config = keyway_drayer::discovery::DiscoveryConfig {
                        http_port: bound.port(),
                        ..Default::default()
                    };
                    let node = keyway_drayer::discovery::Discovery::bind(config, &paths)
                        .context("joining the DrayerUDP group")?;
                    node.announce().await.context("announcing on the LAN")?;
                    tokio::spawn(node.run());
                }
                if dht {
                    let keys = streams
                        .iter()
                        .map(|s| (*s.public_key().as_bytes(), s.public_key_base64()))
                        .collect();
                    announce_on_dht(&dht_bootstrap, keys, bound.port())?;
                }
                let limits = Limits {
                    max_per_source,
                    max_connections,
                    ..Limits::default()
                };
                let listener = DeadlineListener::with_limits(listener, &limits);
                tokio::select! {
                    served = serve(listener, router_with(streams, limits)) => served?,
                    _ = tokio::signal::ctrl_c() => {}
                }
                anyhow::Ok(())
            })?;
        }
        Command::Sync {
            path,
            from,
            dht,
            dht_bootstrap,
            via,
            identity,
            network_key,
            password,
            pubkey,
            metadata_only,
            newest,
            max_seconds,
            max_mib,
        } => {
            let mut limits = PullLimits {
                max_time: std::time::Duration::from_secs(max_seconds),
                max_bytes: max_mib.saturating_mul(1 << 20),
            };
            let mut stream = match (&pubkey, path.exists()) {
                (Some(pk), _) => Stream::mirror(&path, parse_public_key(pk)?)?,
                (None, true) => Stream::open(&path)?,
                (None, false) => bail!(
                    "{} does not exist: give --pubkey to clone the stream",
                    path.display()
                ),
            };
            if let (Some(via), Some(identity), Some(network_key)) = (via, identity, network_key) {
                if metadata_only || newest.is_some() {
                    bail!("--via pulls whole mirrors: --metadata-only and --newest need --from");
                }
                return sync_via(
                    &mut stream,
                    &via,
                    &identity,
                    &network_key,
                    &password,
                    &limits,
                );
            }
            let urls = match from {
                _ if dht => find_on_dht(&dht_bootstrap, stream.public_key().as_bytes())?,
                Some(url) => vec![url],
                None => {
                    let urls: Vec<String> = stream
                        .primary_servers()?
                        .into_iter()
                        .filter(|s| s.kind == "http")
                        .map(|s| s.url)
                        .collect();
                    if urls.is_empty() {
                        bail!("no --from given and the stream names no http primary server");
                    }
                    urls
                }
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let mut last_error = None;
            let deadline = std::time::Instant::now() + limits.max_time;
            for url in &urls {
                if dht {
                    limits.max_time = deadline.saturating_duration_since(std::time::Instant::now());
                    if limits.max_time.is_zero() {
                        eprintln!("keyway: --max-seconds spent; {url} and later peers not tried");
                        break;
                    }
                }
                let mut source = HttpSource::new(url, *stream.public_key());
                if metadata_only {
                    source = source.without_values();
                }
                let pulled = match newest {
                    Some(keep) => {
                        runtime.block_on(pull_newest_with(&mut stream, &mut source, keep, &limits))
                    }
                    None => runtime.block_on(pull_with(&mut stream, &mut source, &limits)),
                };
                match pulled {
                    Ok(pulled) => {
                        println!(
                            "{} new records, {} repairs, {} records held",
                            pulled.inserted,
                            pulled.repairs,
                            stream.count()?
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => {
                        eprintln!("keyway: {url}: {e}");
                        last_error = Some(e);
                    }
                }
            }
            if let Some(e) = last_error {
                return Err(e.into());
            }
            bail!("no server tried within --max-seconds");
        }
        Command::Primary { path, urls } => {
            if urls.is_empty() {
                for server in open_read_only(&path)?.primary_servers()? {
                    println!("{}\t{}", server.kind, server.url);
                }
            } else {
                let servers: Vec<_> = urls
                    .into_iter()
                    .map(|url| keyway_drayer::primary_servers::PrimaryServer {
                        kind: "http".into(),
                        url: if url.ends_with('/') {
                            url
                        } else {
                            format!("{url}/")
                        },
                        udp: None,
                    })
                    .collect();
                open(&path)?.set_primary_servers(&servers)?;
            }
        }
        Command::ImportDir { path, dir } => {
            let report = file_record::import_dir(&mut open(&path)?, &dir)?;
            println!(
                "{} added, {} updated, {} unchanged",
                report.added, report.updated, report.unchanged
            );
            for skipped in report.skipped {
                eprintln!("skipped {skipped}");
            }
        }
        Command::SetLines { path, kind, raw } => {
            let mut stream = open(&path)?;
            let mut out = std::io::stdout().lock();
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let Some((key, value)) = line.split_once('\t') else {
                    bail!("{line:?}: expected KEY<TAB>VALUE");
                };
                let bytes = if raw || kind != "obj" {
                    value.as_bytes().to_vec()
                } else {
                    keyway_drayer::obj::encode_str(value)
                };
                stream.set(key, &kind, &bytes)?;
                writeln!(out, "{key}")?;
                out.flush()?;
            }
        }
        Command::ExportDir { path, dir } => {
            let report = file_record::export_dir(&open_read_only(&path)?, &dir)?;
            println!("{} written, {} unchanged", report.added, report.unchanged);
            for skipped in report.skipped {
                eprintln!("skipped unsafe key {skipped:?}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve --dht`: a DHT node of this process announces every served stream
/// with the HTTP port and prints `dht_announced=<base64 key>` once each
/// stream's first announcement is stored; failures go to stderr and are
/// retried (`keyway_drayer::dht::RETRY_INTERVAL`).
pub(crate) fn announce_on_dht(
    bootstrap: &[String],
    keys: std::collections::HashMap<[u8; 32], String>,
    http_port: u16,
) -> Result<()> {
    let node = keyway_drayer::dht::DhtNode::start(bootstrap)?;
    let mut announced = std::collections::HashSet::new();
    let raw = keys.keys().copied().collect();
    tokio::spawn(node.keep_announced(raw, http_port, move |key, outcome| {
        let key = keys.get(key).map_or("?", String::as_str);
        match outcome {
            Ok(()) => {
                if announced.insert(key.to_owned()) {
                    println!("dht_announced={key}");
                    let _ = std::io::stdout().flush();
                }
            }
            Err(e) => eprintln!("keyway: {key}: {e}"),
        }
    }));
    Ok(())
}

/// `sync --dht`: the HTTP servers announced for the stream, at most
/// `MAX_PEERS`, found within `QUERY_TIME`. What they serve verifies like
/// any other source's.
fn find_on_dht(bootstrap: &[String], public_key: &[u8; 32]) -> Result<Vec<String>> {
    use keyway_drayer::dht::{DhtNode, MAX_PEERS, QUERY_TIME};
    let runtime = tokio::runtime::Runtime::new()?;
    let node = DhtNode::start(bootstrap)?;
    let peers = runtime.block_on(node.find(public_key, MAX_PEERS, QUERY_TIME));
    if peers.is_empty() {
        bail!("no server of this stream found on the DHT");
    }
    Ok(peers.iter().map(|p| format!("http://{p}/")).collect())
}
