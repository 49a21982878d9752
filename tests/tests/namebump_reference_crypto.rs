//! Live cross-check against the PyPI reference (namebump 0.0.16,
//! aionetiface 0.0.24): the reference signs and encrypts PUTs that Keyway
//! decrypts and verifies, and Keyway signs and encrypts PUTs that the
//! reference decrypts and verifies, for random names and values of the
//! boundary lengths 0, 1, 50, 51, 1024 and 1025 bytes.
#![allow(clippy::unwrap_used)]

use getrandom::SysRng;
use keyway_core::Keypair;
use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{EncodeError, MAX_NAME_LEN, MAX_VALUE_LEN, Op, Packet};
use keyway_core::rand_core::{CryptoRng, Rng, UnwrapErr};
use keyway_tests::reference::{Venv, interop_dir};
use serde_json::{Value, json};

const LENGTHS: [usize; 6] = [0, 1, 50, 51, 1024, 1025];

struct Case {
    name: Vec<u8>,
    value: Vec<u8>,
    pkid: u32,
    updated: f64,
}

fn cases(rng: &mut impl Rng) -> Vec<Case> {
    let mut out = Vec::new();
    for name_len in LENGTHS {
        for value_len in LENGTHS {
            let mut name = vec![0u8; name_len];
            let mut value = vec![0u8; value_len];
            rng.fill_bytes(&mut name);
            rng.fill_bytes(&mut value);
            // pkid 0 is replaced by a random one in the reference (bug 27).
            let pkid = rng.next_u32() | 1;
            let updated = 1_795_000_000.0 + f64::from(rng.next_u32() % 1000) / 8.0;
            out.push(Case {
                name,
                value,
                pkid,
                updated,
            });
        }
    }
    out
}

struct Setup {
    server: Keypair,
    owner: Keypair,
    reply: Keypair,
    cases: Vec<Case>,
}

impl Setup {
    fn new(rng: &mut impl CryptoRng) -> Self {
        Self {
            server: Keypair::generate(rng),
            owner: Keypair::generate(rng),
            reply: Keypair::generate(rng),
            cases: cases(rng),
        }
    }
}

/// Sends one request to `interop/namebump_crypto_peer.py` and parses its answers.
fn run_reference_peer(request: &Value) -> Vec<Value> {
    let venv = Venv::namebump().unwrap();
    let script = interop_dir().join("namebump_crypto_peer.py");
    let out = venv.run(&script, request.to_string().as_bytes()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

fn unhex(v: &Value) -> Vec<u8> {
    base16ct::mixed::decode_vec(v.as_str().unwrap()).unwrap()
}

#[test]
fn reference_sealed_puts_open_and_verify_in_keyway() {
    let mut rng = UnwrapErr(SysRng);
    let Setup {
        server,
        owner,
        reply,
        cases,
    } = Setup::new(&mut rng);
    let request = json!({
        "mode": "seal",
        "server_pk": server.public().to_string(),
        "owner_priv": hex(&owner.secret_bytes()),
        "reply_pk": reply.public().to_string(),
        "cases": cases.iter().map(|c| json!({
            "name": hex(&c.name), "value": hex(&c.value), "pkid": c.pkid, "updated": c.updated,
        })).collect::<Vec<_>>(),
    });
    let answers = run_reference_peer(&request);
    assert_eq!(answers.len(), cases.len());

    let mut buf = vec![0u8; ecies::sealed_len(MAX_PACKET_LEN)];
    for (case, answer) in cases.iter().zip(&answers) {
        let wire = unhex(&answer["wire"]);
        let label = format!("name {} B, value {} B", case.name.len(), case.value.len());
        let plain =
            ecies::open(&server, &wire, &mut buf).unwrap_or_else(|e| panic!("{label}: {e}"));
        let p = Packet::decode(plain).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(p.verify_self_signed().unwrap(), *owner.public(), "{label}");
        assert_eq!(p.op, Op::Put, "{label}");
        assert_eq!(p.pkid, case.pkid, "{label}");
        assert_eq!(p.updated, case.updated, "{label}");
        assert_eq!(
            p.reply_pk.as_ref(),
            Some(reply.public().as_bytes()),
            "{label}"
        );
        // The reference silently truncates over-long input (quirk 18).
        assert_eq!(
            p.name,
            &case.name[..case.name.len().min(MAX_NAME_LEN)],
            "{label}"
        );
        assert_eq!(
            p.value,
            &case.value[..case.value.len().min(MAX_VALUE_LEN)],
            "{label}"
        );
    }
}

#[test]
fn keyway_sealed_puts_open_and_verify_in_the_reference() {
    let mut rng = UnwrapErr(SysRng);
    let Setup {
        server,
        owner,
        reply,
        cases,
    } = Setup::new(&mut rng);

    let mut sent = Vec::new();
    let mut refused = 0;
    for case in &cases {
        let mut p = Packet::new(Op::Put, case.pkid, case.updated, &case.name, &case.value);
        p.reply_pk = Some(*reply.public().as_bytes());
        match p.sign(&owner) {
            Ok(()) => {}
            // Keyway refuses over-long input instead of truncating it.
            Err(EncodeError::NameTooLong { len }) => {
                assert!(len > MAX_NAME_LEN && len == case.name.len());
                refused += 1;
                continue;
            }
            Err(EncodeError::ValueTooLong { len }) => {
                assert!(len > MAX_VALUE_LEN && len == case.value.len());
                refused += 1;
                continue;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        let mut plain = vec![0u8; MAX_PACKET_LEN];
        let n = p.encode(&mut plain).unwrap();
        let mut sealed = vec![0u8; ecies::sealed_len(n)];
        ecies::seal(server.public(), &plain[..n], &mut rng, &mut sealed).unwrap();
        sent.push((case, sealed));
    }
    let fit = |max: usize| LENGTHS.iter().filter(|&&l| l <= max).count();
    assert_eq!(sent.len(), fit(MAX_NAME_LEN) * fit(MAX_VALUE_LEN));
    assert_eq!(sent.len() + refused, cases.len());

    let request = json!({
        "mode": "open",
        "server_priv": hex(&server.secret_bytes()),
        "cases": sent.iter().map(|(_, w)| json!({"wire": hex(w)})).collect::<Vec<_>>(),
    });
    let answers = run_reference_peer(&request);
    assert_eq!(answers.len(), sent.len());
    for ((case, _), answer) in sent.iter().zip(&answers) {
        let label = format!("name {} B, value {} B", case.name.len(), case.value.len());
        assert_eq!(answer["valid_sig"], json!(true), "{label}");
        assert_eq!(answer["op"], json!(1), "{label}");
        assert_eq!(answer["pkid"], json!(case.pkid), "{label}");
        assert_eq!(unhex(&answer["name"]), case.name, "{label}");
        assert_eq!(unhex(&answer["value"]), case.value, "{label}");
        assert_eq!(unhex(&answer["vkc"]), owner.public().as_bytes(), "{label}");
    }
}
