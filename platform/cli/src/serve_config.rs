//! `keyway namebump serve --config FILE`: the serve flags as a TOML file
//! (issue 12, "Operating it").
//!
//! Every `ServeArgs` flag has a key, named after the flag with `_` for `-`
//! (`max_connections_per_source`); a test fails when a flag has none. A
//! flag given on the command line beats the file, a value in the file beats
//! the flag's default. Relative paths in the file (`key`, a `sqlite:` `db`)
//! are resolved against the file's directory, so one file means the same
//! server whatever directory it is started from. Unknown keys and bad values
//! are one-line errors naming the file and the line.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use toml::Spanned;

use crate::namebump::ServeArgs;

/// Bounds shared by the flags' value parsers and the file's checks, so the
/// two sources accept the same values.
pub(crate) const MIN_CONNECTIONS: u32 = 1;
pub(crate) const TCP_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=3600;

/// The file's keys; each is optional (absent: the flag or its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeFile {
    listen: Option<Spanned<Vec<SocketAddr>>>,
    db: Option<Spanned<String>>,
    key: Option<Spanned<PathBuf>>,
    metrics: Option<Spanned<SocketAddr>>,
    rate_limit: Option<Spanned<f64>>,
    rate_burst: Option<Spanned<f64>>,
    max_connections: Option<Spanned<u32>>,
    max_connections_per_source: Option<Spanned<u32>>,
    tcp_request_timeout: Option<Spanned<u64>>,
    tcp_write_timeout: Option<Spanned<u64>>,
    db_connections: Option<Spanned<u32>>,
    publish_stream: Option<Spanned<PathBuf>>,
}

