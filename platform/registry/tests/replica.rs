//! The client's replica on its own: records from a registry stream built
//! here (no server), checked, indexed and kept across restarts.
#![allow(clippy::unwrap_used)]

use keyway_core::Keypair;
use keyway_core::drayer::Meta;
use keyway_core::rand_core::UnwrapErr;
use keyway_core::registry::{MAX_REQUEST_LEN, Op, RECORD_KIND, Username, WriteRequest};
use keyway_drayer::Stream;
use keyway_drayer::sqlite::Body;
use keyway_drayer::sync::{Local, PullLimits, Source};
use keyway_registry::replica::{INDEX_FILE, Replica, ReplicaError};

fn keypair() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

/// The server's stream, written directly.
struct Registry {
    _dir: tempfile::TempDir,
    stream: Stream,
    clock: u64,
}

impl Registry {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stream = Stream::create(&dir.path().join("registry.stream")).unwrap();
        Self {
            _dir: dir,
            stream,
            clock: 1_800_000_000_000,
        }
    }

    fn key(&self) -> [u8; 32] {
        self.stream.public_key().to_bytes()
    }

    /// The encoded request `op` of `name` signed by `signer` but naming
    /// `owner` as the one who asks.
    fn request(&mut self, op: Op, name: &str, signer: &Keypair, owner: &Keypair) -> Vec<u8> {
        self.clock += 1;
        let mut signed = WriteRequest::sign(
            op,
            Username::fold(name).unwrap(),
            self.key(),
            self.clock,
            signer,
        );
        signed.request.owner = *owner.public();
        let mut out = vec![0u8; MAX_REQUEST_LEN];
        let n = signed.encode(&mut out).unwrap();
        out.truncate(n);
        out
    }

    fn write(&mut self, op: Op, name: &str, owner: &Keypair) {
        let value = self.request(op, name, owner, owner);
        self.stream.set(name, RECORD_KIND, &value).unwrap();
    }
}

fn limits() -> PullLimits {
    PullLimits::default()
}

async fn sync(replica: &mut Replica, registry: &mut Registry) -> Result<i64, ReplicaError> {
    replica.sync(Local(&mut registry.stream), &limits()).await
}

#[tokio::test]
async fn the_index_follows_registrations_and_deletions() {
    let mut registry = Registry::new();
    let (alice, bob) = (keypair(), keypair());
    registry.write(Op::Register, "alice", &alice);
    registry.write(Op::Register, "bob", &bob);
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), None).unwrap();
    let position = sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(position, registry.stream.tip().unwrap());
    assert_eq!(replica.lookup("alice").unwrap(), Some(*alice.public()));
    // Looked up as typed: folded first.
    assert_eq!(replica.lookup("BOB").unwrap(), Some(*bob.public()));
    assert_eq!(replica.list().unwrap(), ["alice", "bob"]);

    registry.write(Op::Delete, "alice", &alice);
    sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(replica.lookup("alice").unwrap(), None);
    assert_eq!(replica.list().unwrap(), ["bob"]);
    // A name freed and taken again belongs to its new owner.
    let carol = keypair();
    registry.write(Op::Register, "alice", &carol);
    sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(replica.lookup("alice").unwrap(), Some(*carol.public()));
    assert_eq!(
        replica.lookup("no such name").unwrap(),
        None,
        "invalid: none"
    );
}

#[tokio::test]
async fn a_record_whose_owner_signature_does_not_match_is_rejected_and_not_stored() {
    let mut registry = Registry::new();
    let (alice, mallory) = (keypair(), keypair());
    registry.write(Op::Register, "first", &alice);
    // The server (holding the stream key) claims alice asked for
    // "stolen"; the request is signed by someone else.
    let forged = registry.request(Op::Register, "stolen", &mallory, &alice);
    registry.stream.set("stolen", RECORD_KIND, &forged).unwrap();
    registry.write(Op::Register, "after", &alice);

    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), None).unwrap();
    let e = sync(&mut replica, &mut registry).await.unwrap_err();
    assert!(
        e.to_string().contains("owner's signature does not verify"),
        "{e}"
    );
    assert_eq!(
        replica.list().unwrap(),
        ["first"],
        "the record before it is kept"
    );
    assert_eq!(replica.lookup("stolen").unwrap(), None);
    // Not stored in the mirror either: the replica's position is the
    // record before the forged one, and a second sync fails the same way.
    let first_modified = registry.stream.modified_after(0, 1).unwrap()[0].0.modified;
    assert_eq!(replica.position().unwrap(), first_modified);
    assert!(sync(&mut replica, &mut registry).await.is_err());
    assert_eq!(replica.position().unwrap(), first_modified);
}

#[tokio::test]
async fn a_request_for_another_name_or_registry_is_rejected() {
    let mut registry = Registry::new();
    let alice = keypair();
    // Alice's genuine request for "alice", filed under "admin".
    let genuine = registry.request(Op::Register, "alice", &alice, &alice);
    registry.stream.set("admin", RECORD_KIND, &genuine).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), None).unwrap();
    let e = sync(&mut replica, &mut registry).await.unwrap_err();
    assert!(e.to_string().contains("holds a request for"), "{e}");
    assert_eq!(replica.position().unwrap(), 0);

    // Alice's request to another registry, replayed into this one.
    let mut other = Registry::new();
    let replayed = other.request(Op::Register, "alice", &alice, &alice);
    let mut registry = Registry::new();
    registry
        .stream
        .set("alice", RECORD_KIND, &replayed)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), None).unwrap();
    let e = sync(&mut replica, &mut registry).await.unwrap_err();
    assert!(e.to_string().contains("another registry"), "{e}");
    assert!(replica.list().unwrap().is_empty());
}

