//! Who may reach the UI: a loopback listener, and requests that name it.
//!
//! Loopback keeps other machines out. It does not keep out a web page in
//! the owner's own browser: a site whose name the attacker re-points at
//! 127.0.0.1 (DNS rebinding) makes the browser send its requests here with
//! `Host: attacker.example:PORT`, and any site can open a WebSocket to
//! loopback, with its own `Origin`. So every request must name this
//! listener in `Host`, and a WebSocket upgrade must also come from a page
//! of this listener (`Origin`). A local non-browser process can forge both
//! headers; what stops it is the pairing token, not these checks.

use std::net::SocketAddr;

/// A non-loopback address was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the UI listens on loopback only (127.0.0.0/8 or ::1): {0} would expose it to other machines"
)]
pub struct NotLoopback(pub SocketAddr);

/// Refuses any address outside loopback.
pub fn check_bind(addr: SocketAddr) -> Result<(), NotLoopback> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(NotLoopback(addr))
    }
}

/// The `host:port` names a browser may use for a listener on `local`:
/// its address literal and `localhost`.
pub fn allowed_hosts(local: SocketAddr) -> [String; 2] {
    [local.to_string(), format!("localhost:{}", local.port())]
}

/// Whether a `Host` header names the listener on `local`.
pub fn host_allowed(host: &str, local: SocketAddr) -> bool {
    allowed_hosts(local)
        .iter()
        .any(|allowed| host.eq_ignore_ascii_case(allowed))
}

/// Whether an `Origin` header is a page of the listener on `local`.
pub fn origin_allowed(origin: &str, local: SocketAddr) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|host| host_allowed(host, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_binds() {
        assert!(check_bind("127.0.0.1:0".parse().unwrap()).is_ok());
        assert!(check_bind("127.3.4.5:80".parse().unwrap()).is_ok());
        assert!(check_bind("[::1]:9".parse().unwrap()).is_ok());
        for refused in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.2:8080",
            "10.0.0.1:1",
        ] {
            let addr: SocketAddr = refused.parse().unwrap();
            let err = check_bind(addr).unwrap_err();
            assert!(err.to_string().contains(refused), "{err}");
        }
    }

    #[test]
    fn host_must_name_this_listener() {
        let local: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert!(host_allowed("127.0.0.1:4321", local));
        assert!(host_allowed("localhost:4321", local));
        assert!(host_allowed("LOCALHOST:4321", local));
        for refused in [
            "attacker.example:4321",
            "127.0.0.1:4322",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:4321.attacker.example",
            "",
        ] {
            assert!(!host_allowed(refused, local), "{refused}");
        }
        let v6: SocketAddr = "[::1]:55".parse().unwrap();
        assert!(host_allowed("[::1]:55", v6));
        assert!(!host_allowed("127.0.0.1:55", v6));
    }

    #[test]
    fn origin_must_be_a_page_of_this_listener() {
        let local: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert!(origin_allowed("http://127.0.0.1:4321", local));
        assert!(origin_allowed("http://localhost:4321", local));
        for refused in [
            "https://127.0.0.1:4321",
            "http://attacker.example:4321",
            "null",
            "http://127.0.0.1:4321/",
            "",
        ] {
            assert!(!origin_allowed(refused, local), "{refused}");
        }
    }
}
