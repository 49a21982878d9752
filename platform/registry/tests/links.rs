//! The registry over real links on loopback (issue 17): hyper-registry's
//! six cases, checked through a replica that mirrors the stream over the
//! link and reads it locally; 50 identities racing for one name; a
//! request signed by someone other than the caller; a restart.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use getrandom::SysRng;
use keyway_core::link::{AllowList, Capability, LinkConfig, NetworkKey, Service};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::registry::{
    INFO_REQUEST, MAX_REQUEST_LEN, Op, RECORD_KIND, RegistryInfo, SignedRequest, Username,
    WriteReply, WriteRequest,
};
use keyway_core::{Keypair, PublicKey};
use keyway_drayer::Stream;
use keyway_link::PeerAddress;
use keyway_link::connection::{LinkHandle, NoService};
use keyway_link::dial::dial;
use keyway_link::node::Node;
use keyway_link::stream_sync::LinkSource;
use keyway_registry::check_record;
use keyway_registry::server::{Registry, RegistryService};
use tokio::net::TcpListener;

/// A bound on every wait: a shared, slow machine, never a timing claim.
const PATIENCE: Duration = Duration::from_secs(60);
const NET: [u8; 32] = [17; 32];

fn config(identity: Keypair, allow: AllowList) -> Arc<LinkConfig> {
    Arc::new(LinkConfig {
        identity,
        network_key: NetworkKey::from_bytes(NET),
        allow,
        limits: keyway_link::config::node_limits(),
    })
}

fn keypair() -> Keypair {
    Keypair::generate(&mut UnwrapErr(SysRng))
}

struct Server {
    registry: Arc<Registry>,
    addr: PeerAddress,
    task: tokio::task::JoinHandle<()>,
}

/// A registry on loopback, as `keyway registry serve` runs it without
/// `--allow`: any proven peer may write and sync.
async fn serve(dir: &Path, identity: Keypair) -> Server {
    let mut allow = AllowList::new();
    allow.allow_anyone([Capability::SyncAll, Capability::RegistryWrite]);
    serve_allowing(dir, identity, allow).await
}

