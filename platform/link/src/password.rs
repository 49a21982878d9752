//! Where the identity file's password comes from (issue 16, item 6): a
//! file, an environment variable or the terminal — never the command line,
//! which any local user can read in `/proc/<pid>/cmdline`.

use std::path::Path;

use zeroize::Zeroizing;

/// The environment variable read when no password file is given.
pub const PASSWORD_ENV: &str = "KEYWAY_PASSWORD";

/// The largest password file read (a password, not a document).
const MAX_PASSWORD_FILE_LEN: u64 = 4096;

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password file could not be read.
    #[error("cannot read password file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The password file is larger than 4 KiB.
    #[error("password file {0} is larger than 4 KiB")]
    FileTooLarge(String),
    /// Nothing was given and there is no terminal to ask on.
    #[error(
        "no password: give --password-file FILE, set {PASSWORD_ENV}, or run on a terminal ({0})"
    )]
    NoTerminal(std::io::Error),
    /// The two entries at the prompt differ.
    #[error("the passwords entered differ")]
    Mismatch,
    /// An empty password protects nothing.
    #[error("the password is empty")]
    Empty,
}

/// Whether a prompted password is asked twice (a new identity: a typo
/// would lock the owner out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Ask once (unlocking).
    Once,
    /// Ask twice and compare (creating).
    Confirm,
}

/// The password: from `file` if given (its trailing newline ignored), else
/// from [`PASSWORD_ENV`], else asked for on the terminal with `what` in the
/// prompt.
pub fn read(
    file: Option<&Path>,
    what: &str,
    prompt: Prompt,
) -> Result<Zeroizing<String>, PasswordError> {
    let password = if let Some(path) = file {
        from_file(path)?
    } else if let Some(value) = std::env::var_os(PASSWORD_ENV) {
        Zeroizing::new(value.to_string_lossy().into_owned())
    } else {
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("password for {what}: "))
                .map_err(PasswordError::NoTerminal)?,
        );
        if prompt == Prompt::Confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("again: ").map_err(PasswordError::NoTerminal)?,
            );
            if *again != *first {
                return Err(PasswordError::Mismatch);
            }
        }
        first
    };
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    Ok(password)
}

fn from_file(path: &Path) -> Result<Zeroizing<String>, PasswordError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let io = |source| PasswordError::File {
        path: shown(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_PASSWORD_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_PASSWORD_FILE_LEN {
        return Err(PasswordError::FileTooLarge(shown()));
    }
    Ok(Zeroizing::new(strip_newline(&text).to_owned()))
}

/// Drops one trailing `\n` (or `\r\n`): what `echo pw > file` and editors
/// add. Other whitespace is part of the password.
fn strip_newline(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped_and_nothing_else() {
        assert_eq!(strip_newline("pw\n"), "pw");
        assert_eq!(strip_newline("pw\r\n"), "pw");
        assert_eq!(strip_newline("pw"), "pw");
        assert_eq!(strip_newline("pw\n\n"), "pw\n");
        assert_eq!(strip_newline(" pw \n"), " pw ");
    }

    #[test]
    fn password_file_is_read_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "secret\n").unwrap();
        assert_eq!(
            read(Some(&path), "x", Prompt::Once).unwrap().as_str(),
            "secret"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read(Some(&path), "x", Prompt::Once),
            Err(PasswordError::Empty)
        ));
        std::fs::write(&path, vec![b'a'; 5000]).unwrap();
        assert!(matches!(
            read(Some(&path), "x", Prompt::Once),
            Err(PasswordError::FileTooLarge(_))
        ));
        assert!(matches!(
            read(Some(&dir.path().join("absent")), "x", Prompt::Once),
            Err(PasswordError::File { .. })
        ));
    }
}