/// A source that alters the value of the record at `key` in transit:
/// flips a byte, or puts `swap` in its place.
struct Tampering<'a> {
    inner: Local<'a>,
    key: &'static str,
    swap: Option<Vec<u8>>,
}

impl Tampering<'_> {
    fn alter(&self, page: &mut [(Meta, Body)]) {
        for (_, body) in page.iter_mut().filter(|(_, b)| b.key == self.key) {
            if let Some(value) = body.value.as_mut() {
                match &self.swap {
                    Some(swap) => value.clone_from(swap),
                    // The timestamp's last byte: still a well-formed request.
                    None => value[74] ^= 1,
                }
            }
        }
    }
}

impl Source for Tampering<'_> {
    type Error = keyway_drayer::StreamError;

    async fn modified_after(&mut self, t: i64) -> Result<Vec<(Meta, Body)>, Self::Error> {
        let mut page = self.inner.modified_after(t).await?;
        self.alter(&mut page);
        Ok(page)
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, Self::Error> {
        self.inner.crdr(pdest).await
    }
}

#[tokio::test]
async fn a_tampered_record_is_rejected_and_not_stored() {
    let mut registry = Registry::new();
    let alice = keypair();
    registry.write(Op::Register, "alice", &alice);
    registry.write(Op::Register, "bob", &alice);
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), None).unwrap();
    let source = Tampering {
        inner: Local(&mut registry.stream),
        key: "bob",
        swap: None,
    };
    let e = replica.sync(source, &limits()).await.unwrap_err();
    // Caught by the owner's signature (checked first) — and the stream's
    // value hash would catch it too.
    assert!(e.to_string().contains("owner's signature"), "{e}");
    assert_eq!(replica.list().unwrap(), ["alice"]);

    // A genuine request of bob's owner (signed, but never published by
    // the registry) in place of the published one: the owner's
    // signature holds, the stream's does not.
    let unpublished = registry.request(Op::Delete, "bob", &alice, &alice);
    let source = Tampering {
        inner: Local(&mut registry.stream),
        key: "bob",
        swap: Some(unpublished),
    };
    let e = replica.sync(source, &limits()).await.unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert_eq!(replica.list().unwrap(), ["alice"]);
    // The genuine record is taken afterwards.
    sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(replica.list().unwrap(), ["alice", "bob"]);
}

#[tokio::test]
async fn a_restart_keeps_everything_and_a_lost_index_is_rebuilt() {
    let mut registry = Registry::new();
    let owners: Vec<Keypair> = (0..5).map(|_| keypair()).collect();
    for (i, owner) in owners.iter().enumerate() {
        registry.write(Op::Register, &format!("name{i}"), owner);
    }
    let dir = tempfile::tempdir().unwrap();
    let key = *registry.stream.public_key();
    let position = {
        let mut replica = Replica::open(dir.path(), key, None).unwrap();
        sync(&mut replica, &mut registry).await.unwrap()
    };
    let reopened = Replica::open(dir.path(), key, None).unwrap();
    assert_eq!(reopened.position().unwrap(), position);
    assert_eq!(reopened.count().unwrap(), 5);
    assert_eq!(reopened.lookup("name3").unwrap(), Some(*owners[3].public()));
    assert_eq!(Replica::stream_key_in(dir.path()).unwrap(), Some(key));
    drop(reopened);

    // The index is derived from the mirror: without it, it is rebuilt.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{suffix}")));
    }
    let rebuilt = Replica::open(dir.path(), key, None).unwrap();
    assert_eq!(rebuilt.count().unwrap(), 5);
    assert_eq!(rebuilt.lookup("name0").unwrap(), Some(*owners[0].public()));

    // A replica of another registry is refused.
    let other = Registry::new();
    assert!(Replica::open(dir.path(), *other.stream.public_key(), None).is_err());
}

#[tokio::test]
async fn a_newest_n_replica_holds_only_recent_names() {
    let mut registry = Registry::new();
    let owner = keypair();
    for i in 0..6 {
        registry.write(Op::Register, &format!("old{i}"), &owner);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), Some(3)).unwrap();
    sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(replica.list().unwrap(), ["old3", "old4", "old5"]);
    for i in 0..2 {
        registry.write(Op::Register, &format!("new{i}"), &owner);
    }
    let position = sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(position, registry.stream.tip().unwrap());
    assert_eq!(replica.list().unwrap(), ["new0", "new1", "old5"]);
    assert_eq!(replica.lookup("old0").unwrap(), None);
}

#[tokio::test]
async fn a_record_the_server_drops_from_its_stream_leaves_the_index() {
    let mut registry = Registry::new();
    let owner = keypair();
    for name in ["alice", "bob", "carol"] {
        registry.write(Op::Register, name, &owner);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path(), *registry.stream.public_key(), None).unwrap();
    sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(replica.list().unwrap(), ["alice", "bob", "carol"]);
    // Not a registry delete (no owner asked): a bare Drayer deletion.
    registry.stream.delete("bob", RECORD_KIND).unwrap();
    sync(&mut replica, &mut registry).await.unwrap();
    assert_eq!(replica.list().unwrap(), ["alice", "carol"]);
    assert_eq!(replica.lookup("bob").unwrap(), None);
}