/// A registry whose links grant `allow`.
async fn serve_allowing(dir: &Path, identity: Keypair, allow: AllowList) -> Server {
    let registry = Registry::open(dir).unwrap();
    let key = *identity.public();
    let service = RegistryService::new(registry.clone()).unwrap();
    // The CLI's default connection cap.
    let node = Node::new(
        config(identity, allow),
        Arc::new(service),
        keyway_link::node::DEFAULT_MAX_CONNECTIONS,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(node.serve(listener));
    Server {
        registry,
        addr: PeerAddress {
            key,
            host: "127.0.0.1".into(),
            port,
        },
        task,
    }
}

/// A minimal client: one identity, one link, its own timestamps.
struct Client {
    identity: Keypair,
    link: LinkHandle,
    registry: [u8; 32],
    last_ms: u64,
}

impl Client {
    async fn connect(server: &Server) -> Self {
        Self::connect_as(server, keypair()).await
    }

    async fn connect_as(server: &Server, identity: Keypair) -> Self {
        let link = dial(
            config(identity.clone(), AllowList::new()),
            &server.addr,
            Arc::new(NoService),
            PATIENCE,
        )
        .await
        .unwrap();
        // The client knows the server's node key, not its stream: it asks.
        let info = info(&link).await;
        assert_eq!(&info.stream_key, server.registry.stream_key().as_bytes());
        Self {
            identity,
            link,
            registry: info.stream_key,
            last_ms: 0,
        }
    }

    fn next_ms(&mut self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        self.last_ms = now.max(self.last_ms + 1);
        self.last_ms
    }

    fn signed(&mut self, op: Op, name: &str) -> Vec<u8> {
        let ts = self.next_ms();
        encode(&WriteRequest::sign(
            op,
            Username::fold(name).unwrap(),
            self.registry,
            ts,
            &self.identity,
        ))
    }

    async fn send(&self, body: Vec<u8>) -> (String, i64) {
        let reply = self
            .link
            .request(Service::RegistryWrite, body)
            .await
            .unwrap();
        let reply = WriteReply::decode(&reply).unwrap();
        (reply.status.to_string(), reply.position)
    }

    async fn write(&mut self, op: Op, name: &str) -> (String, i64) {
        let body = self.signed(op, name);
        self.send(body).await
    }

    fn key(&self) -> PublicKey {
        *self.identity.public()
    }
}

async fn info(link: &LinkHandle) -> RegistryInfo {
    let answer = link
        .request(Service::RegistryWrite, INFO_REQUEST.to_vec())
        .await
        .unwrap();
    RegistryInfo::decode(&answer).unwrap()
}

fn encode(signed: &SignedRequest) -> Vec<u8> {
    let mut buf = [0u8; MAX_REQUEST_LEN];
    let n = signed.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// A replica of the registry's stream, pulled over `link` and read
/// locally, every record checked as a reader must.
struct Replica {
    stream: Stream,
}

impl Replica {
    fn new(path: &Path, server: &Server) -> Self {
        Self {
            stream: Stream::mirror(path, *server.registry.stream_key()).unwrap(),
        }
    }

    /// Pulls until the replica holds `position` (read-your-writes).
    async fn sync_to(&mut self, link: &LinkHandle, position: i64) {
        let key = *self.stream.public_key();
        let mut source = LinkSource::new(link.clone(), key);
        keyway_drayer::sync::pull(&mut self.stream, &mut source)
            .await
            .unwrap();
        assert!(self.stream.tip().unwrap() >= position);
    }

    fn lookup(&self, name: &str) -> Option<PublicKey> {
        let name = Username::fold(name).unwrap();
        let value = self.stream.get(name.as_str(), RECORD_KIND).unwrap()?;
        let signed = check_record(
            self.stream.public_key().as_bytes(),
            name.as_str(),
            RECORD_KIND,
            Some(&value),
        )
        .unwrap();
        (signed.request.op == Op::Register).then_some(signed.request.owner)
    }

    fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .stream
            .list(Some(RECORD_KIND))
            .unwrap()
            .into_iter()
            .filter(|e| self.lookup(&e.key).is_some())
            .map(|e| e.key)
            .collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_registrys_six_cases_through_links_and_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("db"), keypair()).await;
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    let mut replica = Replica::new(&dir.path().join("replica.drayer"), &server);

    // 1. register then lookup gives the caller's key (folded spelling).
    let (status, at) = alice.write(Op::Register, "Alice").await;
    assert_eq!(status, "OK");
    assert!(at > 0);
    replica.sync_to(&alice.link, at).await;
    assert_eq!(replica.lookup("alice"), Some(alice.key()));
    assert_eq!(replica.lookup("ALICE"), Some(alice.key()));

    // 2. two users, listed in order.
    let (status, at) = bob.write(Op::Register, "bob").await;
    assert_eq!(status, "OK");
    replica.sync_to(&bob.link, at).await;
    assert_eq!(replica.list(), ["alice", "bob"]);

    // 3. a repeated register is IDEMPOTENT, pointing at the record there.
    let first = replica.stream.tip().unwrap();
    let (status, at) = alice.write(Op::Register, "alice").await;
    assert_eq!(status, "IDEMPOTENT");
    assert!(at > 0 && at <= first);

    // 4. another identity cannot take the name.
    let (status, at) = bob.write(Op::Register, "alice").await;
    assert_eq!(status, "ERR:Username already taken");
    assert_eq!(at, 0);

    // 6. another identity cannot delete it.
    let (status, _) = bob.write(Op::Delete, "alice").await;
    assert_eq!(
        status,
        "ERR:Unauthorized: only the owner can delete this username"
    );
    replica.sync_to(&bob.link, 0).await;
    assert_eq!(replica.lookup("alice"), Some(alice.key()));

    // 5. the owner deletes; lookup finds nothing; a second delete finds nothing.
    let (status, at) = alice.write(Op::Delete, "alice").await;
    assert_eq!(status, "OK");
    replica.sync_to(&alice.link, at).await;
    assert_eq!(replica.lookup("alice"), None);
    assert_eq!(replica.list(), ["bob"]);
    let (status, _) = alice.write(Op::Delete, "alice").await;
    assert_eq!(status, "ERR:Username not found");

    // The server's own index agrees with the replica, and so does a
    // third client's replica that never wrote.
    assert_eq!(server.registry.list().unwrap(), ["bob"]);
    let carol = Client::connect(&server).await;
    let mut theirs = Replica::new(&dir.path().join("carol.drayer"), &server);
    // The server's current position, asked for as a one-shot lookup would.
    let now = info(&carol.link).await.position;
    assert_eq!(now, replica.stream.tip().unwrap());
    theirs.sync_to(&carol.link, now).await;
    assert_eq!(theirs.list(), ["bob"]);
    assert_eq!(theirs.lookup("bob"), Some(bob.key()));
    assert_eq!(theirs.lookup("alice"), None);
    server.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identities_race_for_one_name_and_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), keypair()).await;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(Client::connect(&server).await);
    }
    // Every request signed first, then all sent at once.
    let mut bodies: Vec<(Vec<u8>, Client)> = clients
        .into_iter()
        .map(|mut c| (c.signed(Op::Register, "contested"), c))
        .collect();
    let mut waits = Vec::new();
    for (body, client) in bodies.drain(..) {
        waits.push(tokio::spawn(async move {
            let (status, _) = client.send(body).await;
            (status, client.key())
        }));
    }
    let mut winners = Vec::new();
    for wait in waits {
        let (status, key) = tokio::time::timeout(PATIENCE, wait).await.unwrap().unwrap();
        match status.as_str() {
            "OK" => winners.push(key),
            "ERR:Username already taken" => {}
            other => panic!("unexpected reply {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let contested = Username::fold("contested").unwrap();
    assert_eq!(
        server.registry.lookup(&contested).unwrap(),
        Some(winners[0])
    );
    // One record appended, not fifty.
    let stream = Stream::open_read_only(server.registry.stream_path()).unwrap();
    assert_eq!(stream.list(Some(RECORD_KIND)).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_by_another_identity_is_refused_and_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), keypair()).await;
    let mut mallory = Client::connect(&server).await;
    let victim = keypair();
    // A request the victim really signed, sent over mallory's link.
    let ts = mallory.next_ms();
    let stolen = encode(&WriteRequest::sign(
        Op::Register,
        Username::fold("victim").unwrap(),
        mallory.registry,
        ts,
        &victim,
    ));
    let (status, _) = mallory.send(stolen).await;
    assert_eq!(
        status,
        "ERR:Unauthorized: the request is not signed by the caller"
    );
    // Mallory's own key with a forged signature.
    let mut forged = mallory.signed(Op::Register, "victim");
    let at = forged.len() - 10;
    forged[at] ^= 1;
    let (status, _) = mallory.send(forged).await;
    assert_eq!(status, "ERR:Bad signature");
    // Garbage, and a request for another registry.
    let (status, _) = mallory.send(vec![1, 2, 3]).await;
    assert_eq!(status, "ERR:Malformed request");
    mallory.registry = [0; 32];
    let (status, _) = mallory.write(Op::Register, "victim").await;
    assert_eq!(status, "ERR:Request is for another registry");
    let stream = Stream::open_read_only(server.registry.stream_path()).unwrap();
    assert_eq!(stream.count().unwrap(), 0);
    assert_eq!(server.registry.list().unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), keypair()).await;
    let mut alice = Client::connect(&server).await;
    let register = alice.signed(Op::Register, "alice");
    assert_eq!(alice.send(register.clone()).await.0, "OK");
    assert_eq!(alice.write(Op::Delete, "alice").await.0, "OK");
    // Someone who saw the first request replays it: the name stays free.
    assert_eq!(alice.send(register).await.0, "ERR:Replayed request");
    assert_eq!(server.registry.list().unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_stream_and_the_index_and_rebuilds_a_lost_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let identity = keypair();
    let server = serve(&db, identity.clone()).await;
    let stream_key = *server.registry.stream_key();
    let mut alice = Client::connect(&server).await;
    assert_eq!(alice.write(Op::Register, "alice").await.0, "OK");
    let alice2 = alice.signed(Op::Register, "alice2");
    assert_eq!(alice.send(alice2.clone()).await.0, "OK");
    assert_eq!(alice.write(Op::Delete, "alice2").await.0, "OK");
    let position = server.registry.position().unwrap();
    server.task.abort();
    drop(server);

    // Same directory: same stream key, same names, same position.
    let server = serve(&db, identity.clone()).await;
    assert_eq!(*server.registry.stream_key(), stream_key);
    assert_eq!(server.registry.position().unwrap(), position);
    assert_eq!(server.registry.list().unwrap(), ["alice"]);
    let mut bob = Client::connect(&server).await;
    assert_eq!(
        bob.write(Op::Register, "alice").await.0,
        "ERR:Username already taken"
    );
    server.task.abort();
    drop(server);

    // The index lost: rebuilt from the stream, owners' timestamps too.
    std::fs::remove_file(db.join(keyway_registry::server::INDEX_FILE)).unwrap();
    let server = serve(&db, identity).await;
    assert_eq!(server.registry.position().unwrap(), position);
    assert_eq!(server.registry.list().unwrap(), ["alice"]);
    let alice_name = Username::fold("alice").unwrap();
    assert_eq!(
        server.registry.lookup(&alice_name).unwrap(),
        Some(*alice.identity.public())
    );
    // Her old request, replayed, is still older than her last write.
    let eve = Client::connect_as(&server, alice.identity.clone()).await;
    assert_eq!(eve.send(alice2).await.0, "ERR:Replayed request");
    // Alice again on a new link: her records are still hers.
    let mut alice_again = Client::connect_as(&server, alice.identity.clone()).await;
    alice_again.last_ms = alice.last_ms;
    assert_eq!(
        alice_again.write(Op::Register, "alice").await.0,
        "IDEMPOTENT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_allow_list_only_listed_writers_write_and_anyone_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let writer = keypair();
    let mut allow = AllowList::new();
    allow.allow(writer.public(), [Capability::RegistryWrite]);
    allow.allow_anyone([Capability::SyncAll]);
    let server = serve_allowing(dir.path(), keypair(), allow).await;
    let mut stranger = Client::connect(&server).await;
    let body = stranger.signed(Op::Register, "stranger");
    let refused = stranger
        .link
        .request(Service::RegistryWrite, body)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            keyway_link::connection::RequestError::Refused(
                keyway_core::link::Refusal::NotAuthorized
            )
        ),
        "{refused:?}"
    );
    let mut writer = Client::connect_as(&server, writer).await;
    let (status, at) = writer.write(Op::Register, "writer").await;
    assert_eq!(status, "OK");
    let mut replica = Replica::new(&dir.path().join("replica.drayer"), &server);
    replica.sync_to(&stranger.link, at).await;
    assert_eq!(replica.list(), ["writer"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_connected_at_once_all_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), keypair()).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Client::connect(&server).await);
    }
    let mut waits = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        waits.push(tokio::spawn(async move {
            client.write(Op::Register, &format!("user{i:03}")).await.0
        }));
    }
    for wait in waits {
        let status = tokio::time::timeout(PATIENCE, wait).await.unwrap().unwrap();
        assert_eq!(status, "OK");
    }
    let names = server.registry.list().unwrap();
    assert_eq!(names.len(), 100);
    assert_eq!(names[0], "user000");
    assert_eq!(names[99], "user099");
}
