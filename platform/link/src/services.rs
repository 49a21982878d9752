//! What a node serves on its links: messages into an [`Inbox`], stream
//! pages from a [`StreamServer`]; anything else is an unknown service.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use keyway_core::PublicKey;
use keyway_core::link::{Refusal, Service};

use crate::connection::Handler;
use crate::messages::Inbox;
use crate::stream_sync::StreamServer;

/// A node's services.
#[derive(Debug, Default, Clone)]
pub struct Services {
    /// Where messages go (`None`: refused as an unknown service).
    pub inbox: Option<Arc<Inbox>>,
    /// The streams served (`None`: none).
    pub streams: Option<Arc<StreamServer>>,
}

impl Handler for Services {
    fn handle(
        &self,
        peer: PublicKey,
        service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        match (service, &self.inbox, &self.streams) {
            (Service::Message, Some(inbox), _) => inbox.handle(peer, body),
            (Service::Sync, _, Some(streams)) => streams.handle(body),
            _ => Box::pin(async { Err(Refusal::UnknownService) }),
        }
    }
}
