//! A blocking namebump client: Keyway's async client on a small runtime of
//! its own, so C programs need no event loop.
//!
//! Every call first checks that the calling thread is not inside a tokio
//! runtime: `block_on` there panics (tokio forbids blocking a runtime's
//! thread), and that panic, even caught at the boundary, would leave the
//! caller with a bare `KEYWAY_ERR_INTERNAL`. Such a call returns
//! `KEYWAY_ERR_IN_ASYNC_CONTEXT` instead, having done nothing.

use core::ffi::{c_char, c_int};
use std::ffi::CStr;
use std::future::Future;

use keyway_core::PublicKey;
use keyway_namebump::{Behavior, Client, ClientError, ErrorKind};
use tokio::runtime::{Handle, Runtime};

use crate::boundary::{Fail, guard, input, input_array, object, output, put};
use crate::keypair::{KEYWAY_PUBLIC_KEY_LEN, KeywayKeypair};
use crate::status::{
    KEYWAY_ERR_CLOCK_SKEW, KEYWAY_ERR_IN_ASYNC_CONTEXT, KEYWAY_ERR_INTERNAL,
    KEYWAY_ERR_INVALID_INPUT, KEYWAY_ERR_INVALID_KEY, KEYWAY_ERR_MALFORMED, KEYWAY_ERR_NETWORK,
    KEYWAY_ERR_NOT_OWNER, KEYWAY_ERR_NULL, KEYWAY_ERR_QUOTA, KEYWAY_ERR_SERVER,
    KEYWAY_ERR_WOULD_BUMP,
};

/// A client of one namebump server (opaque). Thread-safe: any number of
/// threads may call it at once (each call blocks its own thread); free it
/// once, when no call is running. Its calls block, so a thread inside a
/// tokio runtime gets `KEYWAY_ERR_IN_ASYNC_CONTEXT` from every one of them
/// (`keyway_namebump_client_new` included) and nothing is done.
#[derive(Debug)]
pub struct KeywayNamebumpClient {
    runtime: Runtime,
    client: Client,
}

/// Refuses a thread that is inside a tokio runtime, where blocking is
/// forbidden (`block_on` panics) or would stall the caller's runtime.
/// `spawn_blocking` threads are refused too: tokio gives no way to tell
/// them apart, and a plain thread costs the caller little.
fn outside_runtime() -> Result<(), Fail> {
    match Handle::try_current() {
        Ok(_) => Err(KEYWAY_ERR_IN_ASYNC_CONTEXT),
        Err(_) => Ok(()),
    }
}

impl KeywayNamebumpClient {
    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Fail> {
        outside_runtime()?;
        Ok(self.runtime.block_on(future))
    }
}

/// The status code of each error kind (the one classification, issue 13).
/// A timeout is `KEYWAY_ERR_NETWORK`, as it always was: the codes are ABI.
fn client_error(e: ClientError) -> Fail {
    match e.kind() {
        ErrorKind::RejectedAtQuota => KEYWAY_ERR_QUOTA,
        ErrorKind::WouldBump => KEYWAY_ERR_WOULD_BUMP,
        ErrorKind::NotOwner => KEYWAY_ERR_NOT_OWNER,
        ErrorKind::ClockSkew => KEYWAY_ERR_CLOCK_SKEW,
        ErrorKind::ServerError => KEYWAY_ERR_SERVER,
        ErrorKind::Timeout | ErrorKind::Network => KEYWAY_ERR_NETWORK,
        ErrorKind::InvalidInput => KEYWAY_ERR_INVALID_INPUT,
        ErrorKind::BadReply => KEYWAY_ERR_MALFORMED,
    }
}

/// A client of the server at `server` ("host:port", resolved now) whose
/// public key is the 33 bytes at `server_pk`, stored in `*out`. Thread-safe.
///
/// # Safety
/// `server` a NUL-terminated string; `server_pk` valid for
/// `server_pk_len` bytes; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_client_new(
    server: *const c_char,
    server_pk: *const u8,
    server_pk_len: usize,
    out: *mut *mut KeywayNamebumpClient,
) -> c_int {
    guard(|| {
        if server.is_null() || out.is_null() {
            return Err(KEYWAY_ERR_NULL);
        }
        // SAFETY: non-null and NUL-terminated, as the caller vouches.
        let server = unsafe { CStr::from_ptr(server) }
            .to_str()
            .map_err(|_| KEYWAY_ERR_INVALID_INPUT)?;
        // SAFETY: the caller vouches for the buffer.
        let key: [u8; KEYWAY_PUBLIC_KEY_LEN] =
            unsafe { input_array(server_pk, server_pk_len, KEYWAY_ERR_INVALID_KEY) }?;
        let key = PublicKey::from_bytes(&key).map_err(|_| KEYWAY_ERR_INVALID_KEY)?;
        outside_runtime()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keyway-namebump")
            .enable_all()
            .build()
            .map_err(|_| KEYWAY_ERR_INTERNAL)?;
        let client = runtime
            .block_on(Client::new(server, key))
            .map_err(client_error)?;
        let handle = Box::into_raw(Box::new(KeywayNamebumpClient { runtime, client }));
        // SAFETY: checked non-null above.
        unsafe { put(out, handle) }
    })
}

