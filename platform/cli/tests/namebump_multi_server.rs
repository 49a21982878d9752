//! Three `keyway namebump serve` processes on one database, PostgreSQL and
//! MariaDB (issue 12): what must hold globally holds whichever server a
//! request reaches.
//!
//! - 200 concurrent claims of distinct new names from one source address,
//!   spread over the three servers: exactly 20 are stored.
//! - 20 s of concurrent claims, refreshes and deletes of the same 10 names
//!   by four owners through all three servers: afterwards every stored name
//!   is the newest acknowledged write of its owner, its owner is the first
//!   successful claimant since its last delete, no acknowledged write is
//!   missing unless a later delete explains it, and the address's quota
//!   count equals its names.
//! - A signed PUT (or DEL) replayed to another server than the one that
//!   took it is not executed.
//!
//! The databases are the machine's services (`tests/run.sh` starts them;
//! KEYWAY_TEST_POSTGRES / KEYWAY_TEST_MYSQL point elsewhere); each test
//! creates its own database and drops it. A missing service fails the test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::tcp_framing::MAX_SEALED_REQUEST;
use keyway_core::namebump::{DO_BUMP, Op, Packet};
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::{Keypair, PublicKey};
use keyway_namebump::{Behavior, Client, ClientConfig, ClientError, ManualClock};
use sqlx::{Connection, Row};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// A `keyway namebump serve` child, killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server on `db` with the shared key file; returns it and its
/// public key.
fn serve(db: &str, key: &Path) -> (Served, String) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(KEYWAY)
        // Every client of a test shares one source address: the per-source
        // TCP cap (16) would refuse most of them, and that is not what is
        // tested here.
        .args(["namebump", "serve", "--rate-limit", "0"])
        .args(["--max-connections-per-source", "1024"])
        .arg("--listen")
        .arg(addr.to_string())
        .args(["--db", db])
        .arg("--key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut server_pk = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(pk) = line.strip_prefix("server_pk=") {
            server_pk = Some(pk.to_owned());
            break;
        }
    }
    let served = Served { child, addr };
    (
        served,
        server_pk.expect("the server printed no server_pk= line"),
    )
}

/// Three servers on one database, sharing one key.
struct Cluster {
    servers: Vec<Served>,
    server_pk: PublicKey,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(db: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("server.key");
        let mut servers = Vec::new();
        let mut pks = Vec::new();
        for _ in 0..3 {
            let (served, pk) = serve(db, &key);
            servers.push(served);
            pks.push(pk);
        }
        assert!(pks.iter().all(|pk| *pk == pks[0]), "one key: {pks:?}");
        Self {
            servers,
            server_pk: pks[0].parse().unwrap(),
            _dir: dir,
        }
    }

    async fn client(&self, index: usize, source: IpAddr) -> Client {
        let server = self.servers[index % 3].addr.to_string();
        Client::new(&server, self.server_pk)
            .await
            .unwrap()
            .with_config(ClientConfig {
                source: Some(source),
                // 200 requests at once on two cores: give each time.
                reply_timeout: Duration::from_secs(10),
                ..ClientConfig::default()
            })
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// 200 claims of new names from 127.0.0.7, at once, over three servers.
async fn claims_stop_at_the_quota(cluster: &Cluster) {
    let source: IpAddr = "127.0.0.7".parse().unwrap();
    let owner = Arc::new(Keypair::generate(&mut UnwrapErr(getrandom::SysRng)));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = cluster.client(i, source).await;
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("claim-{i}");
            let put = client
                .put(name.as_bytes(), b"v", &owner, Behavior::DontBump, None)
                .await;
            (name, put)
        }));
    }
    let (mut stored, mut unknown) = (Vec::new(), 0);
    for task in tasks {
        let (name, result) = task.await.unwrap();
        match result {
            Ok(()) => stored.push(name),
            Err(ClientError::RejectedAtQuota) => {}
            // A claim whose replies were all lost (a loaded machine) may
            // or may not be stored: the database count below decides.
            Err(ClientError::Timeout { .. }) => unknown += 1,
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert!(
        stored.len() <= 20 && stored.len() + unknown >= 20,
        "acknowledged {}, unanswered {unknown}: {stored:?}",
        stored.len()
    );
    for (i, name) in stored.iter().enumerate() {
        let client = cluster.client(i, source).await;
        assert!(client.get(name.as_bytes()).await.unwrap().is_some());
    }
    for i in 0..3 {
        let usage = cluster.client(i, source).await.usage(&owner, None).await;
        assert_eq!(usage.unwrap().names_used, 20);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Put,
    Del,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Acked,
    Refused,
    /// No reply: it may or may not have been executed.
    Unknown,
}

#[derive(Clone, Debug)]
struct Op_ {
    name: usize,
    owner: usize,
    kind: Kind,
    updated: f64,
    value: Vec<u8>,
    outcome: Outcome,
}

/// Strictly increasing request times shared by every worker, so each write
/// is ordered against every other by its `updated`.
struct Stamps(AtomicU64);

impl Stamps {
    fn next(&self) -> f64 {
        let micros = (now() * 1e6) as u64;
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(last.max(micros - 1) + 1)
            })
            .unwrap();
        (prev.max(micros - 1) + 1) as f64 / 1e6
    }
}

