//! One WebSocket session: pairing, then sealed requests and answers.
//!
//! Decision (issue 16): a refused frame — replayed, reordered, altered —
//! closes the session with close code [`FRAME_REFUSED`] and the reason as
//! text. On an in-order transport an honest page never sends such a frame,
//! so there is nothing to resynchronise, and a closed session leaves a
//! forger nothing further to probe. The pairing token is single-use, so the
//! owner gets a new URL from the node to pair again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::time::Instant;

use crate::channel::{MAX_PLAINTEXT_LEN, node_channel};
use crate::pairing::{PairingError, Responder};
use crate::rpc::answer_json;
use crate::server::{Shared, lock};

/// Close code: the message did not follow the protocol (wrong type, text frame).
pub const PROTOCOL_ERROR: u16 = 4000;
/// Close code: pairing refused (wrong or used token).
pub const PAIRING_REFUSED: u16 = 4001;
/// Close code: a sealed frame was refused (replayed, reordered, altered).
pub const FRAME_REFUSED: u16 = 4002;
/// Close code: the peer was silent past a deadline.
pub const TIMED_OUT: u16 = 4008;

/// A session's deadlines on the page's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The whole pairing must be done within this (default 10 s).
    pub pairing: Duration,
    /// A paired page may be silent this long (default 300 s): it asks for
    /// status every few seconds, but a browser throttles a background
    /// tab's timers to about once a minute.
    pub idle: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            pairing: Duration::from_secs(10),
            idle: Duration::from_secs(300),
        }
    }
}
/// Every send must be done within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a session ends.
#[derive(Debug)]
enum End {
    /// The peer went away or the socket failed: nothing to say.
    Quiet,
    /// Close with this code and reason.
    Close(u16, String),
}

pub(crate) async fn run(mut socket: WebSocket, shared: Arc<Shared>) {
    let mut closed = shared.closed.subscribe();
    let end = tokio::select! {
        end = session(&mut socket, &shared) => end,
        _ = closed.wait_for(|closed| *closed) => End::Close(1001, "the node's UI is shutting down".into()),
    };
    if let End::Close(code, reason) = end {
        tracing::info!(code, %reason, "UI session closed");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }
}

async fn session(socket: &mut WebSocket, shared: &Shared) -> End {
    match pair_and_serve(socket, shared).await {
        Ok(()) => End::Quiet,
        Err(end) => end,
    }
}

fn ephemeral_responder() -> Result<Responder, End> {
    // A draw outside [1, n) has probability about 2^-32; four tries bound the loop.
    for _ in 0..4 {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| End::Close(1011, format!("no randomness: {e}")))?;
        if let Ok(responder) = Responder::new(&secret) {
            return Ok(responder);
        }
    }
    Err(End::Close(1011, "no usable ephemeral key".into()))
}

fn refused(e: PairingError) -> End {
    match e {
        PairingError::Refused(_) => End::Close(PAIRING_REFUSED, e.to_string()),
        _ => End::Close(PROTOCOL_ERROR, e.to_string()),
    }
}

async fn pair_and_serve(socket: &mut WebSocket, shared: &Shared) -> Result<(), End> {
    let mut responder = ephemeral_responder()?;
    let deadline = Instant::now() + shared.deadlines.pairing;
    let hello = recv_binary(socket, deadline).await?;
    let key = responder.handle_hello(&hello).map_err(refused)?;
    send(socket, key.to_vec()).await?;
    let confirm = recv_binary(socket, deadline).await?;
    let confirmed = responder.handle_confirm(&confirm, &mut lock(&shared.slot));
    let (proof, keys) = confirmed.map_err(|e| {
        tracing::warn!(error = %e, "UI pairing refused");
        refused(e)
    })?;
    send(socket, proof.to_vec()).await?;
    tracing::info!("UI paired");
    let (mut sealer, mut opener) = node_channel(&keys);
    loop {
        let frame = recv_binary(socket, Instant::now() + shared.deadlines.idle).await?;
        let request = opener.open(&frame).map_err(|e| {
            tracing::warn!(error = %e, "UI frame refused");
            End::Close(FRAME_REFUSED, e.to_string())
        })?;
        let mut answer = answer_json(&request, &*shared.source);
        if answer.len() > MAX_PLAINTEXT_LEN {
            // Thousands of peers or streams: say so rather than end the session.
            answer = br#"{"id":null,"error":"the status is too large to send"}"#.to_vec();
        }
        let sealed = sealer
            .seal(&answer)
            .map_err(|e| End::Close(1011, e.to_string()))?;
        send(socket, sealed).await?;
    }
}

/// The next binary message before `deadline`; pings and pongs are skipped
/// (the deadline bounds how many).
async fn recv_binary(socket: &mut WebSocket, deadline: Instant) -> Result<Vec<u8>, End> {
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => return Err(End::Close(TIMED_OUT, "timed out".into())),
            Ok(None | Some(Err(_))) => return Err(End::Quiet),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Binary(bytes) => return Ok(bytes.to_vec()),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return Err(End::Quiet),
            Message::Text(_) => {
                return Err(End::Close(PROTOCOL_ERROR, "binary messages only".into()));
            }
        }
    }
}

async fn send(socket: &mut WebSocket, bytes: Vec<u8>) -> Result<(), End> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Binary(bytes.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(End::Quiet),
    }
}
