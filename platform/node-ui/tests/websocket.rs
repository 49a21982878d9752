//! The UI's HTTP and WebSocket shell over loopback, driven as a browser
//! would drive it but from Rust (the page's own run is tests/chromium.sh).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use keyway_node_ui::channel::{Opener, Sealer, client_channel};
use keyway_node_ui::pairing::Initiator;
use keyway_node_ui::rpc::Answer;
use keyway_node_ui::session::{FRAME_REFUSED, PAIRING_REFUSED, PROTOCOL_ERROR, TIMED_OUT};
use keyway_node_ui::{
    Deadlines, MAX_SESSIONS, PairingToken, ServeError, Status, UiHandle, serve,
    serve_with_deadlines,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const IDENTITY: &str = "02c0ffee";
const BOUND: Duration = Duration::from_secs(10);

async fn start() -> (PairingToken, UiHandle) {
    let (url, handle) = serve("127.0.0.1:0".parse().unwrap(), || Status {
        identity: IDENTITY.into(),
        ..Status::default()
    })
    .await
    .unwrap();
    let prefix = format!("http://{}/#pair=", handle.local_addr());
    let token = url.strip_prefix(&prefix).unwrap();
    (PairingToken::decode(token).unwrap(), handle)
}

async fn connect_with_origin(local: SocketAddr, origin: Option<&str>) -> Result<Ws, String> {
    let mut request = format!("ws://{local}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio::time::timeout(BOUND, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn connect(local: SocketAddr) -> Ws {
    connect_with_origin(local, Some(&format!("http://{local}")))
        .await
        .unwrap()
}

async fn recv(ws: &mut Ws) -> Message {
    loop {
        let message = tokio::time::timeout(BOUND, ws.next())
            .await
            .expect("the node answers in time")
            .expect("the node did not just drop the connection")
            .unwrap();
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

async fn expect_close(ws: &mut Ws) -> (u16, String) {
    match recv(ws).await {
        Message::Close(Some(frame)) => (frame.code.into(), frame.reason.to_string()),
        other => panic!("expected a close, got {other:?}"),
    }
}

fn random_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).unwrap();
    // Below the group order and never zero, whatever the draw.
    s[0] = 0x01;
    s
}

/// Runs the pairing; `Err` holds the close the node sent instead of its proof.
async fn try_pair(ws: &mut Ws, token: PairingToken) -> Result<(Sealer, Opener), (u16, String)> {
    let (mut page, hello) = Initiator::new(&random_secret(), token).unwrap();
    ws.send(Message::Binary(hello.to_vec().into()))
        .await
        .unwrap();
    let Message::Binary(key) = recv(ws).await else {
        panic!("expected the node's key")
    };
    let confirm = page.handle_key(&key).unwrap();
    ws.send(Message::Binary(confirm.to_vec().into()))
        .await
        .unwrap();
    match recv(ws).await {
        Message::Binary(proof) => Ok(client_channel(&page.handle_proof(&proof).unwrap())),
        Message::Close(Some(frame)) => Err((frame.code.into(), frame.reason.to_string())),
        other => panic!("unexpected {other:?}"),
    }
}

async fn request_status(ws: &mut Ws, sealer: &mut Sealer, opener: &mut Opener, id: u64) -> Vec<u8> {
    let frame = sealer
        .seal(format!(r#"{{"id":{id},"method":"status"}}"#).as_bytes())
        .unwrap();
    ws.send(Message::Binary(frame.clone().into()))
        .await
        .unwrap();
    let Message::Binary(answer) = recv(ws).await else {
        panic!("expected an answer")
    };
    let answer: Answer = serde_json::from_slice(&opener.open(&answer).unwrap()).unwrap();
    assert_eq!(answer.id, Some(id));
    assert_eq!(answer.status.unwrap().identity, IDENTITY);
    frame
}

#[tokio::test]
async fn a_non_loopback_address_is_refused() {
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let err = serve(addr.parse().unwrap(), Status::default)
            .await
            .unwrap_err();
        assert!(matches!(err, ServeError::NotLoopback(_)), "{err}");
        assert!(err.to_string().contains("loopback only"), "{err}");
    }
}

async fn http_get(local: SocketAddr, host: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(local).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(BOUND, tcp.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused() {
    let (_, handle) = start().await;
    let local = handle.local_addr();
    // What a browser sends after DNS rebinding points attacker.example at loopback.
    let rebound = http_get(local, &format!("attacker.example:{}", local.port())).await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(!rebound.contains("<html"));
    let page = http_get(local, &local.to_string()).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(page.contains("<script src=\"/ui.js\""));
}

#[tokio::test]
async fn a_websocket_without_this_pages_origin_is_refused() {
    let (_, handle) = start().await;
    let local = handle.local_addr();
    for origin in [Some("http://attacker.example"), Some("null"), None] {
        let err = connect_with_origin(local, origin).await.unwrap_err();
        assert!(err.contains("403"), "{origin:?}: {err}");
    }
}

#[tokio::test]
async fn a_paired_client_gets_status_and_a_replayed_frame_closes_the_session() {
    let (token, handle) = start().await;
    let mut ws = connect(handle.local_addr()).await;
    let (mut sealer, mut opener) = try_pair(&mut ws, token).await.unwrap();
    let first = request_status(&mut ws, &mut sealer, &mut opener, 1).await;
    request_status(&mut ws, &mut sealer, &mut opener, 2).await;
    ws.send(Message::Binary(first.into())).await.unwrap();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, FRAME_REFUSED);
    assert_eq!(reason, "replayed frame (counter 0, expected 2)");
}

#[tokio::test]
async fn altered_and_reordered_frames_close_the_session() {
    let (_, handle) = start().await;
    for attack in ["altered", "reordered"] {
        let url = handle.new_pairing_url().unwrap();
        let token = PairingToken::decode(url.rsplit('=').next().unwrap()).unwrap();
        let mut ws = connect(handle.local_addr()).await;
        let (mut sealer, _) = try_pair(&mut ws, token).await.unwrap();
        let first = sealer.seal(br#"{"id":1,"method":"status"}"#).unwrap();
        let second = sealer.seal(br#"{"id":2,"method":"status"}"#).unwrap();
        let forged = if attack == "altered" {
            let mut f = first;
            f[12] ^= 0x80;
            f
        } else {
            second
        };
        ws.send(Message::Binary(forged.into())).await.unwrap();
        let (code, reason) = expect_close(&mut ws).await;
        assert_eq!(code, FRAME_REFUSED);
        assert!(reason.starts_with(attack), "{reason}");
    }
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_owners_token_still_pairs() {
    let (token, handle) = start().await;
    let mut intruder = connect(handle.local_addr()).await;
    let refused = try_pair(&mut intruder, PairingToken::from_bytes([0x42; 32])).await;
    assert_eq!(
        refused.err(),
        Some((
            PAIRING_REFUSED,
            "pairing refused: wrong pairing token".into()
        ))
    );
    let mut owner = connect(handle.local_addr()).await;
    assert!(try_pair(&mut owner, token).await.is_ok());
}

#[tokio::test]
async fn a_token_pairs_once_and_a_new_url_revokes_the_unused_one() {
    let (token, handle) = start().await;
    let mut first = connect(handle.local_addr()).await;
    assert!(try_pair(&mut first, token.clone()).await.is_ok());
    let mut second = connect(handle.local_addr()).await;
    let refused = try_pair(&mut second, token).await.err().unwrap();
    assert_eq!(refused.0, PAIRING_REFUSED);
    assert!(refused.1.contains("already used"), "{}", refused.1);

    let decode = |url: String| PairingToken::decode(url.rsplit('=').next().unwrap()).unwrap();
    let stale = decode(handle.new_pairing_url().unwrap());
    let fresh = decode(handle.new_pairing_url().unwrap());
    let mut third = connect(handle.local_addr()).await;
    assert_eq!(
        try_pair(&mut third, stale).await.err().unwrap().0,
        PAIRING_REFUSED
    );
    let mut fourth = connect(handle.local_addr()).await;
    assert!(try_pair(&mut fourth, fresh).await.is_ok());
}

#[tokio::test]
async fn a_text_message_is_a_protocol_error() {
    let (_, handle) = start().await;
    let mut ws = connect(handle.local_addr()).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(expect_close(&mut ws).await.0, PROTOCOL_ERROR);
}

#[tokio::test]
async fn sessions_are_capped() {
    let (_, handle) = start().await;
    let local = handle.local_addr();
    let mut open = Vec::new();
    for _ in 0..MAX_SESSIONS {
        open.push(connect(local).await);
    }
    let err = connect_with_origin(local, Some(&format!("http://{local}")))
        .await
        .unwrap_err();
    assert!(err.contains("503"), "{err}");
    // A closed session gives its place back.
    let mut gone = open.pop().unwrap();
    gone.close(None).await.unwrap();
    open.push(connect_retrying(local).await);
}

#[tokio::test]
async fn dropping_the_handle_closes_paired_sessions() {
    let (token, handle) = start().await;
    let mut ws = connect(handle.local_addr()).await;
    try_pair(&mut ws, token).await.unwrap();
    drop(handle);
    assert_eq!(expect_close(&mut ws).await.0, 1001);
}

#[tokio::test]
async fn a_peer_that_stalls_mid_pairing_is_closed_and_its_place_freed() {
    let deadlines = Deadlines {
        pairing: Duration::from_millis(200),
        idle: Duration::from_millis(200),
    };
    let (url, handle) =
        serve_with_deadlines("127.0.0.1:0".parse().unwrap(), Status::default, deadlines)
            .await
            .unwrap();
    let local = handle.local_addr();
    // Silent from the start: closed with TIMED_OUT.
    let mut silent = connect(local).await;
    assert_eq!(expect_close(&mut silent).await.0, TIMED_OUT);
    // Stops after the hello: the same.
    let mut stalled = connect(local).await;
    let (_, hello) = Initiator::new(&random_secret(), PairingToken::from_bytes([1; 32])).unwrap();
    stalled
        .send(Message::Binary(hello.to_vec().into()))
        .await
        .unwrap();
    assert!(matches!(recv(&mut stalled).await, Message::Binary(_)));
    assert_eq!(expect_close(&mut stalled).await.0, TIMED_OUT);
    // Paired, then silent: the idle deadline.
    let token = PairingToken::decode(url.rsplit('=').next().unwrap()).unwrap();
    let mut idle = connect(local).await;
    try_pair(&mut idle, token).await.unwrap();
    assert_eq!(expect_close(&mut idle).await.0, TIMED_OUT);
    // None of them holds a session place any more.
    let mut open = Vec::new();
    for _ in 0..MAX_SESSIONS {
        open.push(connect_retrying(local).await);
    }
}

/// Connects, retrying while the node is still giving places back.
async fn connect_retrying(local: SocketAddr) -> Ws {
    for _ in 0..50 {
        if let Ok(ws) = connect_with_origin(local, Some(&format!("http://{local}"))).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no session place came free");
}
