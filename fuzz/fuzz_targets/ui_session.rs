//! The node UI's WebSocket input (issue 16, item 7): what a local process
//! can send before pairing (hello, confirm) and after it (sealed frames,
//! and the JSON requests inside them). Input: messages, each a length
//! byte and that many bytes. Properties: no panic; nothing pairs without
//! the token, and a failed pairing leaves the token in the slot; a frame
//! that is not the peer's next genuine frame never opens.
#![no_main]

use keyway_node_ui::channel::{client_channel, node_channel};
use keyway_node_ui::key_schedule::session_keys;
use keyway_node_ui::pairing::{Initiator, Responder};
use keyway_node_ui::rpc::answer_json;
use keyway_node_ui::token::{PairingToken, TokenSlot};
use keyway_node_ui::Status;
use libfuzzer_sys::fuzz_target;

fn messages(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let len = usize::from(len).min(rest.len());
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let messages = messages(data);
    let token = PairingToken::from_bytes([0x5a; 32]);
    let mut slot = TokenSlot::new(token.clone());
    let mut node = Responder::new(&[0x11; 32]).expect("a valid scalar");

    // Pairing: the hostile hello, or a genuine one so the confirm step is reached.
    let hello = if mode & 1 == 0 {
        messages.first().copied().unwrap_or_default().to_vec()
    } else {
        Initiator::new(&[0x22; 32], token).expect("a valid scalar").1.to_vec()
    };
    if node.handle_hello(&hello).is_ok() {
        for confirm in messages.iter().skip(1).take(2) {
            assert!(node.handle_confirm(confirm, &mut slot).is_err());
        }
    }
    assert!(slot.is_armed(), "a failed pairing used the token up");

    // Sealed frames: hostile ones never open; genuine ones carry hostile JSON.
    let keys = session_keys(&[0x33; 32], &[0x44; 32]);
    let (mut page, _) = client_channel(&keys);
    let (_, mut opener) = node_channel(&keys);
    let source = || Status::default();
    for message in &messages {
        let before = opener.expected();
        if opener.open(message).is_ok() {
            panic!("a frame the page never sealed opened");
        }
        assert_eq!(opener.expected(), before);
        let frame = page.seal(message).expect("short messages seal");
        let request = opener.open(&frame).expect("the genuine next frame opens");
        let _ = answer_json(&request, &source);
    }
});
