//! The firmware on a Linux TAP device: keyway-embassy's namebump client and
//! sidewire node on embassy-net, with embassy's std executor and clock.
//!
//! ```text
//! host_node --tap TAP --addr CIDR --gateway IP namebump put NAME VALUE --server HOST:PORT --server-pk HEX --key FILE
//! host_node --tap TAP --addr CIDR --gateway IP namebump get NAME --server HOST:PORT --server-pk HEX
//! host_node --tap TAP --addr CIDR --gateway IP namebump del NAME --server HOST:PORT --server-pk HEX --key FILE
//! host_node --tap TAP --addr CIDR --gateway IP namebump usage --server HOST:PORT --server-pk HEX --key FILE
//! host_node --tap TAP --addr CIDR --gateway IP sidewire listen --key FILE --brokers FILE [--count N] [--timeout SECS] [--json]
//! host_node --tap TAP --addr CIDR --gateway IP sidewire send DEST_PK_HEX MESSAGE --key FILE --brokers FILE [--timeout SECS]
//! ```
//!
//! Output and exit codes are the `keyway` CLI's: `get` writes the value's
//! bytes to stdout (exit 2 when absent), `listen` prints one line per
//! message and `listening pk=… brokers=…` on stderr, failures exit 1 with
//! `keyway: <reason>` on stderr.
//!
//! The host part (std) parses arguments and reads the key and pool files;
//! everything on the network goes through keyway-embassy on embassy-net.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use embassy_executor::Spawner;
use embassy_net::{Config, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use keyway_core::namebump::client::Policy;
use keyway_core::rand_core::UnwrapErr;
use keyway_core::time::SystemClock;
use keyway_core::{Keypair, PublicKey};
use keyway_embassy::keyway_core;
use keyway_embassy::namebump::{Behavior, Client, Failure, NamebumpError};
use static_cell::StaticCell;

#[derive(Debug, Parser)]
#[command(name = "host_node", about = "keyway-embassy on a Linux TAP device")]
struct Args {
    /// The TAP device (created and up beforehand).
    #[arg(long)]
    tap: String,
    /// This node's address, e.g. 192.168.69.2/24.
    #[arg(long)]
    addr: String,
    /// The default gateway (the TAP's kernel side).
    #[arg(long)]
    gateway: std::net::Ipv4Addr,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(subcommand)]
    Namebump(NamebumpCommand),
    #[command(subcommand)]
    Sidewire(SidewireCommand),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// The server, HOST:PORT (an IPv4 address or a name the DNS resolves).
    #[arg(long)]
    server: String,
    /// The server's public key (66 hex digits).
    #[arg(long = "server-pk")]
    server_pk: PublicKey,
    /// TCP only: the machine's policy without the UDP legs.
    #[arg(long)]
    no_udp: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BehaviorArg {
    Bump,
    DontBump,
    Throw,
}

#[derive(Debug, Subcommand)]
enum NamebumpCommand {
    /// Claim or update NAME with VALUE.
    Put {
        name: String,
        value: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, value_enum, default_value_t = BehaviorArg::Bump)]
        behavior: BehaviorArg,
        #[arg(long, default_value_t = 10.0)]
        ttl: f64,
    },
    /// Print NAME's value (exit 2 if absent).
    Get {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete NAME.
    Del {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 10.0)]
        ttl: f64,
    },
    /// This address's quota state.
    Usage {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SidewireCommand {
    /// Receive messages sent to --key's public key.
    Listen {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        brokers: PathBuf,
        #[arg(long)]
        count: Option<usize>,
        #[arg(long)]
        timeout: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Send MESSAGE to DEST_PK_HEX and wait for its acknowledgement.
    Send {
        dest_pk_hex: PublicKey,
        message: String,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        brokers: PathBuf,
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
}

/// Sockets the stack holds at once: the namebump exchange's two (its
/// owner lookup opens two more after they close), or the node's links,
/// and DNS.
const SOCKETS: usize = 8;

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let args = Args::parse();
    let code = match run(spawner, args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

async fn run(spawner: Spawner, args: Args) -> Result<i32> {
    let stack = start_stack(spawner, &args)?;
    stack.wait_config_up().await;
    match args.command {
        Command::Namebump(command) => namebump(stack, command).await,
        Command::Sidewire(command) => sidewire::run(stack, command).await,
    }
}

/// The stack on the TAP device, with a static IPv4 configuration.
fn start_stack(spawner: Spawner, args: &Args) -> Result<Stack<'static>> {
    let device = TunTapDevice::new(&args.tap)
        .with_context(|| format!("cannot open TAP device {}", args.tap))?;
    let (ip, prefix) = args
        .addr
        .split_once('/')
        .ok_or_else(|| anyhow!("--addr must be ADDRESS/PREFIX, got {:?}", args.addr))?;
    let ip: std::net::Ipv4Addr = ip.parse().context("--addr")?;
    let prefix: u8 = prefix.parse().context("--addr prefix")?;
    if prefix > 32 {
        bail!("--addr prefix must be at most 32");
    }
    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ip, prefix),
        gateway: Some(args.gateway),
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness: {e}"))?;
    let (stack, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed),
    );
    spawner.spawn(net_task(runner).map_err(|e| anyhow!("cannot spawn the stack: {e:?}"))?);
    Ok(stack)
}

fn load_key(path: &Path) -> Result<Keypair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    Keypair::from_secret_hex(text.trim())
        .with_context(|| format!("{} is not a secp256k1 key file", path.display()))
}

