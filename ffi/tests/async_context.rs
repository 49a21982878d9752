//! The blocking client called from a thread that is inside a tokio runtime
//! (a C library loaded into an async Rust program, a callback run on a
//! worker): every call returns `KEYWAY_ERR_IN_ASYNC_CONTEXT`, nothing
//! panics (not even a panic caught at the boundary) and nothing aborts.
//! Alone in its test binary: it installs a panic hook that counts panics.

use core::ffi::c_int;
use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyway_ffi::keypair::*;
use keyway_ffi::namebump_client::*;
use keyway_ffi::*;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A key that is a valid curve point (the server is never reached).
fn server_pk(kp: *const KeywayKeypair) -> [u8; 33] {
    let mut pk = [0u8; 33];
    // SAFETY: `kp` is live and `pk` holds 33 bytes.
    let status = unsafe { keyway_keypair_public(kp, pk.as_mut_ptr(), pk.len()) };
    assert_eq!(status, KEYWAY_OK);
    pk
}

/// Every entry point of the blocking client, called from the current
/// thread; returns their statuses.
fn call_everything(
    client: *const KeywayNamebumpClient,
    kp: *const KeywayKeypair,
    pk: &[u8; 33],
) -> Vec<c_int> {
    let mut statuses = Vec::new();
    let mut created = ptr::null_mut();
    // SAFETY: every pointer below is valid for what it is passed as.
    unsafe {
        statuses.push(keyway_namebump_client_new(
            c"127.0.0.1:9".as_ptr(),
            pk.as_ptr(),
            pk.len(),
            &mut created,
        ));
        statuses.push(keyway_namebump_put(
            client,
            b"name".as_ptr(),
            4,
            b"value".as_ptr(),
            5,
            kp,
            1,
        ));
        let mut value = [0u8; 1024];
        let mut value_len = 0usize;
        let mut found = false;
        statuses.push(keyway_namebump_get(
            client,
            b"name".as_ptr(),
            4,
            value.as_mut_ptr(),
            value.len(),
            &mut value_len,
            ptr::null_mut(),
            &mut found,
        ));
        statuses.push(keyway_namebump_delete(client, b"name".as_ptr(), 4, kp));
        let (mut used, mut limit, mut af) = (0u32, 0u32, 0u8);
        statuses.push(keyway_namebump_usage(
            client, kp, &mut used, &mut limit, &mut af,
        ));
    }
    assert!(created.is_null(), "no client is made inside a runtime");
    statuses
}

#[test]
fn the_blocking_client_refuses_to_run_inside_a_tokio_runtime() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        eprintln!("panic: {info}");
    }));
    let kp = {
        let mut kp = ptr::null_mut();
        // SAFETY: `kp` is a valid place for the handle.
        assert_eq!(unsafe { keyway_keypair_generate(&mut kp) }, KEYWAY_OK);
        kp
    };
    let pk = server_pk(kp);
    // Made outside any runtime: resolving a literal address needs no
    // network, and nothing listens on the discard port.
    let mut client = ptr::null_mut();
    // SAFETY: valid string, key and place for the handle.
    let status = unsafe {
        keyway_namebump_client_new(c"127.0.0.1:9".as_ptr(), pk.as_ptr(), pk.len(), &mut client)
    };
    assert_eq!(status, KEYWAY_OK);
    let (client_addr, kp_addr) = (client as usize, kp as usize);
    let everything = move || {
        call_everything(
            client_addr as *const KeywayNamebumpClient,
            kp_addr as *const KeywayKeypair,
            &pk,
        )
    };
    let refused = vec![KEYWAY_ERR_IN_ASYNC_CONTEXT; 5];

    // Inside `block_on` of a current-thread runtime.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert_eq!(current.block_on(async { everything() }), refused);
    // On a worker thread of a multi-thread runtime, inside a task.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let on_worker = multi
        .block_on(async { tokio::spawn(async move { everything() }).await })
        .expect("task");
    assert_eq!(on_worker, refused);
    // Under a runtime's `enter` guard (what `#[tokio::main]` code sees).
    {
        let _entered = multi.enter();
        assert_eq!(everything(), refused);
    }

    // SAFETY: a static NUL-terminated string.
    let message = unsafe { CStr::from_ptr(keyway_error_message(KEYWAY_ERR_IN_ASYNC_CONTEXT)) };
    assert!(
        message.to_str().unwrap_or("").contains("tokio runtime"),
        "{message:?}"
    );

    // Freeing inside a runtime must not panic either (dropping a runtime
    // there does) nor block.
    current.block_on(async {
        // SAFETY: made above, freed once, no call running.
        unsafe { keyway_namebump_client_free(client) };
    });
    // SAFETY: made above, freed once.
    unsafe { keyway_keypair_free(kp) };
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic was caught");
}
