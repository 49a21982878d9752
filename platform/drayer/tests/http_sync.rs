//! Sync over real HTTP on loopback: a mirror follows its owner through
//! inserts, updates and deletes (crdr repairs over the wire), pages past
//! the 100-record limit, metadata-only mirrors, file records with the
//! right Content-Type and encoding, and 404s where the original said 500.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use keyway_drayer::http::{HttpSource, router};
use keyway_drayer::sync::{pull, pull_newest};
use keyway_drayer::{Stream, file_record};
use rusqlite::Connection;

async fn serve(stream: Stream) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(vec![stream])).await });
    addr
}

/// id, key, value, modified, prev, prevchange, signature.
type Row = (i64, String, Option<Vec<u8>>, i64, i64, i64, Vec<u8>);

fn rows(path: &std::path::Path) -> Vec<Row> {
    let conn = Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT id, key, value, modified, prev, prevchange, signature FROM record ORDER BY modified")
        .unwrap();
    statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_follows_its_owner_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let owner_path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&owner_path).unwrap();
    let public = *owner.public_key();
    let served = Stream::open(&owner_path).unwrap();
    let addr = serve(served).await;
    let url = format!("http://{addr}/");

    let mirror_path = dir.path().join("mirror.stream");
    let mut mirror = Stream::mirror(&mirror_path, public).unwrap();
    let mut source = HttpSource::new(&url, public);

    // 250 records: three pages.
    for i in 0..250 {
        owner
            .set(&format!("k{i}"), "obj", format!("v{i}").as_bytes())
            .unwrap();
    }
    let pulled = pull(&mut mirror, &mut source).await.unwrap();
    assert_eq!(pulled.inserted, 250);
    assert_eq!(rows(&mirror_path), rows(&owner_path));

    // Updates and deletes orphan records the mirror holds: crdr over HTTP.
    owner.set("k10", "obj", b"changed").unwrap();
    owner.delete("k20", "obj").unwrap();
    owner.delete("k5", "obj").unwrap();
    owner.set("k30", "obj", b"changed too").unwrap();
    let pulled = pull(&mut mirror, &mut source).await.unwrap();
    assert!(pulled.repairs >= 1, "{pulled:?}");
    assert_eq!(rows(&mirror_path), rows(&owner_path));
    assert_eq!(mirror.verify().unwrap().problems, Vec::<String>::new());
    assert_eq!(mirror.get("k10", "obj").unwrap().unwrap(), b"changed");
    assert_eq!(mirror.get("k20", "obj").unwrap(), None);

    // A partial mirror of the newest 50 (spec D8), through changes.
    let partial_path = dir.path().join("partial.stream");
    let mut partial = Stream::mirror(&partial_path, public).unwrap();
    let mut recent = HttpSource::new(&url, public);
    pull_newest(&mut partial, &mut recent, 50).await.unwrap();
    for round in 0..3 {
        for i in 0..40 {
            owner
                .set(
                    &format!("k{}", (i * 7 + round * 13) % 260),
                    "obj",
                    format!("r{round}").as_bytes(),
                )
                .unwrap();
        }
        owner.delete(&format!("k{}", 100 + round), "obj").unwrap();
        pull_newest(&mut partial, &mut recent, 50).await.unwrap();
        let back = partial.back_pointer().unwrap();
        assert!(back > 0);
        let expected: Vec<Row> = rows(&owner_path)
            .into_iter()
            .filter(|r| r.3 > back)
            .collect();
        assert_eq!(rows(&partial_path), expected, "round {round}");
        assert!(expected.len() <= 50);
        assert_eq!(partial.verify().unwrap().problems, Vec::<String>::new());
    }

    // A metadata-only mirror: every record, no values, all verifying.
    let meta_path = dir.path().join("meta.stream");
    let mut meta_only = Stream::mirror(&meta_path, public).unwrap();
    let mut bare = HttpSource::new(&url, public).without_values();
    pull(&mut meta_only, &mut bare).await.unwrap();
    let (full, bare_rows) = (rows(&owner_path), rows(&meta_path));
    assert_eq!(bare_rows.len(), full.len());
    assert!(bare_rows.iter().all(|r| r.2.is_none()));
    assert_eq!(meta_only.verify().unwrap().problems, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_404s_and_json_listings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.stream");
    let mut owner = Stream::create(&path).unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::write(site.join("index.html"), "<html><body>hi</body></html>\n").unwrap();
    std::fs::write(site.join("css/a.css"), "body { color: red }").unwrap();
    let report = file_record::import_dir(&mut owner, &site).unwrap();
    assert_eq!((report.added, report.unchanged), (2, 0));
    let again = file_record::import_dir(&mut owner, &site).unwrap();
    assert_eq!(
        (again.added, again.updated, again.unchanged),
        (0, 0, 2),
        "unchanged files are skipped"
    );
    std::fs::write(site.join("css/a.css"), "body { color: blue }").unwrap();
    assert_eq!(
        file_record::import_dir(&mut owner, &site).unwrap().updated,
        1
    );

    let b64 = owner.public_key_base64();
    let quoted = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let addr = serve(Stream::open(&path).unwrap()).await;
    let client = reqwest::Client::new();
    let get = |path: String, gzip: bool| {
        let client = client.clone();
        async move {
            let mut request = client.get(format!("http://{addr}/{path}"));
            if gzip {
                request = request.header("Accept-Encoding", "gzip");
            } else {
                request = request.header("Accept-Encoding", "identity");
            }
            request.send().await.unwrap()
        }
    };
    let plain = get(format!("{quoted}/webAccess/css/a.css"), false).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["content-type"], "text/css");
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.text().await.unwrap(), "body { color: blue }");
    let zipped = get(format!("{quoted}/webAccess/index.html"), true).await;
    assert_eq!(zipped.headers()["content-type"], "text/html");
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let body = zipped.bytes().await.unwrap();
    let mut inflated = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut inflated)
        .unwrap();
    assert_eq!(inflated, "<html><body>hi</body></html>\n");

    // Unpadded, URL-safe keys work too; unknown streams and empty crdr are 404.
    let url_safe = b64
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    assert_eq!(
        get(format!("{url_safe}/newRecords/0"), false)
            .await
            .status(),
        200
    );
    let stranger = "A".repeat(43);
    assert_eq!(
        get(format!("{stranger}/newRecords/0"), false)
            .await
            .status(),
        404
    );
    assert_eq!(get(format!("{quoted}/crdr/-1"), false).await.status(), 404);
    assert_eq!(
        get(format!("{quoted}/webAccess/nope.html"), false)
            .await
            .status(),
        404
    );
    assert_eq!(
        get(String::new(), false).await.text().await.unwrap(),
        "Hello World!"
    );

    let listed = get(format!("{quoted}/listRecordsJSON/file"), false)
        .await
        .text()
        .await
        .unwrap();
    // Newest change first, Python's separators.
    assert_eq!(listed, "[[\"css/a.css\", 2], [\"index.html\", 1]]");

    // Export writes the files back, skips equal ones and refuses keys
    // that would leave the directory (records come from peers).
    owner
        .set(
            "../escape.txt",
            "file",
            &file_record::encode(b"no", 0).unwrap(),
        )
        .unwrap();
    let out = dir.path().join("out");
    let exported = file_record::export_dir(&owner, &out).unwrap();
    assert_eq!(exported.added, 2);
    assert_eq!(exported.skipped, ["../escape.txt"]);
    assert_eq!(
        std::fs::read_to_string(out.join("css/a.css")).unwrap(),
        "body { color: blue }"
    );
    assert!(!dir.path().join("escape.txt").exists());
    assert_eq!(file_record::export_dir(&owner, &out).unwrap().unchanged, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_come_in_pages_cut_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.stream");
    let mut owner = Stream::create(&path).unwrap();
    let megabyte = vec![0x5a; 1 << 20];
    let keys: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    owner
        .set_many(
            keys.iter()
                .map(|k| (k.as_str(), "blob", megabyte.as_slice())),
        )
        .unwrap();
    let public = *owner.public_key();
    let addr = serve(Stream::open(&path).unwrap()).await;
    let b64 = owner.public_key_base64();
    let quoted = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let first = reqwest::get(format!("http://{addr}/{quoted}/newRecords/0"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let page = keyway_drayer::wire::decode_records(&first, &public).unwrap();
    assert_eq!(page.len(), 32, "32 MiB of values per page");
    let mut mirror = Stream::mirror(&dir.path().join("m.stream"), public).unwrap();
    let pulled = pull(
        &mut mirror,
        &mut HttpSource::new(&format!("http://{addr}/"), public),
    )
    .await
    .unwrap();
    assert_eq!(pulled.inserted, 40, "the short page did not end the sync");
    // Over the value limit: refused before anything is written.
    let huge = vec![0u8; keyway_drayer::wire::MAX_VALUE + 1];
    assert!(matches!(
        owner.set("huge", "blob", &huge),
        Err(keyway_drayer::StreamError::TooLarge { .. })
    ));
}
