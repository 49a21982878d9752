//! A stand-in registry server for the client's tests, until the real one
//! (keyway-registry's server) is merged: the same wire formats and rules
//! (keyway-core's `registry`), on a stream file, over a link node.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use keyway_core::link::{AllowList, Capability, LinkConfig, NetworkKey, Refusal, Service};
use keyway_core::registry::{
    MAX_REPLY_LEN, Op, Outcome, RECORD_KIND, SignedRequest, Status, WriteReply, decide,
};
use keyway_core::{Keypair, PublicKey};
use keyway_drayer::Stream;
use keyway_link::PeerAddress;
use keyway_link::connection::Handler;
use keyway_link::node::Node;
use keyway_link::stream_sync::StreamServer;

pub(crate) struct Server {
    pub(crate) addr: PeerAddress,
    pub(crate) net: [u8; 32],
    path: PathBuf,
    serving: tokio::task::AbortHandle,
    _dir: tempfile::TempDir,
}

struct Registry {
    stream: Mutex<Stream>,
    streams: Arc<StreamServer>,
    key: [u8; 32],
    last: Mutex<HashMap<[u8; 33], u64>>,
}

impl Server {
    /// A server on loopback serving `clients` (writes and sync).
    pub(crate) async fn start(clients: &[&Keypair]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.stream");
        let stream = Stream::create(&path).unwrap();
        let key = stream.public_key().to_bytes();
        let streams = Arc::new(StreamServer::open(std::slice::from_ref(&path)).unwrap());
        let mut allow = AllowList::new();
        for client in clients {
            allow.allow(
                client.public(),
                [Capability::RegistryWrite, Capability::SyncAll],
            );
        }
        let net = [7; 32];
        let identity = Keypair::generate(&mut keyway_core::rand_core::UnwrapErr(getrandom::SysRng));
        let config = Arc::new(LinkConfig {
            identity: identity.clone(),
            network_key: NetworkKey::from_bytes(net),
            allow,
            limits: keyway_link::config::node_limits(),
        });
        let registry = Registry {
            stream: Mutex::new(stream),
            streams,
            key,
            last: Mutex::new(HashMap::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let node = Node::new(config, Arc::new(registry), 200);
        let serving = tokio::spawn(node.serve(listener)).abort_handle();
        Self {
            addr: PeerAddress {
                key: *identity.public(),
                host: "127.0.0.1".into(),
                port,
            },
            net,
            path,
            serving,
            _dir: dir,
        }
    }

    /// Stops accepting links.
    pub(crate) fn stop(&self) {
        self.serving.abort();
    }

    /// Serves the stream over Drayer's HTTP API; returns its URL.
    pub(crate) async fn serve_http(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = keyway_drayer::http::router(vec![Stream::open_read_only(&self.path).unwrap()]);
        let listener = keyway_drayer::http::DeadlineListener::new(
            listener,
            std::time::Duration::from_secs(30),
        );
        tokio::spawn(keyway_drayer::http::serve(listener, router));
        url
    }
}

impl Registry {
    fn write(&self, peer: &PublicKey, body: &[u8]) -> Vec<u8> {
        if body == [0] {
            return self.key.to_vec();
        }
        let (status, position) = match self.decide(peer, body) {
            Ok((status, position)) => (status, position),
            Err(text) => (Status::Err(text), 0),
        };
        let mut out = vec![0u8; MAX_REPLY_LEN];
        let n = WriteReply { status, position }.encode(&mut out).unwrap();
        out.truncate(n);
        out
    }

    fn decide(
        &self,
        peer: &PublicKey,
        body: &[u8],
    ) -> Result<(Status<'static>, i64), &'static str> {
        use keyway_core::registry::decide as rules;
        let signed = SignedRequest::decode(body).map_err(|_| rules::ERR_MALFORMED)?;
        let request = signed.request;
        if &request.owner != peer {
            return Err(rules::ERR_NOT_CALLER);
        }
        signed.verify().map_err(|_| rules::ERR_BAD_SIGNATURE)?;
        if request.registry != self.key {
            return Err(rules::ERR_OTHER_REGISTRY);
        }
        let mut last = self.last.lock().unwrap();
        if last
            .get(peer.as_bytes())
            .is_some_and(|&l| request.timestamp_ms <= l)
        {
            return Err(rules::ERR_REPLAYED);
        }
        let mut stream = self.stream.lock().unwrap();
        let name = request.name.as_str();
        let current = stream.get(name, RECORD_KIND).unwrap().map(|v| {
            let held = SignedRequest::decode(&v).unwrap().request;
            (held.op == Op::Register).then_some(held.owner)
        });
        match decide(request.op, peer, current.flatten().as_ref()) {
            Outcome::Refuse(text) => Err(text),
            Outcome::Idempotent => {
                let modified = stream
                    .list(Some(RECORD_KIND))
                    .unwrap()
                    .into_iter()
                    .find(|e| e.key == name)
                    .unwrap()
                    .modified;
                Ok((Status::Idempotent, modified))
            }
            Outcome::Append => {
                let meta = stream.set(name, RECORD_KIND, body).unwrap();
                last.insert(*peer.as_bytes(), request.timestamp_ms);
                Ok((Status::Ok, meta.modified))
            }
        }
    }
}

impl Handler for Registry {
    fn handle(
        &self,
        peer: PublicKey,
        service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        match service {
            Service::Sync => self.streams.handle(body),
            Service::RegistryWrite => {
                let out = self.write(&peer, &body);
                Box::pin(async move { Ok(out) })
            }
            _ => Box::pin(async { Err(Refusal::UnknownService) }),
        }
    }
}