/// Reads the file named by `--config`, if any, and fills every option not
/// given on the command line (`matches`: the `serve` subcommand's) from it.
pub(crate) fn apply(args: &mut ServeArgs, matches: &ArgMatches) -> Result<()> {
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let file = parse(&text).map_err(|e| located(&path, &text, e.span(), e.message()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    merge(args, matches, file, base)
        .map_err(|(span, message)| located(&path, &text, Some(span), &message))
}

pub(crate) fn parse(text: &str) -> Result<ServeFile, toml::de::Error> {
    toml::from_str(text)
}

/// A file value that is well typed but refused: where it is and why.
type Refused = (std::ops::Range<usize>, String);

fn merge(
    args: &mut ServeArgs,
    matches: &ArgMatches,
    file: ServeFile,
    base: &Path,
) -> Result<(), Refused> {
    // Destructured without `..`: a key added to the file fails to compile
    // until it is merged here.
    let ServeFile {
        listen,
        db,
        key,
        metrics,
        rate_limit,
        rate_burst,
        max_connections,
        max_connections_per_source,
        tcp_request_timeout,
        tcp_write_timeout,
        db_connections,
        publish_stream,
    } = file;
    let from_file = |id: &str| matches.value_source(id) != Some(ValueSource::CommandLine);
    if let Some(v) = listen.filter(|_| from_file("listen")) {
        if v.get_ref().is_empty() {
            return Err((v.span(), "listen needs at least one address".to_owned()));
        }
        args.listen = v.into_inner();
    }
    if let Some(v) = db.filter(|_| from_file("db")) {
        let span = v.span();
        args.db = sqlite_relative_to(v.get_ref(), base).map_err(|e| (span, e))?;
    }
    if let Some(v) = key.filter(|_| from_file("key")) {
        args.key = Some(base.join(v.into_inner()));
    }
    if let Some(v) = metrics.filter(|_| from_file("metrics")) {
        args.metrics = Some(v.into_inner());
    }
    if let Some(v) = rate_limit.filter(|_| from_file("rate_limit")) {
        args.rate_limit = v.into_inner();
    }
    if let Some(v) = rate_burst.filter(|_| from_file("rate_burst")) {
        args.rate_burst = v.into_inner();
    }
    let connections = MIN_CONNECTIONS..=u32::MAX;
    if let Some(v) = max_connections.filter(|_| from_file("max_connections")) {
        args.max_connections = within(v, &connections)?;
    }
    if let Some(v) = max_connections_per_source.filter(|_| from_file("max_connections_per_source"))
    {
        args.max_connections_per_source = within(v, &connections)?;
    }
    if let Some(v) = tcp_request_timeout.filter(|_| from_file("tcp_request_timeout")) {
        args.tcp_request_timeout = within(v, &TCP_TIMEOUT_SECONDS)?;
    }
    if let Some(v) = tcp_write_timeout.filter(|_| from_file("tcp_write_timeout")) {
        args.tcp_write_timeout = within(v, &TCP_TIMEOUT_SECONDS)?;
    }
    if let Some(v) = db_connections.filter(|_| from_file("db_connections")) {
        args.db_connections = within(v, &connections)?;
    }
    if let Some(v) = publish_stream.filter(|_| from_file("publish_stream")) {
        args.publish_stream = Some(base.join(v.into_inner()));
    }
    Ok(())
}

fn within<T: PartialOrd + Display + Copy>(
    v: Spanned<T>,
    range: &RangeInclusive<T>,
) -> Result<T, Refused> {
    let value = *v.get_ref();
    if range.contains(&value) {
        Ok(value)
    } else {
        Err((
            v.span(),
            format!("{value} is not in {}..={}", range.start(), range.end()),
        ))
    }
}

/// `sqlite:PATH` (or `sqlite://PATH`, with any `?query`) with a relative
/// PATH joined to `base`; other URLs unchanged. The store takes the URL as
/// a string, so the joined path must be UTF-8.
fn sqlite_relative_to(url: &str, base: &Path) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(url.to_owned());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || Path::new(path).is_absolute() {
        return Ok(url.to_owned());
    }
    let joined = base.join(path);
    let joined = joined
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", joined.display()))?;
    Ok(match query {
        Some(q) => format!("sqlite:{joined}?{q}"),
        None => format!("sqlite:{joined}"),
    })
}

/// `PATH:LINE: message`, on one line (toml's own rendering spans several).
fn located(
    path: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    message: &str,
) -> anyhow::Error {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match span {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            // A type error names the type, not the key: name the key too
            // when the line starts with one (`key = …`).
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !message.contains(&format!("`{k}`")));
            match key {
                Some(k) => anyhow!("{}:{line}: {k}: {message}", path.display()),
                None => anyhow!("{}:{line}: {message}", path.display()),
            }
        }
        None => anyhow!("{}: {message}", path.display()),
    }
}

