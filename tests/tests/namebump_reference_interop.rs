//! Interop with namebump 0.0.16 in both directions, over loopback:
//! the unmodified reference client against a Keyway server, and the Keyway
//! client against the reference server on MariaDB (127.0.0.1:3306).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_namebump::{
    Behavior, Client, ClientConfig, ClientError, Server, ServerConfig, SqlStore, SystemClock,
};
use keyway_tests::reference::{Venv, interop_dir};
use serde_json::{Value, json};

fn key() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_client_works_against_a_keyway_server() {
    let venv = Venv::namebump().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(
        &format!("sqlite:{}", dir.path().join("nb.db").display()),
        Default::default(),
    )
    .await
    .unwrap();
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        rate_limit: None,
        ..ServerConfig::default()
    };
    let server = Server::start(config, key(), store, Arc::new(SystemClock))
        .await
        .unwrap();
    let request = json!({ "port": server.udp_addrs()[0].port(), "server_pk": server.public_key().to_string() });
    let script = interop_dir().join("namebump_ref_client.py");
    let out =
        tokio::task::spawn_blocking(move || venv.run(&script, request.to_string().as_bytes()))
            .await
            .unwrap()
            .unwrap();
    let seen: Value = serde_json::from_slice(&out).unwrap();

    assert_eq!(seen["put"], json!([1, "hello world"]));
    assert_eq!(seen["get"][1], json!("hello world"));
    assert_eq!(
        seen["usage"],
        json!({"af": 2, "names_used": 1, "name_limit": 20})
    );
    assert_eq!(seen["update"], json!([1, "new value"]));
    assert_eq!(seen["get_updated"], json!("new value"));
    // The reference client returns error replies as packets (bug 13).
    assert_eq!(seen["non_owner_put_op"], json!(3));
    assert_eq!(seen["non_owner_delete_op"], json!(3));
    assert_eq!(seen["after_non_owner"], json!("new value"));
    assert_eq!(seen["delete_op"], json!(2));
    assert_eq!(seen["get_deleted"], json!([0, null, 0.0]));
    assert_eq!(seen["usage_after_delete"]["names_used"], json!(0));
    assert_eq!(seen["big_value_len"], json!(1024));
    assert_eq!(seen["usage_full"]["names_used"], json!(20));
    assert_eq!(seen["at_quota_dont"], json!("PutRejected"));
    // Nothing is bumpable: every name is younger than 30 days.
    assert_eq!(seen["at_quota_bump"], json!("PutRejected"));
    assert_eq!(
        seen["at_quota_throw"],
        json!("KeyError: 'putting this will bump.'")
    );
    server.shutdown(Duration::from_secs(2)).await;
}

/// The reference server in a child process; SIGTERM drops its database.
struct ReferenceServer {
    child: std::process::Child,
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        // SIGTERM, so the wrapper drops its database; then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_reference_server(venv: &Venv, port: u16, server: &Keypair) -> ReferenceServer {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    let db = format!(
        "keyway_ref_{}_{}",
        std::process::id(),
        u32::from_le_bytes(b)
    );
    let mut child = Command::new(venv.python())
        .arg(interop_dir().join("namebump_ref_server.py"))
        .env("PYTHONNOUSERSITE", "1")
        .env("NB_PORT", port.to_string())
        .env(
            "NB_ENC_SK",
            base16ct::lower::encode_string(&server.secret_bytes()),
        )
        .env("NB_ENC_PK", server.public().to_string())
        .env("NB_DB_NAME", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().unwrap_or_else(|| Ok(String::new())).unwrap();
        assert!(
            line.starts_with("listening"),
            "reference server did not start: {line:?}"
        );
    }
    ReferenceServer { child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyway_client_works_against_the_reference_server_on_mariadb() {
    let venv = Venv::namebump().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server_key = key();
    let _server = start_reference_server(&venv, port, &server_key);
    let client = |source: &str| {
        let source = source.parse().unwrap();
        let pk = *server_key.public();
        async move {
            Client::new(&format!("127.0.0.1:{port}"), pk)
                .await
                .unwrap()
                .with_config(ClientConfig {
                    source: Some(source),
                    ..ClientConfig::default()
                })
        }
    };
    let c = client("127.0.0.1").await;
    let (owner, other) = (key(), key());

    c.put(b"alice", b"hello world", &owner, Behavior::Bump, None)
        .await
        .unwrap();
    let r = c.get(b"alice").await.unwrap().unwrap();
    assert_eq!(
        (r.value.as_slice(), r.owner),
        (&b"hello world"[..], *owner.public().as_bytes())
    );
    assert_eq!(
        r.timestamp,
        r.timestamp.round(),
        "the reference returns whole seconds"
    );
    let u = c.usage(&owner, None).await.unwrap();
    assert_eq!((u.af, u.names_used, u.name_limit), (2, 1, 20));
    c.put(b"alice", b"new value", &owner, Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(c.get(b"alice").await.unwrap().unwrap().value, b"new value");
    assert!(matches!(
        c.put(b"alice", b"hijack", &other, Behavior::Bump, None)
            .await,
        Err(ClientError::NotOwner)
    ));
    c.delete(b"alice", &owner, None).await.unwrap();
    assert_eq!(c.get(b"alice").await.unwrap(), None);
    let value = vec![0x42u8; 1024];
    c.put(b"big", &value, &owner, Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(c.get(b"big").await.unwrap().unwrap().value, value);

    // Quota, from an address of its own.
    let q = client("127.0.0.5").await;
    for i in 0..20 {
        q.put(
            format!("q{i}").as_bytes(),
            b"v",
            &owner,
            Behavior::DontBump,
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(q.usage(&owner, None).await.unwrap().names_used, 20);
    assert!(matches!(
        q.put(b"q20", b"v", &owner, Behavior::DontBump, None).await,
        Err(ClientError::RejectedAtQuota)
    ));
    assert!(matches!(
        q.put(b"q20", b"v", &owner, Behavior::Throw, None).await,
        Err(ClientError::WouldBump)
    ));
}