const NAMES: usize = 10;
const OWNERS: usize = 4;
const WORKERS: usize = 12;

/// Random PUTs and DELs of 10 names by 4 owners through 3 servers for
/// `seconds`; returns every request with its outcome.
async fn churn(cluster: &Cluster, seconds: u64) -> Vec<Op_> {
    let source: IpAddr = "127.0.0.8".parse().unwrap();
    let owners: Arc<Vec<Keypair>> = Arc::new(
        (0..OWNERS)
            .map(|_| Keypair::generate(&mut UnwrapErr(getrandom::SysRng)))
            .collect(),
    );
    let stamps = Arc::new(Stamps(AtomicU64::new(0)));
    let log = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let clients = [
            cluster.client(0, source).await,
            cluster.client(1, source).await,
            cluster.client(2, source).await,
        ];
        let (owners, stamps, log) = (owners.clone(), stamps.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded by time and by count.
            while Instant::now() < deadline && n < 100_000 {
                n += 1;
                let r = random_u64();
                let name = (r % NAMES as u64) as usize;
                let owner = ((r >> 8) % OWNERS as u64) as usize;
                let server = ((r >> 16) % 3) as usize;
                let kind = if (r >> 24) % 10 < 6 {
                    Kind::Put
                } else {
                    Kind::Del
                };
                let updated = stamps.next();
                let value = format!("w{w}-{n}").into_bytes();
                let client = clients[server]
                    .clone()
                    .with_clock(Arc::new(ManualClock::new(updated)));
                let key = &owners[owner];
                let label = format!("name-{name}");
                let result = match kind {
                    Kind::Put => {
                        client
                            .put(label.as_bytes(), &value, key, Behavior::DontBump, None)
                            .await
                    }
                    Kind::Del => client.delete(label.as_bytes(), key, None).await,
                };
                let outcome = match result {
                    Ok(()) => Outcome::Acked,
                    Err(ClientError::Timeout { .. } | ClientError::Network { .. }) => {
                        Outcome::Unknown
                    }
                    Err(_) => Outcome::Refused,
                };
                log.lock().unwrap().push(Op_ {
                    name,
                    owner,
                    kind,
                    updated,
                    value,
                    outcome,
                });
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let ops = std::mem::take(&mut *log.lock().unwrap());
    // The final state, read through every server (they must agree).
    let mut finals = Vec::new();
    for name in 0..NAMES {
        let label = format!("name-{name}");
        let mut seen = Vec::new();
        for i in 0..3 {
            let record = cluster.client(i, source).await.get(label.as_bytes()).await;
            seen.push(record.unwrap().map(|r| (r.owner, r.value)));
        }
        assert!(seen.iter().all(|s| *s == seen[0]), "{label}: {seen:?}");
        finals.push(seen[0].clone().map(|(owner, value)| {
            let owner = owners
                .iter()
                .position(|k| *k.public().as_bytes() == owner)
                .expect("stored owner is one of the test's keys");
            (owner, value)
        }));
    }
    let live = finals.iter().filter(|f| f.is_some()).count();
    for i in 0..3 {
        let usage = cluster
            .client(i, source)
            .await
            .usage(&owners[0], None)
            .await;
        assert_eq!(
            usage.unwrap().names_used as usize,
            live,
            "quota count = names"
        );
    }
    check_history(&ops, &finals);
    ops
}

/// The invariants, per name, from the requests' outcomes and the final
/// state. Executed writes of a name happen in increasing `updated` (the
/// store refuses older ones), a name leaves its owner only by that owner's
/// DEL (no expiry or bump here: 10 names are under the quota), and every
/// executed request was acknowledged or went unanswered.
fn check_history(ops: &[Op_], finals: &[Option<(usize, Vec<u8>)>]) {
    for (name, last) in finals.iter().enumerate() {
        let mut mine: Vec<&Op_> = ops.iter().filter(|o| o.name == name).collect();
        mine.sort_by(|a, b| a.updated.total_cmp(&b.updated));
        let acked_puts: Vec<&&Op_> = mine
            .iter()
            .filter(|o| o.kind == Kind::Put && o.outcome == Outcome::Acked)
            .collect();
        let may_have_deleted = |owner: usize, after: f64, before: f64| {
            mine.iter().any(|o| {
                o.kind == Kind::Del
                    && o.owner == owner
                    && o.outcome != Outcome::Refused
                    && o.updated > after
                    && o.updated < before
            })
        };
        // The owner changes only through the previous owner's delete.
        for pair in acked_puts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.owner != b.owner {
                assert!(
                    may_have_deleted(a.owner, a.updated, b.updated),
                    "name-{name}: owner {} claimed over owner {} with no delete between ({} → {})",
                    b.owner,
                    a.owner,
                    a.updated,
                    b.updated
                );
            }
        }
        match last {
            Some((owner, value)) => {
                let write = mine
                    .iter()
                    .find(|o| o.kind == Kind::Put && o.value == *value)
                    .unwrap_or_else(|| panic!("name-{name}: stored value no request wrote"));
                assert_ne!(
                    write.outcome,
                    Outcome::Refused,
                    "name-{name}: refused write stored"
                );
                assert_eq!(write.owner, *owner, "name-{name}: owner");
                // Nothing acknowledged is newer than what is stored.
                if let Some(newest) = acked_puts.last() {
                    assert!(
                        newest.updated <= write.updated,
                        "name-{name}: acknowledged write {} lost to older {}",
                        newest.updated,
                        write.updated
                    );
                }
            }
            None => {
                if let Some(newest) = acked_puts.last() {
                    assert!(
                        may_have_deleted(newest.owner, newest.updated, f64::INFINITY),
                        "name-{name}: acknowledged write {} missing with no later delete",
                        newest.updated
                    );
                }
            }
        }
    }
}

/// Sends one sealed request over UDP and returns the reply's op and value.
async fn exchange(server: SocketAddr, sealed: &[u8], reply_key: &Keypair) -> (Op, Vec<u8>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..5 {
        socket.send(sealed).await.unwrap();
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await
        {
            let mut out = vec![0u8; 4096];
            let plain = ecies::open(reply_key, &buf[..n], &mut out).unwrap();
            let p = Packet::decode(plain).unwrap();
            return (p.op, p.value.to_vec());
        }
    }
    panic!("no reply from {server}");
}

/// A signed request, sealed to the servers' key, and the key its reply
/// is sealed to.
fn sealed(
    server_pk: &PublicKey,
    op: Op,
    name: &[u8],
    value: &[u8],
    owner: &Keypair,
) -> (Vec<u8>, Keypair) {
    let mut rng = UnwrapErr(getrandom::SysRng);
    let reply = Keypair::generate(&mut rng);
    let mut p = Packet::new(op, rng.next_u32().max(1), now(), name, value);
    p.reply_pk = Some(*reply.public().as_bytes());
    p.behavior = DO_BUMP;
    p.sign(owner).unwrap();
    let mut plain = [0u8; MAX_PACKET_LEN];
    let n = p.encode(&mut plain).unwrap();
    let mut out = vec![0u8; MAX_SEALED_REQUEST];
    let m = ecies::seal(server_pk, &plain[..n], &mut rng, &mut out).unwrap();
    out.truncate(m);
    (out, reply)
}

/// A PUT taken by server 0, then overwritten; its replay to servers 1 and
/// 2 changes nothing. The same for a DEL replayed after a new claim.
async fn replays_to_another_server_are_not_executed(cluster: &Cluster) {
    let mut rng = UnwrapErr(getrandom::SysRng);
    let (alice, bob) = (Keypair::generate(&mut rng), Keypair::generate(&mut rng));
    let pk = &cluster.server_pk;
    let [a, b, c] = [0, 1, 2].map(|i| cluster.servers[i].addr);
    let source: IpAddr = "127.0.0.9".parse().unwrap();
    let read = |i: usize| async move {
        cluster
            .client(i, source)
            .await
            .get(b"replayed")
            .await
            .unwrap()
            .map(|r| r.value)
    };

    let (first, reply) = sealed(pk, Op::Put, b"replayed", b"one", &alice);
    assert_eq!(exchange(a, &first, &reply).await.0, Op::Put);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, reply2) = sealed(pk, Op::Put, b"replayed", b"two", &alice);
    assert_eq!(exchange(a, &second, &reply2).await.0, Op::Put);
    for server in [b, c] {
        let (op, _) = exchange(server, &first, &reply).await;
        assert_eq!(
            op,
            Op::Error,
            "an older PUT replayed to {server} is refused"
        );
    }
    for i in 0..3 {
        assert_eq!(read(i).await.as_deref(), Some(&b"two"[..]));
    }

    // A DEL through b, then bob claims the name through c; the DEL and
    // alice's PUTs replayed through a do not take it from bob.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (del, reply3) = sealed(pk, Op::Del, b"replayed", b"", &alice);
    assert_eq!(exchange(b, &del, &reply3).await.0, Op::Del);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (claim, reply4) = sealed(pk, Op::Put, b"replayed", b"bob", &bob);
    assert_eq!(exchange(c, &claim, &reply4).await.0, Op::Put);
    exchange(a, &del, &reply3).await;
    exchange(a, &second, &reply2).await;
    for i in 0..3 {
        assert_eq!(read(i).await.as_deref(), Some(&b"bob"[..]));
    }
}