async fn namebump_client(
    stack: Stack<'static>,
    server: &ServerArgs,
) -> Result<Client<'static, SystemClock>> {
    let (host, port) = server
        .server
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--server must be HOST:PORT"))?;
    let port: u16 = port.parse().context("--server port")?;
    let endpoint = keyway_embassy::namebump::resolve(stack, host, port)
        .await
        .with_context(|| format!("cannot resolve {}", server.server))?;
    let policy = Policy {
        udp: !server.no_udp,
        ..Policy::default()
    };
    Ok(Client::new(stack, endpoint, server.server_pk, SystemClock).with_policy(policy))
}

/// The tokio CLI's wording for the failures that name the server.
fn with_server(e: NamebumpError, server: &ServerArgs) -> anyhow::Error {
    match e {
        NamebumpError::Failed(Failure::Timeout { attempts }) => {
            anyhow!("no reply from {} after {attempts} attempts", server.server)
        }
        NamebumpError::Failed(Failure::Network { .. }) => {
            anyhow!("cannot reach {}: {e}", server.server)
        }
        e => e.into(),
    }
}

async fn namebump(stack: Stack<'static>, command: NamebumpCommand) -> Result<i32> {
    let mut rng = UnwrapErr(getrandom::SysRng);
    match command {
        NamebumpCommand::Put {
            name,
            value,
            server,
            key,
            behavior,
            ttl,
        } => {
            let key = load_key(&key)?;
            let behavior = match behavior {
                BehaviorArg::Bump => Behavior::Bump,
                BehaviorArg::DontBump => Behavior::DontBump,
                BehaviorArg::Throw => Behavior::Throw,
            };
            namebump_client(stack, &server)
                .await?
                .put(
                    name.as_bytes(),
                    value.as_bytes(),
                    &key,
                    behavior,
                    Some(ttl),
                    &mut rng,
                )
                .await?;
            Ok(0)
        }
        NamebumpCommand::Get { name, server } => {
            let client = namebump_client(stack, &server).await?;
            let found = client.get(name.as_bytes(), &mut rng).await;
            match found.map_err(|e| with_server(e, &server))? {
                Some(record) => {
                    std::io::stdout()
                        .write_all(record.value())
                        .context("writing the value")?;
                    Ok(0)
                }
                None => {
                    eprintln!("keyway: not found: {name}");
                    Ok(2)
                }
            }
        }
        NamebumpCommand::Del {
            name,
            server,
            key,
            ttl,
        } => {
            let key = load_key(&key)?;
            namebump_client(stack, &server)
                .await?
                .delete(name.as_bytes(), &key, Some(ttl), &mut rng)
                .await
                .map_err(|e| with_server(e, &server))?;
            Ok(0)
        }
        NamebumpCommand::Usage { server, key } => {
            let key = load_key(&key)?;
            let u = namebump_client(stack, &server)
                .await?
                .usage(&key, None, &mut rng)
                .await
                .map_err(|e| with_server(e, &server))?;
            let family = if u.af == 10 { "IPv6" } else { "IPv4" };
            println!("{} of {} names used ({family})", u.names_used, u.name_limit);
            Ok(0)
        }
    }
}

