//! Issue 11, item 12, with the unmodified reference client: 1,100
//! connections from 50 loopback addresses trickle a byte every 3 s (and
//! reconnect whenever closed), and the reference client, from 127.0.0.1,
//! still puts and gets. Its GET depends on TCP: the value is larger than
//! its unpadded request, so the server does not answer it over UDP.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{Op, Packet};
use keyway_core::rand_core::UnwrapErr;
use keyway_namebump::{Clock, Server, ServerConfig, SqlStore, SystemClock};
use keyway_tests::reference::{Venv, interop_dir};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::watch;

fn key() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

/// Raises the open-files soft limit towards the hard one if below `needed`.
fn ensure_open_files(needed: u64) {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current.unwrap_or(u64::MAX) < needed {
            let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(raised),
                    maximum: limit.maximum,
                },
            );
        }
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        assert!(
            soft >= needed,
            "this test holds about {needed} sockets: raise the hard limit (ulimit -Hn) to at least that"
        );
    }
}

/// Connects from `source` again and again, sending `request` one byte
/// every 3 s, until `stop` says so.
async fn trickle(
    server: SocketAddr,
    source: IpAddr,
    request: Arc<Vec<u8>>,
    connected: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut counted = false;
    // Bounded: 200 connections of at least 1 s each outlast the test.
    for _ in 0..200 {
        if *stop.borrow() {
            return;
        }
        let connect = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            tokio::time::timeout(Duration::from_secs(10), socket.connect(server))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
        };
        if let Ok(mut stream) = connect.await {
            if !counted {
                counted = true;
                connected.fetch_add(1, Ordering::SeqCst);
            }
            for byte in request.iter() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(3)) => {}
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_puts_and_gets_while_1100_connections_trickle() {
    const SOURCES: usize = 50;
    const CONNECTIONS: usize = 1_100;
    ensure_open_files(2 * CONNECTIONS as u64 + 512);
    let venv = Venv::namebump().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(
        &format!("sqlite:{}", dir.path().join("nb.db").display()),
        Default::default(),
    )
    .await
    .unwrap();
    // The default settings, on an ephemeral port.
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..ServerConfig::default()
    };
    let server = Server::start(config, key(), store, Arc::new(SystemClock))
        .await
        .unwrap();
    let addr = server.tcp_addrs()[0];

    // The bytes trickled: the start of a real sealed GET.
    let reply = key();
    let mut p = Packet::new(Op::Get, 5, SystemClock.now(), b"slow", b"");
    p.reply_pk = Some(*reply.public().as_bytes());
    p.vkc = p.reply_pk;
    let mut plain = vec![0u8; MAX_PACKET_LEN];
    let n = p.encode(&mut plain).unwrap();
    let mut sealed = vec![0u8; ecies::sealed_len(n)];
    ecies::seal(
        server.public_key(),
        &plain[..n],
        &mut UnwrapErr(getrandom::SysRng),
        &mut sealed,
    )
    .unwrap();
    let request = Arc::new(sealed);

    let connected = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let tricklers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let source: IpAddr = format!("127.0.0.{}", 10 + i % SOURCES).parse().unwrap();
            tokio::spawn(trickle(
                addr,
                source,
                request.clone(),
                connected.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    for _ in 0..600 {
        if connected.load(Ordering::SeqCst) == CONNECTIONS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connected.load(Ordering::SeqCst), CONNECTIONS);
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The reference client bounds itself: 3 attempts of 2 s, 0.5 s apart.
    let value = vec![0x5a_u8; 600];
    let input = json!({
        "port": addr.port(),
        "server_pk": server.public_key().to_string(),
        "name": "hostage",
        "value_hex": base16ct::lower::encode_string(&value),
    });
    let script = interop_dir().join("namebump_ref_put_get.py");
    let out = tokio::task::spawn_blocking(move || venv.run(&script, input.to_string().as_bytes()))
        .await
        .unwrap()
        .unwrap();
    let seen: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(seen.get("error"), None, "{seen}");
    assert_eq!(seen["put_op"], json!(1));
    assert_eq!(
        seen["get_value_hex"],
        json!(base16ct::lower::encode_string(&value))
    );
    assert!(
        server
            .metrics()
            .dropped_count("too_many_connections_from_source")
            > 0
    );

    stop.send_replace(true);
    for t in tricklers {
        t.await.unwrap();
    }
    server.shutdown(Duration::from_secs(5)).await;
}
