//! A registry server (keyway-registry's own) on loopback, for the
//! client's tests: any proven peer may write and sync, as
//! `keyway registry serve` allows by default.

use std::sync::Arc;

use keyway_core::Keypair;
use keyway_core::link::{AllowList, Capability, LinkConfig, NetworkKey};
use keyway_drayer::Stream;
use keyway_link::PeerAddress;
use keyway_link::node::Node;
use keyway_registry::{Registry, RegistryService};

pub(crate) struct Server {
    pub(crate) addr: PeerAddress,
    pub(crate) net: [u8; 32],
    registry: Arc<Registry>,
    serving: tokio::task::AbortHandle,
    dir: tempfile::TempDir,
}

impl Server {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let service = RegistryService::new(registry.clone()).unwrap();
        let mut allow = AllowList::new();
        allow.allow_anyone([Capability::SyncAll, Capability::RegistryWrite]);
        let net = [7; 32];
        let identity = Keypair::generate(&mut keyway_core::rand_core::UnwrapErr(getrandom::SysRng));
        let config = Arc::new(LinkConfig {
            identity: identity.clone(),
            network_key: NetworkKey::from_bytes(net),
            allow,
            limits: keyway_link::config::node_limits(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let node = Node::new(config, Arc::new(service), 200);
        let serving = tokio::spawn(node.serve(listener)).abort_handle();
        Self {
            addr: PeerAddress {
                key: *identity.public(),
                host: "127.0.0.1".into(),
                port,
            },
            net,
            registry,
            serving,
            dir,
        }
    }

    /// Stops accepting links.
    pub(crate) fn stop(&self) {
        self.serving.abort();
    }

    /// Serves the stream over Drayer's HTTP API; returns its URL.
    pub(crate) async fn serve_http(&self) -> String {
        self.serve_http_from(self.registry.stream_path()).await
    }

    /// Serves an empty mirror of the stream that never follows it;
    /// returns its URL.
    pub(crate) async fn serve_frozen_http(&self) -> String {
        let path = self.dir.path().join("frozen.drayer");
        drop(Stream::mirror(&path, *self.registry.stream_key()).unwrap());
        self.serve_http_from(&path).await
    }

    async fn serve_http_from(&self, path: &std::path::Path) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stream = Stream::open_read_only(path).unwrap();
        let router = keyway_drayer::http::router(vec![stream]);
        let listener = keyway_drayer::http::DeadlineListener::new(
            listener,
            std::time::Duration::from_secs(30),
        );
        tokio::spawn(keyway_drayer::http::serve(listener, router));
        url
    }
}