mod sidewire {
    //! The node: 3 broker links, 2 sends at once, 2 KiB packets.

    use embassy_net::{IpAddress, IpEndpoint};
    use embassy_time::Instant;
    use keyway_core::mqtt::SessionConfig;
    use keyway_core::sidewire::node::ack_cache::SourceAcks;
    use keyway_core::sidewire::node::{Node, NodeConfig, NodeTables, PoolBroker, PoolSlice};
    use keyway_core::sidewire::{Peer, Slot};
    use keyway_embassy::sidewire::{Happening, Sidewire, SocketMemory};
    use keyway_sidewire::Pool;

    use super::*;

    const LINKS: usize = 3;
    const SENDS: usize = 2;
    const CHECKS: usize = 4;
    /// The largest MQTT packet a link takes or sends.
    const PACKET: usize = 2048;
    const SOCKET: usize = 4096;
    /// The node's inner capacities (its `B`, `T`, `O`, `W`): a device's,
    /// not a server's. Brokers tracked for backoff and destinations
    /// remembered with hints; brokers one publish reaches (remembered
    /// hints and the pool's top); publishes queued for the shell (every
    /// send and an ACK on every link); ACKs waiting for a connect.
    const TRACKED: usize = 16;
    const TARGETS: usize = 16;
    const OUTBOX: usize = LINKS * (SENDS + 1);
    const ACK_WALKS: usize = 4;

    type HostNode = Node<
        PoolSlice<'static>,
        [Slot; 64],
        [u64; 256],
        [Peer; 16],
        [SourceAcks; 16],
        LINKS,
        SENDS,
        CHECKS,
        TRACKED,
        TARGETS,
        OUTBOX,
        ACK_WALKS,
    >;

    type HostSidewire = Sidewire<
        'static,
        PoolSlice<'static>,
        [Slot; 64],
        [u64; 256],
        [Peer; 16],
        [SourceAcks; 16],
        SystemClock,
        LINKS,
        SENDS,
        CHECKS,
        PACKET,
        TRACKED,
        TARGETS,
        OUTBOX,
        ACK_WALKS,
    >;

    static SOCKETS: StaticCell<[SocketMemory<SOCKET>; LINKS]> = StaticCell::new();

