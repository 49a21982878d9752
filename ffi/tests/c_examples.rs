//! The C examples, compiled with `cc -Wall -Werror` against the static
//! library and the committed header, run under AddressSanitizer (with its
//! leak checker) and UBSan: offline packets, and a client against a Keyway
//! server on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_namebump::{Server, ServerConfig, SqlStore, SystemClock};

/// Where cargo put this build's libraries (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn compile(example: &str, out_dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    compile_file(
        &crate_dir.join("examples").join(format!("{example}.c")),
        out_dir,
    )
}

fn compile_file(source: &Path, out_dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = source
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a C file name");
    let library = profile_dir().join("libkeyway_ffi.a");
    // `cargo test` builds this crate as an rlib only; tests/run.sh builds
    // the static library first.
    assert!(
        library.exists(),
        "{} is missing: run `cargo build -p keyway-ffi` before the tests (tests/run.sh does)",
        library.display()
    );
    let binary = out_dir.join(example);
    let output = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-g"])
        .args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(source)
        .arg(&library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&binary)
        .output()
        .expect("running cc (install gcc)");
    assert!(
        output.status.success(),
        "cc {example}.c failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

fn run(binary: &Path, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=86",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .output()
        .expect("running the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} exited with {}:\n{stdout}\n{}",
        binary.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn packets_example_signs_seals_opens_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = compile("packets", dir.path());
    let out = run(&binary, &[]);
    for line in [
        "op=1 name=alice value=hello signed=1",
        "tampered=refused",
        "sidewire=verified brokers=2",
        "drayer=verified",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// A Keyway server on loopback: its address and public key (hex).
async fn local_server(dir: &Path) -> (Server, String, String) {
    let url = format!("sqlite:{}", dir.join("nb.db").display());
    let store = SqlStore::open(&url, Default::default())
        .await
        .expect("store");
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().expect("address")],
        rate_limit: None,
        ..ServerConfig::default()
    };
    let key = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
    let server = Server::start(config, key, store, Arc::new(SystemClock))
        .await
        .expect("server");
    let addr = server.udp_addrs()[0].to_string();
    let pk = server.public_key().to_string();
    (server, addr, pk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_example_puts_gets_and_deletes_on_a_local_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = compile("client", dir.path());
    let (_server, addr, pk) = local_server(dir.path()).await;
    let out = tokio::task::spawn_blocking(move || run(&binary, &[&addr, &pk]))
        .await
        .expect("example");
    for line in [
        "get=hello from C",
        "stranger=the name belongs to another key",
        "usage=1/20 af=2",
        "deleted",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// The README's C section is a whole program: it compiles as shown and
/// prints what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_c_example_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = &readme[readme.find("\n## C\n").expect("a C section")..];
    let start = section.find("```c\n").expect("a C block") + 5;
    let end = start + section[start..].find("```").expect("the block's end");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("alice.c");
    std::fs::write(&source, &section[start..end]).expect("writing the example");
    let binary = compile_file(&source, dir.path());
    let (_server, addr, pk) = local_server(dir.path()).await;
    let out = tokio::task::spawn_blocking(move || run(&binary, &[&addr, &pk]))
        .await
        .expect("example");
    assert_eq!(out, "hello\n");
}
