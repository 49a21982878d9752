//! `keyway demo --packet`: one namebump PUT, step by step, entirely in memory.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use getrandom::SysRng;
use keyway_core::Keypair;
use keyway_core::ecies;
use keyway_core::namebump::freshness::check_freshness;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{Op, Packet};
use keyway_core::rand_core::{Rng, UnwrapErr};

fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

pub(crate) fn run(out: &mut impl Write) -> Result<()> {
    let mut rng = UnwrapErr(SysRng);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs_f64();

    let owner = Keypair::generate(&mut rng);
    let server = Keypair::generate(&mut rng);
    let reply = Keypair::generate(&mut rng);
    writeln!(out, "1. keygen   owner  {}", owner.public())?;
    writeln!(out, "            server {}", server.public())?;
    writeln!(
        out,
        "            reply  {}  (the client's reply key)",
        reply.public()
    )?;

    let (name, value) = (b"demo".as_slice(), b"hello world".as_slice());
    let mut put = Packet::new(Op::Put, rng.next_u32() | 1, now, name, value);
    put.reply_pk = Some(*reply.public().as_bytes());
    writeln!(
        out,
        "2. build    PUT name={:?} value={:?} pkid={:#010x} updated={:.3} ttl={}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(value),
        put.pkid,
        put.updated,
        put.ttl
    )?;

    put.sign(&owner)?;
    let sig = put.sig.context("sign set no signature")?;
    writeln!(
        out,
        "3. sign     ECDSA-secp256k1-SHA1 over {} bytes, r||s:",
        put.signed_len()
    )?;
    writeln!(out, "            {}", hex(&sig))?;

    let mut plain = [0u8; MAX_PACKET_LEN];
    let plain_len = put.encode(&mut plain)?;
    let mut sealed = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
    let sealed_len = ecies::seal(server.public(), &plain[..plain_len], &mut rng, &mut sealed)?;
    let sealed = &sealed[..sealed_len];
    writeln!(
        out,
        "4. encrypt  {plain_len}-byte packet -> {sealed_len} bytes to the server key (E || iv || tag || RC6-CBC ct)"
    )?;
    writeln!(out, "            E   {}", hex(&sealed[..33]))?;
    writeln!(out, "            tag {}", hex(&sealed[49..81]))?;

    let mut opened = [0u8; MAX_PACKET_LEN + ecies::BLOCK_LEN];
    let received = ecies::open(&server, sealed, &mut opened)?;
    let request = Packet::decode(received)?;
    writeln!(
        out,
        "5. decrypt  server opens {} bytes: op={:?} name={:?} value={:?}",
        received.len(),
        request.op,
        String::from_utf8_lossy(request.name),
        String::from_utf8_lossy(request.value)
    )?;

    let signer = request.verify_self_signed()?;
    check_freshness(now, request.updated, request.ttl)?;
    writeln!(
        out,
        "6. verify   signature valid under vkc {signer}; within its {} s ttl",
        request.ttl
    )?;
    if signer != *owner.public() {
        bail!("verified under an unexpected key");
    }

    let mut tampered = sealed.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match ecies::open(&server, &tampered, &mut opened) {
        Err(e) => writeln!(
            out,
            "7. tamper   one flipped ciphertext bit -> rejected: {e}"
        )?,
        Ok(_) => bail!("a tampered message was accepted"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_walks_all_seven_steps() {
        let mut out = Vec::new();
        super::run(&mut out).expect("demo");
        let text = String::from_utf8(out).expect("utf8");
        for step in [
            "1. keygen",
            "3. sign",
            "5. decrypt",
            "6. verify",
            "7. tamper",
        ] {
            assert!(text.contains(step), "missing {step} in:\n{text}");
        }
        assert!(text.contains("authentication tag mismatch"));
    }
}