    /// The pool file, as the firmware takes it: ranked by host string,
    /// reached at IPv4 endpoints (an IPv6 broker is never reached here).
    fn pool(path: &Path) -> Result<(PoolSlice<'static>, &'static [IpEndpoint])> {
        let pool = Pool::load(path)?;
        let mut brokers = Vec::new();
        let mut endpoints = Vec::new();
        for b in &pool.brokers {
            let ip = match b.host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => IpAddress::Ipv4(ip),
                Ok(std::net::IpAddr::V6(_)) => IpAddress::v4(0, 0, 0, 0),
                Err(_) => bail!("broker {}: the pool must give IP addresses", b.host),
            };
            endpoints.push(IpEndpoint::new(ip, b.port));
            brokers.push(PoolBroker {
                host: Box::leak(b.host.clone().into_boxed_str()),
                weight: b.weight,
                af: b.af,
            });
        }
        let slice = PoolSlice {
            brokers: Box::leak(brokers.into_boxed_slice()),
            ranking: pool.ranking,
        };
        Ok((slice, Box::leak(endpoints.into_boxed_slice())))
    }

    fn node(stack: Stack<'static>, key: &Path, brokers: &Path) -> Result<HostSidewire> {
        let key = load_key(key)?;
        let (pool, endpoints) = pool(brokers)?;
        let mut rng = UnwrapErr(getrandom::SysRng);
        let tables = NodeTables {
            slots: [Slot::EMPTY; 64],
            watermarks: [0; 256],
            peers: [Peer::EMPTY; 16],
            acks: [SourceAcks::EMPTY; 16],
        };
        let config = NodeConfig {
            max_message: PACKET - 128,
            ..NodeConfig::default()
        };
        let now = keyway_embassy::clock::now();
        let node: HostNode = Node::new(key, pool, config, tables, &mut rng, now);
        let sockets = SOCKETS.init(core::array::from_fn(|_| SocketMemory::new()));
        let sidewire = Sidewire::new(
            stack,
            node,
            endpoints,
            sockets,
            SessionConfig::default(),
            SystemClock,
        );
        Ok(sidewire)
    }

    fn after(seconds: f64) -> Instant {
        let micros = (seconds.max(0.0) * 1e6).min(1e15) as u64;
        Instant::now() + embassy_time::Duration::from_micros(micros)
    }

    pub(super) async fn run(stack: Stack<'static>, command: SidewireCommand) -> Result<i32> {
        let mut rng = UnwrapErr(getrandom::SysRng);
        match command {
            SidewireCommand::Listen {
                key,
                brokers,
                count,
                timeout,
                json,
            } => {
                let mut node = node(stack, &key, &brokers)?;
                let deadline = timeout.map(after);
                let seen = std::cell::Cell::new(0usize);
                let mut print = |h: Happening<'_>| {
                    if let Happening::Delivered { from, data } = h {
                        seen.set(seen.get() + 1);
                        let from = base16ct::lower::encode_string(&from);
                        if json {
                            let hex = base16ct::lower::encode_string(data);
                            println!("{}", serde_json::json!({ "from": from, "msg_hex": hex }));
                        } else {
                            println!("{from} {}", String::from_utf8_lossy(data).escape_debug());
                        }
                        return count.is_some_and(|n| seen.get() >= n);
                    }
                    false
                };
                // Joined once its links are up or given up (the tokio
                // router's start), and at least one is.
                let joined_by = deadline.map_or(after(10.0), |d| d.min(after(10.0)));
                while (node.links_up() == 0 || node.links_joining() > 0)
                    && Instant::now() < joined_by
                {
                    node.run_until(after(0.05), &mut rng, &mut print).await;
                }
                if node.links_up() == 0 {
                    bail!("no broker of the pool could be reached");
                }
                eprintln!(
                    "listening pk={} brokers={}",
                    node.public_key(),
                    node.links_up()
                );
                let end = deadline.unwrap_or(Instant::MAX);
                while count.is_none_or(|n| seen.get() < n) && Instant::now() < end {
                    node.run_until(end, &mut rng, &mut print).await;
                }
                // Let the ACKs of what was delivered go out before leaving.
                node.run_until(after(0.5), &mut rng, &mut |_| false).await;
                node.close(after(2.0), &mut rng).await;
                let seen = seen.get();
                if let Some(n) = count
                    && seen < n
                {
                    bail!("timed out after {seen} of {n} messages");
                }
                Ok(0)
            }
            SidewireCommand::Send {
                dest_pk_hex,
                message,
                key,
                brokers,
                timeout,
            } => {
                let mut node = node(stack, &key, &brokers)?;
                let wait = Duration::from_secs_f64(timeout.max(0.0));
                let id = node
                    .send(&dest_pk_hex, message.as_bytes(), wait, &mut rng)
                    .with_context(|| format!("sending to {dest_pk_hex}"))?;
                let mut acked = None;
                let end = after(timeout + 1.0);
                while acked.is_none() && Instant::now() < end {
                    node.run_until(end, &mut rng, &mut |h| match h {
                        Happening::SendAcked(s) if s == id => {
                            acked = Some(true);
                            true
                        }
                        Happening::SendFailed(s, _) if s == id => {
                            acked = Some(false);
                            true
                        }
                        _ => false,
                    })
                    .await;
                }
                if acked != Some(true) {
                    bail!("sending to {dest_pk_hex}: no acknowledgement within {wait:?}");
                }
                // The DISCONNECTs go out (the tokio CLI's router.close).
                node.close(after(1.0), &mut rng).await;
                Ok(0)
            }
        }
    }
}
