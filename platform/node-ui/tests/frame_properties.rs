//! Properties of the sealed channel and the pairing (issue 16, item 7):
//! whatever an attacker does to the frames in flight — replay, reorder,
//! alter, truncate — the opener refuses it and its state does not move, so
//! the genuine stream still opens afterwards; and pairing messages that are
//! not exactly the protocol's never pair.
#![allow(clippy::unwrap_used)]

use keyway_node_ui::PairingToken;
use keyway_node_ui::channel::{FrameError, HEADER_LEN, client_channel, node_channel};
use keyway_node_ui::key_schedule::session_keys;
use keyway_node_ui::pairing::{Initiator, Responder};
use keyway_node_ui::token::TokenSlot;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Attack {
    /// Deliver an already delivered frame again.
    Replay(usize),
    /// Deliver a frame beyond the next one.
    Skip(usize),
    /// Flip one bit anywhere in the next frame.
    FlipBit(usize, u8),
    /// Cut the next frame short.
    Truncate(usize),
    /// Append bytes to the next frame.
    Extend(Vec<u8>),
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        any::<usize>().prop_map(Attack::Replay),
        any::<usize>().prop_map(Attack::Skip),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Attack::FlipBit(i, b)),
        any::<usize>().prop_map(Attack::Truncate),
        proptest::collection::vec(any::<u8>(), 1..32).prop_map(Attack::Extend),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tampered_frames_are_refused_and_the_genuine_stream_still_opens(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 2..12),
        // (position in the stream, attack) pairs, applied before delivering that frame.
        attacks in proptest::collection::vec((any::<usize>(), attack()), 1..8),
        shared in any::<[u8; 32]>(),
        th in any::<[u8; 32]>(),
    ) {
        let keys = session_keys(&shared, &th);
        let (mut sealer, _) = client_channel(&keys);
        let (_, mut opener) = node_channel(&keys);
        let frames: Vec<Vec<u8>> = messages.iter().map(|m| sealer.seal(m).unwrap()).collect();
        for (next, message) in messages.iter().enumerate() {
            for (at, attack) in &attacks {
                if at % messages.len() != next {
                    continue;
                }
                let (forged, want): (Vec<u8>, fn(&FrameError) -> bool) = match attack {
                    Attack::Replay(i) if next > 0 => (
                        frames[i % next].clone(),
                        |e| matches!(e, FrameError::Replayed { .. }),
                    ),
                    Attack::Skip(i) if next + 1 < frames.len() => (
                        frames[next + 1 + i % (frames.len() - next - 1)].clone(),
                        |e| matches!(e, FrameError::Reordered { .. }),
                    ),
                    Attack::FlipBit(i, bit) => {
                        let mut f = frames[next].clone();
                        let i = i % f.len();
                        f[i] ^= 1 << bit;
                        (f, |_| true)
                    }
                    Attack::Truncate(i) => {
                        let f = &frames[next];
                        (f[..i % f.len()].to_vec(), |_| true)
                    }
                    Attack::Extend(tail) => {
                        let mut f = frames[next].clone();
                        f.extend_from_slice(tail);
                        (f, |e| matches!(e, FrameError::Altered { .. }))
                    }
                    _ => continue,
                };
                let before = opener.expected();
                let refused = opener.open(&forged);
                prop_assert!(refused.is_err(), "{attack:?} at {next} was accepted");
                let err = refused.unwrap_err();
                prop_assert!(want(&err), "{attack:?} at {next}: {err:?}");
                prop_assert_eq!(opener.expected(), before);
            }
            prop_assert_eq!(&opener.open(&frames[next]).unwrap(), message);
        }
    }

    #[test]
    fn a_frame_with_its_counter_rewritten_never_opens(
        message in proptest::collection::vec(any::<u8>(), 0..64),
        sent_before in 0u64..4,
        claimed in any::<u64>(),
    ) {
        let keys = session_keys(&[7; 32], &[8; 32]);
        let (mut sealer, _) = client_channel(&keys);
        let (_, mut opener) = node_channel(&keys);
        for _ in 0..sent_before {
            let f = sealer.seal(b"earlier").unwrap();
            opener.open(&f).unwrap();
        }
        let mut frame = sealer.seal(&message).unwrap();
        prop_assume!(claimed != sent_before);
        frame[1..HEADER_LEN].copy_from_slice(&claimed.to_be_bytes());
        prop_assert!(opener.open(&frame).is_err());
        prop_assert_eq!(opener.expected(), sent_before);
    }

    #[test]
    fn arbitrary_pairing_messages_never_pair(
        hello in proptest::collection::vec(any::<u8>(), 0..80),
        confirm in proptest::collection::vec(any::<u8>(), 0..40),
        fix_type in any::<bool>(),
    ) {
        let token = PairingToken::from_bytes([3; 32]);
        let mut slot = TokenSlot::new(token.clone());
        let mut responder = Responder::new(&[5; 32]).unwrap();
        // Either arbitrary bytes or a genuine hello, so the confirm step is reached too.
        let hello = if fix_type {
            Initiator::new(&[6; 32], token).unwrap().1.to_vec()
        } else {
            hello
        };
        if responder.handle_hello(&hello).is_ok() {
            prop_assert!(responder.handle_confirm(&confirm, &mut slot).is_err());
        }
        prop_assert!(slot.is_armed(), "a failed pairing must not use the token up");
    }
}