/// The server's key file after the merge: mandatory, but it may come from
/// either source, so clap requires it only when there is no `--config`.
pub(crate) fn key_file(args: &ServeArgs) -> Result<PathBuf> {
    match &args.key {
        Some(k) => Ok(k.clone()),
        None => bail!("the server needs a key file: --key FILE, or key = \"FILE\" in --config"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::{Args, CommandFactory, FromArgMatches, Parser};

    const EXAMPLE: &str = include_str!("../examples/namebump-serve.toml");

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Every serve flag but `--config` itself, by clap id.
    fn flag_ids() -> Vec<String> {
        let ids: Vec<String> = ServeArgs::augment_args(clap::Command::new("serve"))
            .get_arguments()
            .map(|a| a.get_id().as_str().to_owned())
            .filter(|id| id != "config")
            .collect();
        assert!(ids.len() >= 10, "{ids:?}");
        ids
    }

    /// Parses `argv` as `serve` flags and applies the file at `path`
    /// holding `text` (written to a temporary directory).
    fn merged(argv: &[&str], text: &str) -> Result<ServeArgs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text).unwrap();
        let mut full = vec!["serve", "--config", path.to_str().unwrap()];
        full.extend_from_slice(argv);
        let matches = Serve::command().try_get_matches_from(full).unwrap();
        let mut args = Serve::from_arg_matches(&matches).unwrap().args;
        apply(&mut args, &matches)?;
        Ok(args)
    }

    #[test]
    fn every_flag_has_a_config_key() {
        for id in flag_ids() {
            // A key the struct lacks is refused as unknown whatever its
            // value; a known key with a wrong-typed value fails otherwise.
            let err = parse(&format!("{id} = {{}}\n")).unwrap_err();
            assert!(
                !err.message().contains("unknown field"),
                "--{} has no config key: {}",
                id.replace('_', "-"),
                err.message()
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse("listen = [\"127.0.0.1:1\"]\nmax_conections = 5\n").unwrap_err();
        assert!(
            err.message().contains("`max_conections`"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn the_example_sets_every_key_to_its_default() {
        let table: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut ids = flag_ids();
        ids.sort_unstable();
        assert_eq!(keys, ids);
        let file = parse(EXAMPLE).unwrap();
        assert!(
            file.key.is_some() && file.metrics.is_some() && file.publish_stream.is_some(),
            "{file:?}"
        );

        // Relative to a file in the working directory, the example's values
        // are the flags' defaults (key, metrics and publish_stream have none).
        let matches = Serve::command()
            .try_get_matches_from(["serve", "--key", "unused"])
            .unwrap();
        let defaults = Serve::from_arg_matches(&matches).unwrap().args;
        let mut from_example = Serve::from_arg_matches(&matches).unwrap().args;
        let none = Serve::command()
            .try_get_matches_from(["serve", "--config", "x"])
            .unwrap();
        merge(&mut from_example, &none, file, Path::new("")).unwrap();
        let comparable = |a: &ServeArgs| {
            format!(
                "{:?} {} {} {} {} {} {} {} {}",
                a.listen,
                a.db,
                a.rate_limit,
                a.rate_burst,
                a.max_connections,
                a.max_connections_per_source,
                a.tcp_request_timeout,
                a.tcp_write_timeout,
                a.db_connections
            )
        };
        assert_eq!(comparable(&from_example), comparable(&defaults));
    }

    #[test]
    fn the_file_beats_defaults_and_flags_beat_the_file() {
        let text = "listen = [\"127.0.0.1:7001\", \"[::1]:7001\"]\n\
                    rate_limit = 5.0\nmax_connections = 9\ntcp_write_timeout = 30\n";
        let a = merged(&["--key", "/k"], text).unwrap();
        assert_eq!(a.listen.len(), 2);
        assert_eq!(a.listen[1].to_string(), "[::1]:7001");
        assert_eq!(
            (a.rate_limit, a.max_connections, a.tcp_write_timeout),
            (5.0, 9, 30)
        );
        assert_eq!(a.rate_burst, 40.0, "not in the file: the default");

        let b = merged(
            &[
                "--key",
                "/k",
                "--listen",
                "127.0.0.1:7002",
                "--max-connections",
                "3",
            ],
            text,
        )
        .unwrap();
        let listen: Vec<String> = b.listen.iter().map(ToString::to_string).collect();
        assert_eq!(
            listen,
            ["127.0.0.1:7002"],
            "the flag replaces the file's list"
        );
        assert_eq!((b.max_connections, b.rate_limit), (3, 5.0));
    }

    #[test]
    fn every_flag_given_beats_every_key() {
        let flags = [
            ("listen", "127.0.0.1:1"),
            ("db", "sqlite:/flag.db"),
            ("key", "/flag.key"),
            ("metrics", "127.0.0.1:2"),
            ("rate_limit", "3"),
            ("rate_burst", "4"),
            ("max_connections", "5"),
            ("max_connections_per_source", "6"),
            ("tcp_request_timeout", "7"),
            ("tcp_write_timeout", "8"),
            ("db_connections", "9"),
            ("publish_stream", "/flag.stream"),
        ];
        let mut named: Vec<&str> = flags.iter().map(|(id, _)| *id).collect();
        named.sort_unstable();
        let mut ids = flag_ids();
        ids.sort_unstable();
        assert_eq!(named, ids, "give the new flag a value here");
        let argv: Vec<String> = flags
            .iter()
            .flat_map(|(id, v)| [format!("--{}", id.replace('_', "-")), (*v).to_owned()])
            .collect();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let merged = merged(&argv, EXAMPLE).unwrap();
        let mut full = vec!["serve", "--config", "unread"];
        full.extend_from_slice(&argv);
        let matches = Serve::command().try_get_matches_from(full).unwrap();
        let flags_only = Serve::from_arg_matches(&matches).unwrap().args;
        let without_config = |a: &ServeArgs| {
            let mut a = format!("{a:?}");
            let start = a.find("config: ").unwrap();
            let end = start + a[start..].find(", listen").unwrap();
            a.replace_range(start..end, "");
            a
        };
        assert_eq!(without_config(&merged), without_config(&flags_only));
    }

    #[test]
    fn relative_paths_are_resolved_against_the_file() {
        let a = merged(
            &[],
            "key = \"keys/server.key\"\ndb = \"sqlite:nb.db?mode=rwc\"\n\
             publish_stream = \"keys/names.stream\"\n",
        )
        .unwrap();
        let stream = a.publish_stream.clone().unwrap();
        assert!(
            stream.is_absolute() && stream.ends_with("keys/names.stream"),
            "{stream:?}"
        );
        let key = a.key.unwrap();
        assert!(
            key.is_absolute() && key.ends_with("keys/server.key"),
            "{key:?}"
        );
        let dir = key.parent().unwrap().parent().unwrap();
        assert_eq!(
            a.db,
            format!("sqlite:{}?mode=rwc", dir.join("nb.db").display())
        );

        let b = merged(&[], "key = \"/abs/k\"\ndb = \"sqlite:///abs/nb.db\"\n").unwrap();
        assert_eq!(
            (b.key.unwrap(), b.db.as_str()),
            (PathBuf::from("/abs/k"), "sqlite:///abs/nb.db")
        );
        let pg = "postgres://postgres@127.0.0.1/nb";
        let c = merged(&["--key", "k"], &format!("db = \"{pg}\"\n")).unwrap();
        assert_eq!(c.db, pg);
        assert_eq!(
            c.key.unwrap(),
            PathBuf::from("k"),
            "a flag's path stays as given"
        );
    }

    #[test]
    fn bad_values_are_one_line_with_the_file_and_line() {
        let cases = [
            (
                "db = \"sqlite:x\"\n\nmax_connections = 0\n",
                3,
                "0 is not in 1..=",
            ),
            (
                "\ntcp_request_timeout = 3601\n",
                2,
                "tcp_request_timeout: 3601 is not in 1..=3600",
            ),
            ("listen = [\"localhost:53\"]\n", 1, "socket address"),
            ("listen = []\n", 1, "at least one address"),
            (
                "rate_limit = \"fast\"\n",
                1,
                "rate_limit: invalid type: string \"fast\", expected f64",
            ),
            (
                "\n\nbogus = 1\n",
                3,
                ": unknown field `bogus`, expected one of",
            ),
            ("max_connections = -1\n", 1, ""),
            ("db = \n", 1, ""),
        ];
        for (text, line, says) in cases {
            let e = format!("{:#}", merged(&["--key", "k"], text).unwrap_err());
            assert_eq!(e.lines().count(), 1, "{e}");
            assert!(e.contains(&format!("serve.toml:{line}: ")), "{text:?}: {e}");
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let matches = Serve::command()
            .try_get_matches_from(["serve", "--config", "/nonexistent/keyway-serve.toml"])
            .unwrap();
        let mut args = Serve::from_arg_matches(&matches).unwrap().args;
        let e = format!("{:#}", apply(&mut args, &matches).unwrap_err());
        assert!(e.contains("/nonexistent/keyway-serve.toml"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn a_key_is_required_from_one_source() {
        let a = merged(&[], "rate_limit = 1.0\n").unwrap();
        assert!(key_file(&a).is_err());
        let b = merged(&["--key", "k"], "").unwrap();
        assert_eq!(key_file(&b).unwrap(), PathBuf::from("k"));
    }
}
