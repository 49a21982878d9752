//! `keyway namebump …`: serve, put, get, del, usage, bench.
//!
//! Exit codes: 0 success; 2 `get` found nothing; 1 any other failure, with
//! a one-line reason on stderr (and, with `--json`, an `{"error": …}`
//! object on stdout).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgMatches, Args, Subcommand, ValueEnum};
use keyway_core::PublicKey;
use keyway_core::rate::RateLimit;
use keyway_drayer::http::HttpSource;
use keyway_drayer::sync::pull;
use keyway_drayer::{Stream, parse_public_key};
use keyway_namebump::bench::{self, BenchConfig, BenchTransport};
use keyway_namebump::replica;
use keyway_namebump::{
    Behavior, Client, ClientConfig, ClientError, Record, Server, ServerConfig, SqlStore,
    SystemClock,
};
use serde_json::json;

use crate::keyfile;
use crate::serve_config::{self, MIN_CONNECTIONS, TCP_TIMEOUT_SECONDS};
use keyway_namebump::store::DEFAULT_DB_CONNECTIONS;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a server (TCP and UDP on every --listen address).
    Serve(ServeArgs),
    /// Claim or update NAME with VALUE, signed by --key.
    Put {
        name: String,
        value: String,
        #[command(flatten)]
        server: ServerArgs,
        /// The owner's key file.
        #[arg(long)]
        key: PathBuf,
        /// What to do when this address's quota is full.
        #[arg(long, value_enum, default_value_t = BehaviorArg::Bump)]
        behavior: BehaviorArg,
        /// Seconds the signed request stays valid (at most 60).
        #[arg(long, default_value_t = 10.0)]
        ttl: f64,
    },
    /// Print NAME's value bytes (exit 2 if there is none), from a server
    /// or, with --replica, from a local mirror of its published stream.
    Get {
        name: String,
        #[command(flatten)]
        target: GetTarget,
    },
    /// Bring a replica of a server's published names (`serve
    /// --publish-stream`) up to date from a Drayer HTTP server (`keyway
    /// drayer serve`): once, or continuously with --follow (Ctrl-C stops).
    Mirror {
        /// The replica's stream file (created if missing).
        path: PathBuf,
        /// The Drayer HTTP server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        from: String,
        /// The stream's public key (the stream_pk= the server printed).
        #[arg(long)]
        pubkey: String,
        /// Keep pulling until interrupted.
        #[arg(long)]
        follow: bool,
        /// Seconds between pulls with --follow.
        #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Delete NAME, signed by its owner's --key.
    Del {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 10.0)]
        ttl: f64,
    },
    /// Show this address's quota: names used and allowed.
    Usage {
        #[command(flatten)]
        server: ServerArgs,
        /// Any key: usage is per address, not per key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Drive a server with concurrent clients and report throughput and latency.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of these options, keyed by the flag's name with
    /// `_` for `-` (see platform/cli/examples/namebump-serve.toml); flags
    /// given here override it. Relative paths in the file (key, sqlite db)
    /// are resolved against the file's directory.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on, TCP and UDP (repeatable).
    #[arg(long = "listen", default_values = ["127.0.0.1:5300", "[::1]:5300"])]
    pub(crate) listen: Vec<SocketAddr>,
    /// sqlite:PATH, postgres://… or mysql://…
    #[arg(long, default_value = "sqlite:namebump.db")]
    pub(crate) db: String,
    /// The server's key file; created (mode 0600) on first start.
    #[arg(long, required_unless_present = "config")]
    pub(crate) key: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long)]
    pub(crate) metrics: Option<SocketAddr>,
    /// Requests per second allowed per source: an IPv4 address or an IPv6
    /// /64; all /64s of an IPv6 /48 share 10 times this (0 = unlimited).
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rate_limit: f64,
    /// Burst allowed per source (10 times this per IPv6 /48).
    #[arg(long, default_value_t = 40.0)]
    pub(crate) rate_burst: f64,
    /// Open TCP connections at most; when all are taken, a new source takes
    /// the oldest connection of the source holding the most.
    #[arg(long, default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_CONNECTIONS)..))]
    pub(crate) max_connections: u32,
    /// Open TCP connections per source address (IPv6: per /64; a /48 may
    /// hold 4 times this).
    #[arg(long, default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_CONNECTIONS)..))]
    pub(crate) max_connections_per_source: u32,
    /// Seconds a TCP request may take to arrive whole, from the accept or
    /// the previous reply.
    #[arg(long, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(TCP_TIMEOUT_SECONDS))]
    pub(crate) tcp_request_timeout: u64,
    /// Seconds a TCP peer has to take a reply before the connection is closed.
    #[arg(long, default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(TCP_TIMEOUT_SECONDS))]
    pub(crate) tcp_write_timeout: u64,
    /// Publish the names as a Drayer stream in this file (created with its
    /// key if missing; prints stream_pk=…): each record is a live name with
    /// its owner's signed PUT, so replicas check values themselves. `keyway
    /// drayer serve FILE` serves it. SQLite only (one process writes it).
    #[arg(long)]
    pub(crate) publish_stream: Option<PathBuf>,
    /// PostgreSQL or MariaDB connections this process opens at most (each
    /// write holds one for its transaction); all servers on one database
    /// together must stay under its connection limit. Unused for SQLite.
    #[arg(long, default_value_t = DEFAULT_DB_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_CONNECTIONS)..))]
    pub(crate) db_connections: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The server, HOST:PORT.
    #[arg(long)]
    server: String,
    /// The server's public key (66 hex digits).
    #[arg(long = "server-pk")]
    server_pk: PublicKey,
    /// Send from this local address.
    #[arg(long)]
    source: Option<std::net::IpAddr>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Where `get` looks: a server (--server, --server-pk) or a replica.
