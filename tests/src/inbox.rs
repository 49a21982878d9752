//! A router's delivered messages, as the sidewire tests read them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyway_sidewire::{Message, Router};

/// Every message `router` delivers from now on, in order.
pub fn inbox(router: &Router) -> Arc<Mutex<Vec<Message>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    router.add_msg_handler(move |m| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m.clone());
    });
    got
}

/// How many messages `got` holds once `n` arrived, or after 5 s. The
/// handlers run beside the ACK, not before it (a blocked handler must not
/// hold the ACK up), so the last message may reach its handler just after
/// its send returned.
pub async fn count(got: &Mutex<Vec<Message>>, n: usize) -> usize {
    let len = || got.lock().unwrap_or_else(|e| e.into_inner()).len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while len() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    len()
}

/// The payloads `got` holds once `n` arrived, or after 5 s ([`count`]).
pub async fn payloads(got: &Mutex<Vec<Message>>, n: usize) -> Vec<Vec<u8>> {
    count(got, n).await;
    got.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|m| m.data.clone())
        .collect()
}