/// Quota rows as stored: no address holds more live names than its quota,
/// and no live name refers to a missing address row.
async fn quota_rows_are_consistent(url: &str) {
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let over: i64 = sqlx::query(
        "SELECT COUNT(*) FROM (SELECT ip_id FROM names WHERE af = 2 \
         GROUP BY ip_id HAVING COUNT(*) > 20) AS over_quota",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert_eq!(over, 0, "an address holds more than 20 names");
    let orphans: i64 = sqlx::query(
        "SELECT COUNT(*) FROM names WHERE af = 2 AND ip_id NOT IN (SELECT id FROM ipv4s)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert_eq!(orphans, 0, "names refer to missing address rows");
    conn.close().await.unwrap();
}

async fn on_database(admin_url: &str, url_for: impl Fn(&str) -> String) {
    sqlx::any::install_default_drivers();
    let db = format!(
        "keyway_multi_{}_{}",
        std::process::id(),
        random_u64() % 1_000_000
    );
    let mut admin = sqlx::AnyConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach {admin_url} ({e}); run tests/run.sh, which starts the services")
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = url_for(&db);
    {
        let cluster = Cluster::start(&url);
        claims_stop_at_the_quota(&cluster).await;
        replays_to_another_server_are_not_executed(&cluster).await;
        let ops = churn(&cluster, 20).await;
        let count = |kind: Kind, outcome: Outcome| {
            ops.iter()
                .filter(|o| o.kind == kind && o.outcome == outcome)
                .count()
        };
        eprintln!(
            "churn: PUT acked {} refused {} unknown {}; DEL acked {} refused {} unknown {}",
            count(Kind::Put, Outcome::Acked),
            count(Kind::Put, Outcome::Refused),
            count(Kind::Put, Outcome::Unknown),
            count(Kind::Del, Outcome::Acked),
            count(Kind::Del, Outcome::Refused),
            count(Kind::Del, Outcome::Unknown),
        );
        // The run exercised what it claims to: writes on both sides.
        assert!(
            count(Kind::Put, Outcome::Acked) > 50,
            "few acknowledged PUTs"
        );
        assert!(
            count(Kind::Del, Outcome::Acked) > 20,
            "few acknowledged DELs"
        );
        assert!(count(Kind::Put, Outcome::Refused) > 20, "no contention");
        quota_rows_are_consistent(&url).await;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}")))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_postgresql() {
    let base = std::env::var("KEYWAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    on_database(&format!("{base}/postgres"), |db| format!("{base}/{db}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_mariadb() {
    let base =
        std::env::var("KEYWAY_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    on_database(&format!("{base}/mysql"), |db| format!("{base}/{db}")).await;
}

#[test]
fn histories_that_break_an_invariant_are_caught() {
    let op = |name, owner, kind, updated: f64, value: &str, outcome| Op_ {
        name,
        owner,
        kind,
        updated,
        value: value.as_bytes().to_vec(),
        outcome,
    };
    let ok = [
        op(0, 0, Kind::Put, 1.0, "a", Outcome::Acked),
        op(0, 0, Kind::Del, 2.0, "", Outcome::Acked),
        op(0, 1, Kind::Put, 3.0, "b", Outcome::Acked),
    ];
    check_history(&ok, &[Some((1, b"b".to_vec()))]);
    let caught = |ops: Vec<Op_>, finals: Vec<Option<(usize, Vec<u8>)>>| {
        std::panic::catch_unwind(|| check_history(&ops, &finals)).is_err()
    };
    // Owner 1 claimed over owner 0 without a delete.
    assert!(caught(
        vec![ok[0].clone(), ok[2].clone()],
        vec![Some((1, b"b".to_vec()))]
    ));
    // An older write stored over a newer acknowledged one.
    assert!(caught(
        vec![ok[0].clone(), op(0, 0, Kind::Put, 1.5, "c", Outcome::Acked)],
        vec![Some((0, b"a".to_vec()))]
    ));
    // An acknowledged write gone with no delete after it.
    assert!(caught(vec![ok[0].clone()], vec![None]));
    // A refused write stored.
    assert!(caught(
        vec![op(0, 0, Kind::Put, 1.0, "a", Outcome::Refused)],
        vec![Some((0, b"a".to_vec()))]
    ));
}