fn behavior(byte: u8) -> Result<Behavior, Fail> {
    match byte {
        0 => Ok(Behavior::DontBump),
        1 => Ok(Behavior::Bump),
        2 => Ok(Behavior::Throw),
        _ => Err(KEYWAY_ERR_INVALID_INPUT),
    }
}

/// Claims or updates `name` with `value`, signed by `owner`; `behavior` is
/// one of `KEYWAY_NAMEBUMP_*_BUMP`. Blocks until the server answers or
/// three attempts fail. Thread-safe.
///
/// # Safety
/// `client` and `owner` live handles; buffers valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_put(
    client: *const KeywayNamebumpClient,
    name: *const u8,
    name_len: usize,
    value: *const u8,
    value_len: usize,
    owner: *const KeywayKeypair,
    behavior_flag: u8,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for handles and buffers.
        let (client, owner) = unsafe { (object(client)?, object(owner)?) };
        // SAFETY: as above.
        let (name, value) = unsafe { (input(name, name_len)?, input(value, value_len)?) };
        let behavior = behavior(behavior_flag)?;
        client
            .block_on(client.client.put(name, value, &owner.0, behavior, None))?
            .map_err(client_error)
    })
}

/// Reads `name`. When it exists, `*found` is true, the value goes to
/// (`value_out`, `cap`) with its length in `*value_len`, and, if
/// `owner_out` is not null, the owner's 33-byte key to `owner_out`. When
/// it does not, `*found` is false and `*value_len` 0. Thread-safe.
///
/// # Safety
/// `client` a live handle; buffers valid for their lengths; `owner_out`
/// null or valid for 33 bytes; `value_len` and `found` valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_get(
    client: *const KeywayNamebumpClient,
    name: *const u8,
    name_len: usize,
    value_out: *mut u8,
    cap: usize,
    value_len: *mut usize,
    owner_out: *mut u8,
    found: *mut bool,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the handle and buffers.
        let client = unsafe { object(client) }?;
        // SAFETY: as above.
        let name = unsafe { input(name, name_len) }?;
        if found.is_null() || value_len.is_null() {
            return Err(KEYWAY_ERR_NULL);
        }
        let record = client
            .block_on(client.client.get(name))?
            .map_err(client_error)?;
        // SAFETY: checked non-null; the caller vouches they are writable.
        unsafe { put(found, record.is_some()) }?;
        let Some(record) = record else {
            // SAFETY: as above.
            return unsafe { put(value_len, 0) };
        };
        if !owner_out.is_null() {
            // SAFETY: the caller vouches for 33 writable bytes.
            unsafe { crate::boundary::output_array(&record.owner, owner_out, 33) }?;
        }
        // SAFETY: as above.
        unsafe { output(&record.value, value_out, cap, value_len) }
    })
}

/// Deletes `name`, owned by `owner`. Deleting a missing name succeeds.
/// Thread-safe.
///
/// # Safety
/// As `keyway_namebump_put`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_delete(
    client: *const KeywayNamebumpClient,
    name: *const u8,
    name_len: usize,
    owner: *const KeywayKeypair,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for handles and buffers.
        let (client, owner) = unsafe { (object(client)?, object(owner)?) };
        // SAFETY: as above.
        let name = unsafe { input(name, name_len) }?;
        client
            .block_on(client.client.delete(name, &owner.0, None))?
            .map_err(client_error)
    })
}

/// The quota of the calling address, asked with `key`: names used, the
/// limit, and the address family (2 IPv4, 10 IPv6). Thread-safe.
///
/// # Safety
/// Handles live; the three outputs valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_usage(
    client: *const KeywayNamebumpClient,
    key: *const KeywayKeypair,
    names_used: *mut u32,
    name_limit: *mut u32,
    af: *mut u8,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the handles.
        let (client, key) = unsafe { (object(client)?, object(key)?) };
        if names_used.is_null() || name_limit.is_null() || af.is_null() {
            return Err(KEYWAY_ERR_NULL);
        }
        let usage = client
            .block_on(client.client.usage(&key.0, None))?
            .map_err(client_error)?;
        // SAFETY: checked non-null; the caller vouches they are writable.
        unsafe {
            put(names_used, usage.names_used)?;
            put(name_limit, usage.name_limit)?;
            put(af, usage.af)
        }
    })
}

/// Releases a client (its runtime's thread ends). Null is ignored. Not
/// while a call on it is running. Safe to call from a thread inside a tokio
/// runtime: the client's runtime then shuts down without waiting.
///
/// # Safety
/// `client` null or a handle from `keyway_namebump_client_new`, not yet
/// freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_client_free(client: *mut KeywayNamebumpClient) {
    if !client.is_null() {
        // SAFETY: made by Box::into_raw in keyway_namebump_client_new and
        // freed once, as the caller vouches.
        let client = unsafe { Box::from_raw(client) };
        // A panic must not unwind into C; there is nothing else to do.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let KeywayNamebumpClient { runtime, client } = *client;
            drop(client);
            // Dropping a runtime waits for its threads, which tokio
            // forbids (with a panic) inside another runtime; no call is
            // running, so nothing is lost by not waiting.
            if outside_runtime().is_ok() {
                drop(runtime);
            } else {
                runtime.shutdown_background();
            }
        }));
    }
}
