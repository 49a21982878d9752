//! Serves the UI with a made-up status, for trying the page and for the
//! Chromium test (`tests/chromium.sh`). Prints `ui=<pairing URL>`, then
//! `pair=<URL>` for each line read on stdin (a fresh one-time URL), and
//! exits at the end of stdin.
//!
//!     cargo run -p keyway-node-ui --example ui_demo [-- 127.0.0.1:8080]

use std::io::BufRead;
use std::net::SocketAddr;

use keyway_node_ui::{Direction, LinkInfo, PeerInfo, Status, StreamInfo, serve};

fn status() -> Status {
    Status {
        identity: "02a1633cafcc01ebfb6d78e39f687a1f0995c62fc95f51ead10a02ee0be551b5dc".into(),
        listening: vec!["127.0.0.1:7400".into()],
        links: vec![LinkInfo {
            peer: Some("03f4c2d1a0b9e8f7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a29180706f5".into()),
            address: "127.0.0.1:51234".into(),
            direction: Direction::Inbound,
            age_secs: 42,
            bytes_in: 1024,
            bytes_out: 2048,
        }],
        peers: vec![PeerInfo {
            identity: "03f4c2d1a0b9e8f7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a29180706f5".into(),
            capabilities: vec!["message".into(), "sync:*".into()],
            blocked_for_secs: None,
        }],
        streams: vec![StreamInfo {
            public_key: "<b>not markup</b>".into(),
            path: "/tmp/demo.drayer".into(),
            records: 3,
            served: true,
        }],
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let (url, handle) = serve(addr, status).await?;
    println!("ui={url}");
    let lines = tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
            match handle.new_pairing_url() {
                Ok(url) => println!("pair={url}"),
                Err(e) => eprintln!("{e}"),
            }
        }
    });
    lines.await?;
    Ok(())
}
