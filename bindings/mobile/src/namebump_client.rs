//! Names for a phone app: claim, read, update and delete a name on a
//! namebump server, with Keyway's async client.

use std::sync::Arc;

use keyway_core::PublicKey;
use keyway_namebump::{Behavior, Client};
use tokio::sync::OnceCell;

use crate::error::KeywayError;
use crate::keypair::Keypair;
use crate::runtime::run;

/// This address's quota: names held and allowed.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Usage {
    /// 2 (IPv4) or 10 (IPv6).
    pub af: u8,
    pub names_used: u32,
    pub name_limit: u32,
}

/// A client of one server. Resolving `server` is the first call's work
/// (a constructor cannot suspend): a name that does not resolve fails that
/// call with `Network`.
#[derive(uniffi::Object)]
pub struct NamebumpClient {
    server: String,
    server_pk: PublicKey,
    client: Arc<OnceCell<Client>>,
}

impl std::fmt::Debug for NamebumpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamebumpClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl NamebumpClient {
    /// The client, resolving the server on first use (on the runtime).
    fn client(&self) -> impl Future<Output = Result<Client, KeywayError>> + Send + 'static {
        let cell = self.client.clone();
        let server = self.server.clone();
        let key = self.server_pk;
        async move {
            cell.get_or_try_init(|| Client::new(&server, key))
                .await
                .cloned()
                .map_err(KeywayError::from)
        }
    }
}

#[uniffi::export]
impl NamebumpClient {
    /// `server`: "host:port"; `server_pk_hex`: the server's public key
    /// (66 hex digits, what `keyway namebump serve` prints).
    #[uniffi::constructor]
    pub fn new(server: String, server_pk_hex: String) -> Result<Arc<Self>, KeywayError> {
        let server_pk = server_pk_hex
            .trim()
            .parse::<PublicKey>()
            .map_err(|e| KeywayError::InvalidInput(format!("server public key: {e}")))?;
        Ok(Arc::new(Self {
            server,
            server_pk,
            client: Arc::new(OnceCell::new()),
        }))
    }

    /// Claims `name` for `owner`, or updates it if `owner` holds it. When
    /// this address's quota is full it fails with `RejectedAtQuota` rather
    /// than bump the oldest name: behind a carrier's NAT that name is
    /// likely another user's (DONT_BUMP).
    pub async fn put(
        &self,
        name: String,
        value: Vec<u8>,
        owner: Arc<Keypair>,
    ) -> Result<(), KeywayError> {
        let client = self.client();
        run(async move {
            let client = client.await?;
            let key = &owner.inner;
            Ok(client
                .put(name.as_bytes(), &value, key, Behavior::DontBump, None)
                .await?)
        })
        .await
    }

    /// The value of `name`, or null when it does not exist.
    pub async fn get(&self, name: String) -> Result<Option<Vec<u8>>, KeywayError> {
        let client = self.client();
        run(async move {
            let client = client.await?;
            Ok(client.get(name.as_bytes()).await?.map(|r| r.value))
        })
        .await
    }

    /// Deletes `name`, owned by `owner` (a missing name is deleted too).
    pub async fn delete(&self, name: String, owner: Arc<Keypair>) -> Result<(), KeywayError> {
        let client = self.client();
        run(async move {
            let client = client.await?;
            Ok(client.delete(name.as_bytes(), &owner.inner, None).await?)
        })
        .await
    }

    /// This address's quota (signed by `owner`; any key gets the same).
    pub async fn usage(&self, owner: Arc<Keypair>) -> Result<Usage, KeywayError> {
        let client = self.client();
        run(async move {
            let client = client.await?;
            let usage = client.usage(&owner.inner, None).await?;
            Ok(Usage {
                af: usage.af,
                names_used: usage.names_used,
                name_limit: usage.name_limit,
            })
        })
        .await
    }
}
