//! The committed header is what cbindgen makes of the source: a change to
//! the ABI that is not in `include/keyway.h` fails here.

use std::path::Path;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

/// With `KEYWAY_REGENERATE_HEADER=1` it writes the header instead (after
/// changing the ABI), and says so.
#[test]
fn the_committed_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/keyway.h");
    let generated = generate();
    if std::env::var_os("KEYWAY_REGENERATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("writing the header");
        eprintln!("wrote {}", path.display());
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `KEYWAY_REGENERATE_HEADER=1 cargo test -p keyway-ffi --test header` and commit it",
        path.display()
    );
}
