//! The Python reference peers, from PyPI, in a venv under `target/`.
//!
//! The venv is created on first use (and by `tests/run.sh` before the test
//! run), guarded by a file lock so parallel test binaries install it once.
//! A missing Python or an unreachable package index is a test failure with
//! the reason, never a silent skip.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Interop scripts shipped with the tests.
pub fn interop_dir() -> PathBuf {
    workspace_root().join("tests").join("interop")
}

/// A venv holding the reference packages listed in a requirements file.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The namebump 0.0.16 reference (with aionetiface 0.0.24).
    pub fn namebump() -> Result<Self> {
        Self::ensure(
            "reference-venv",
            &interop_dir().join("requirements-namebump.txt"),
        )
    }

    fn ensure(name: &str, requirements: &Path) -> Result<Self> {
        let dir = target_dir().join(name);
        std::fs::create_dir_all(target_dir())?;
        let lock = File::create(target_dir().join(format!("{name}.lock")))?;
        lock.lock().context("locking the venv")?;
        let stamp = dir.join("installed.txt");
        let wanted = std::fs::read_to_string(requirements)
            .with_context(|| format!("reading {}", requirements.display()))?;
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            install(&dir, requirements)?;
            std::fs::write(&stamp, &wanted)?;
        }
        Ok(Self { dir })
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Runs `script` with `input` on stdin and returns stdout; a non-zero
    /// exit is an error carrying stderr.
    pub fn run(&self, script: &Path, input: &[u8]) -> Result<Vec<u8>> {
        let mut child = Command::new(self.python())
            .arg(script)
            // No aionetiface log directory, no user site: nothing outside the venv.
            .env("PYTHONNOUSERSITE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.python().display()))?;
        child.stdin.take().context("stdin")?.write_all(input)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{} failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

fn install(dir: &Path, requirements: &Path) -> Result<()> {
    let python = std::env::var("KEYWAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "venv", "--clear"])
        .arg(dir)
        .status()
        .with_context(|| format!("running {python} (install python3 and python3-venv)"))?;
    ensure!(
        status.success(),
        "{python} -m venv failed: install python3-venv"
    );
    let pip = dir.join("bin").join("pip");
    let status = Command::new(&pip)
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements)
        .status()
        .with_context(|| format!("running {}", pip.display()))?;
    ensure!(
        status.success(),
        "pip could not install {} (needs the package index, python3-dev and a C compiler for netifaces)",
        requirements.display()
    );
    Ok(())
}