#[derive(Debug, Args)]
pub(crate) struct GetTarget {
    /// The server, HOST:PORT.
    #[arg(long, required_unless_present = "replica")]
    server: Option<String>,
    /// The server's public key (66 hex digits).
    #[arg(long = "server-pk", required_unless_present = "replica")]
    server_pk: Option<PublicKey>,
    /// Send from this local address.
    #[arg(long)]
    source: Option<std::net::IpAddr>,
    /// Answer from this replica (a `keyway namebump mirror` file) instead
    /// of a server, checking the owner's signature on the value.
    #[arg(long, conflicts_with_all = ["server", "server_pk", "source"])]
    replica: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Pull intervals from 0.1 s (a loopback follower) to a day.
fn parse_interval(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.1..=86_400.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{seconds} is not between 0.1 and 86400 seconds"))
    }
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// GET:PUT ratio, e.g. 9:1, 1:0 (GETs only) or 0:1.
    #[arg(long, default_value = "1:1")]
    mix: String,
    /// Every request claims a name never claimed before (the quota path),
    /// from source addresses across 127.0.0.0/8, 20 claims each; reported
    /// as claims/s. Needs a server on 127.0.0.0/8.
    #[arg(long, conflicts_with = "mix")]
    claims: bool,
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    transport: TransportArg,
    /// Per-request reply timeout, seconds.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Aim for this many requests per second in total (paced); by default
    /// each client sends as fast as replies come back.
    #[arg(long)]
    rate: Option<f64>,
    /// Sign and seal the requests before the clock starts and decrypt the
    /// UDP replies after it stops, so the generator costs the server's
    /// machine little more than its sends and receives. For a server that
    /// sends one reply per request (Keyway's, not the reference).
    #[arg(long)]
    precompute: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum BehaviorArg {
    Bump,
    DontBump,
    Throw,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum TransportArg {
    Udp,
    Tcp,
}

/// `matches`: the `namebump` subcommand's, where `serve` finds which
/// options were given on the command line (they beat `--config`).
pub(crate) fn run(command: Command, matches: &ArgMatches) -> ExitCode {
    let json = match &command {
        Command::Put { server, .. }
        | Command::Del { server, .. }
        | Command::Usage { server, .. } => server.json,
        Command::Get { target, .. } => target.json,
        Command::Bench(b) => b.server.json,
        Command::Serve(_) | Command::Mirror { .. } => false,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(command, matches)) {
        Ok(code) => code,
        Err(e) => {
            let reason = format!("{e:#}");
            eprintln!("keyway: {reason}");
            if json {
                let kind = e
                    .downcast_ref::<ClientError>()
                    .map(|e| e.kind().as_str())
                    .unwrap_or("error");
                println!("{}", json!({ "error": reason, "kind": kind }));
            }
            ExitCode::FAILURE
        }
    }
}

async fn client(args: &ServerArgs) -> Result<Client> {
    let config = ClientConfig {
        source: args.source,
        ..ClientConfig::default()
    };
    Ok(Client::new(&args.server, args.server_pk)
        .await?
        .with_config(config))
}

async fn dispatch(command: Command, matches: &ArgMatches) -> Result<ExitCode> {
    match command {
        Command::Serve(mut args) => {
            let serve_matches = matches
                .subcommand_matches("serve")
                .context("the serve options were not parsed")?;
            serve_config::apply(&mut args, serve_matches)?;
            serve(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Put {
            name,
            value,
            server,
            key,
            behavior,
            ttl,
        } => {
            let key = keyfile::load(&key)?;
            let behavior = match behavior {
                BehaviorArg::Bump => Behavior::Bump,
                BehaviorArg::DontBump => Behavior::DontBump,
                BehaviorArg::Throw => Behavior::Throw,
            };
            client(&server)
                .await?
                .put(name.as_bytes(), value.as_bytes(), &key, behavior, Some(ttl))
                .await?;
            if server.json {
                println!(
                    "{}",
                    json!({ "name": name, "stored": true, "owner": key.public().to_string() })
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { name, target } => match get(&name, &target).await? {
            Some(record) => {
                if target.json {
                    println!(
                        "{}",
                        json!({
                            "name": name,
                            "found": true,
                            "value": String::from_utf8_lossy(&record.value),
                            "value_hex": base16ct::lower::encode_string(&record.value),
                            "owner": base16ct::lower::encode_string(&record.owner),
                            "timestamp": record.timestamp,
                        })
                    );
                } else {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&record.value)
                        .context("writing the value")?;
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                if target.json {
                    println!("{}", json!({ "name": name, "found": false }));
                }
                eprintln!("keyway: not found: {name}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Del {
            name,
            server,
            key,
            ttl,
        } => {
            let key = keyfile::load(&key)?;
            client(&server)
                .await?
                .delete(name.as_bytes(), &key, Some(ttl))
                .await?;
            if server.json {
                println!("{}", json!({ "name": name, "deleted": true }));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Usage { server, key } => {
            let key = keyfile::load(&key)?;
            let u = client(&server).await?.usage(&key, None).await?;
            if server.json {
                println!(
                    "{}",
                    json!({ "af": u.af, "names_used": u.names_used, "name_limit": u.name_limit })
                );
            } else {
                let family = if u.af == 10 { "IPv6" } else { "IPv4" };
                println!("{} of {} names used ({family})", u.names_used, u.name_limit);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench(args).await.map(|()| ExitCode::SUCCESS),
        Command::Mirror {
            path,
            from,
            pubkey,
            follow,
            interval,
        } => mirror(
            &path,
            &from,
            &pubkey,
            follow,
            Duration::from_secs_f64(interval),
        )
        .await
        .map(|()| ExitCode::SUCCESS),
    }
}

/// A GET from the server, or from the replica: the same record either way.
async fn get(name: &str, target: &GetTarget) -> Result<Option<Record>> {
    if let Some(path) = &target.replica {
        let found = replica::get(path, name.as_bytes())?;
        return Ok(found.map(|r| Record {
            value: r.value,
            owner: r.owner,
            timestamp: r.timestamp,
        }));
    }
    let (Some(server), Some(server_pk)) = (&target.server, target.server_pk) else {
        bail!("give --server and --server-pk, or --replica");
    };
    let args = ServerArgs {
        server: server.clone(),
        server_pk,
        source: target.source,
        json: target.json,
    };
    Ok(client(&args).await?.get(name.as_bytes()).await?)
}

/// Pulls the published stream into the replica at `path`; with `follow`,
/// again every `interval` until Ctrl-C or SIGTERM (a pull cut short keeps
/// what it applied: the next one goes on from there).
async fn mirror(
    path: &Path,
    from: &str,
    pubkey: &str,
    follow: bool,
    interval: Duration,
) -> Result<()> {
    let public = parse_public_key(pubkey)?;
    let mut stream = Stream::mirror(path, public)?;
    let mut source = HttpSource::new(from, public);
    let stop = wait_for_signal();
    tokio::pin!(stop);
    let mut first = true;
    loop {
        let before = stream.tip()?;
        let pulled = tokio::select! {
            pulled = pull(&mut stream, &mut source) => pulled,
            r = &mut stop => return r,
        };
        match pulled {
            Ok(p) if first || p.inserted + p.repairs > 0 => {
                // A follower whose output nobody reads any more goes on
                // following (println! would panic on a closed pipe).
                use std::io::Write;
                let _ = writeln!(
                    std::io::stdout(),
                    "{} new records, {} repairs, {} records held",
                    p.inserted,
                    p.repairs,
                    stream.count()?
                );
            }
            Ok(_) => {}
            Err(e) if follow => eprintln!("keyway: {from}: {e}"),
            Err(e) => return Err(e).with_context(|| format!("pulling from {from}")),
        }
        // The stream signature made them records; the owners' signatures
        // say whether they are names. A forged one stays in the file (the
        // chain needs it) but is reported here and refused by `get`.
        let refused = replica::check_since(&stream, before)?;
        for r in &refused {
            eprintln!(
                "keyway: record {} is not what its owner signed ({}): get --replica refuses it",
                r.key, r.reason
            );
        }
        if !refused.is_empty() && !follow {
            bail!(
                "{} records from {from} are not what their owners signed",
                refused.len()
            );
        }
        first = false;
        if !follow {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            r = &mut stop => return r,
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let key = keyfile::load_or_generate(&serve_config::key_file(&args)?)?;
    let (store, stream_pk) = match &args.publish_stream {
        Some(stream) => {
            let (store, public) = SqlStore::open_publishing(&args.db, Default::default(), stream)
                .await
                .with_context(|| {
                    format!("opening {} to publish as {}", args.db, stream.display())
                })?;
            (store, Some(public))
        }
        None => (
            SqlStore::open_with(&args.db, Default::default(), args.db_connections)
                .await
                .with_context(|| format!("opening {}", args.db))?,
            None,
        ),
    };
    let rate_limit = (args.rate_limit > 0.0).then_some(RateLimit {
        rate: args.rate_limit,
        burst: args.rate_burst.max(1.0),
    });
    let config = ServerConfig {
        listen: args.listen,
        rate_limit,
        rate_limit_per_48: rate_limit.map(|l| RateLimit {
            rate: l.rate * 10.0,
            burst: l.burst * 10.0,
        }),
        metrics_listen: args.metrics,
        max_connections: args.max_connections as usize,
        max_connections_per_source: args.max_connections_per_source as usize,
        tcp_request_timeout: Duration::from_secs(args.tcp_request_timeout),
        tcp_write_timeout: Duration::from_secs(args.tcp_write_timeout),
        ..ServerConfig::default()
    };
    let server = Server::start(config, key, store, Arc::new(SystemClock)).await?;
    if let Some(addr) = server.metrics_addr() {
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    // Scripts read the addresses (with --listen …:0, the ports chosen)
    // and then the public key, the line they wait for.
    if let Some(public) = stream_pk {
        println!("stream_pk={public}");
    }
    for addr in server.udp_addrs() {
        println!("listening={addr}");
    }
    println!("server_pk={}", server.public_key());
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn bench(args: BenchArgs) -> Result<()> {
    let Some((g, p)) = args.mix.split_once(':') else {
        bail!("--mix must look like 1:1")
    };
    let mix: (u32, u32) = (g.trim().parse()?, p.trim().parse()?);
    if mix == (0, 0) {
        bail!("--mix needs at least one non-zero weight");
    }
    let server = tokio::net::lookup_host(&args.server.server)
        .await?
        .next()
        .with_context(|| format!("{} resolves to no address", args.server.server))?;
    let report = bench::run(BenchConfig {
        clients: args.clients,
        duration: Duration::from_secs_f64(args.duration),
        mix,
        transport: match args.transport {
            TransportArg::Udp => BenchTransport::Udp,
            TransportArg::Tcp => BenchTransport::Tcp,
        },
        timeout: Duration::from_secs_f64(args.timeout),
        rate: args.rate,
        claims: args.claims,
        precompute: args.precompute,
        ..BenchConfig::new(server, args.server.server_pk)
    })
    .await?;
    let mix = if args.claims { "claims" } else { &args.mix };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if args.server.json {
        let op = |s: &bench::OpStats| {
            json!({ "count": s.count, "per_sec": s.count as f64 / report.elapsed.as_secs_f64(),
                    "p50_ms": ms(s.p50), "p99_ms": ms(s.p99), "max_ms": ms(s.max) })
        };
        println!(
            "{}",
            json!({
                "clients": args.clients, "transport": format!("{:?}", args.transport).to_lowercase(),
                "mix": mix, "rate": args.rate, "seconds": report.elapsed.as_secs_f64(),
                "ops_per_sec": report.ops_per_sec(), "get": op(&report.get), "put": op(&report.put),
                "claim": op(&report.claim), "sources": report.sources,
                "errors": report.errors, "timeouts": report.timeouts,
                "precompute": args.precompute, "signed_during_run": report.signed_during_run,
            })
        );
    } else {
        println!(
            "{:.0} ops/s over {:.1} s ({} clients, {:?}, mix {mix}); errors {}, timeouts {}",
            report.ops_per_sec(),
            report.elapsed.as_secs_f64(),
            args.clients,
            args.transport,
            report.errors,
            report.timeouts
        );
        for (name, unit, s) in [
            ("GET", "/s", &report.get),
            ("PUT", "/s", &report.put),
            ("claims", " claims/s", &report.claim),
        ] {
            if s.count > 0 {
                println!(
                    "  {name}: {:.0}{unit}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                    s.count as f64 / report.elapsed.as_secs_f64(),
                    ms(s.p50),
                    ms(s.p99),
                    ms(s.max)
                );
            }
        }
        if report.sources > 0 {
            println!("  from {} source addresses", report.sources);
        }
        if report.signed_during_run > 0 {
            println!(
                "  {} requests signed during the run (the prepared ones ran out)",
                report.signed_during_run
            );
        }
    }
    Ok(())
}
