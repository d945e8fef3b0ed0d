//! Downloads against a real HTTP server on 127.0.0.1 started by each test: real sockets, real
//! bytes, including a connection dropped halfway and hostile archives.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastvision::data::download::{Kaggle, KaggleCredentials, fruits360_layout, untar_data};

/// A request's path and Range header, as the server saw it.
type Request = (String, Option<String>);

#[derive(Clone)]
enum Route {
    /// Serve these bytes (honouring Range), optionally only with this Authorization header.
    File {
        bytes: Vec<u8>,
        auth: Option<String>,
        drop_first: bool,
    },
    Status(u16),
}

/// A tiny HTTP/1.1 server: serves `routes`, records each request's path and Range header.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(routes: HashMap<String, Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let served_once = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let (log2, routes) = (Arc::clone(&log), Arc::new(routes));
        std::thread::spawn(move || {
            // Bounded: a test never needs more than a handful of requests.
            for stream in listener.incoming().take(32) {
                let Ok(stream) = stream else { continue };
                let (routes, log, once) = (
                    Arc::clone(&routes),
                    Arc::clone(&log2),
                    Arc::clone(&served_once),
                );
                std::thread::spawn(move || handle(stream, &routes, &log, &once));
            }
        });
        Server { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn handle(
    mut stream: TcpStream,
    routes: &HashMap<String, Route>,
    log: &Mutex<Vec<Request>>,
    once: &Mutex<std::collections::HashSet<String>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let range = headers.get("range").cloned();
    log.lock().unwrap().push((path.clone(), range.clone()));
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match routes.get(&path) {
        None => respond(&mut stream, "404 Not Found", "", b"no such thing"),
        Some(Route::Status(code)) => respond(&mut stream, &format!("{code} Nope"), "", b"{}"),
        Some(Route::File {
            bytes,
            auth,
            drop_first,
        }) => {
            if let Some(expected) = auth
                && headers.get("authorization") != Some(expected)
            {
                return respond(&mut stream, "401 Unauthorized", "", b"{\"code\":401}");
            }
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            if *drop_first && once.lock().unwrap().insert(path.clone()) {
                // Promise the whole file, send half, hang up.
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n\r\n",
                    bytes.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&bytes[..bytes.len() / 2]);
                let _ = stream.flush();
                return;
            }
            match start {
                Some(s) if s < bytes.len() => {
                    let extra = format!(
                        "Content-Range: bytes {s}-{}/{}\r\n",
                        bytes.len() - 1,
                        bytes.len()
                    );
                    respond(&mut stream, "206 Partial Content", &extra, &bytes[s..]);
                }
                _ => respond(&mut stream, "200 OK", "Accept-Ranges: bytes\r\n", bytes),
            }
        }
    }
}

fn creds(key: &str) -> KaggleCredentials {
    KaggleCredentials {
        username: "ann".into(),
        key: key.into(),
    }
}

fn basic(user: &str, key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"))
    )
}

/// A zip shaped like Kaggle's Fruits 360 download, with real (generated) JPEGs in it.
fn fruits_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    buf.into_inner()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn kaggle_download_with_basic_auth_lands_complete() {
    let jpeg = common::sample_jpeg(9);
    let zip = fruits_zip(&[
        (
            "fruits-360_dataset/fruits-360/Training/Apple Braeburn/r_0_100.jpg",
            &jpeg,
        ),
        (
            "fruits-360_dataset/fruits-360/Test/Apple Braeburn/r_1_100.jpg",
            &jpeg,
        ),
    ]);
    let key = "another-fake-test-key-qwzx";
    let server = Server::start(HashMap::from([(
        "/api/v1/datasets/download/moltean/fruits".to_string(),
        Route::File {
            bytes: zip,
            auth: Some(basic("ann", key)),
            drop_first: false,
        },
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("fruits-360");
    let kaggle = Kaggle {
        credentials: creds(key),
        api: server.url("/api/v1"),
    };
    let path = kaggle.download("moltean/fruits", &dest).unwrap();
    let layout = fruits360_layout(&path).unwrap();
    assert_eq!(layout, dest.join("fruits-360_dataset/fruits-360"));
    assert_eq!(
        std::fs::read(layout.join("Training/Apple Braeburn/r_0_100.jpg")).unwrap(),
        jpeg
    );
    assert!(
        leftovers(tmp.path()).is_empty(),
        "temporary files left: {:?}",
        leftovers(tmp.path())
    );

    // Wrong key: a clear error that names the fix and never the key.
    let bad = Kaggle {
        credentials: creds("wrong-fake-key-zzzz"),
        api: server.url("/api/v1"),
    };
    let dest2 = tmp.path().join("again");
    let err = bad
        .download("moltean/fruits", &dest2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("kaggle.json"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-fake-key"),
        "the key leaked into: {err}"
    );
    assert!(!dest2.exists());
}

#[test]
fn missing_dataset_and_server_errors_say_what_to_fix() {
    let server = Server::start(HashMap::from([(
        "/api/v1/datasets/download/x/busy".to_string(),
        Route::Status(503),
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let kaggle = Kaggle {
        credentials: creds("k"),
        api: server.url("/api/v1"),
    };
    let err = kaggle
        .download("moltean/nope", &tmp.path().join("d"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 404") && err.contains("owner/slug"),
        "{err}"
    );
    let err = kaggle
        .download("x/busy", &tmp.path().join("d"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 503") && err.contains("try again later"),
        "{err}"
    );
    let err = kaggle
        .download("not-a-slug", &tmp.path().join("d"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("owner/slug"), "{err}");

    // Nothing listens on a port we just closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = untar_data(
        &format!("http://127.0.0.1:{port}/f.tgz"),
        &tmp.path().join("d"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("could not reach 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!tmp.path().join("d").exists());
}

#[test]
fn a_dropped_connection_resumes_where_it_stopped() {
    let jpeg = common::sample_jpeg(9);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let zip = fruits_zip(&[
        ("Training/a/r_0_100.jpg", &jpeg),
        ("Test/a/r_1_100.jpg", &jpeg),
        ("noise.bin", &big),
    ]);
    let server = Server::start(HashMap::from([(
        "/fruits.zip".to_string(),
        Route::File {
            bytes: zip.clone(),
            auth: None,
            drop_first: true,
        },
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("fruits");
    untar_data(&server.url("/fruits.zip"), &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("noise.bin")).unwrap(), big);
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[1].1.as_deref(),
        Some(format!("bytes={}-", zip.len() / 2).as_str()),
        "resumed with a Range request"
    );
    assert!(leftovers(tmp.path()).is_empty());
    // An existing download is not fetched again.
    untar_data(&server.url("/fruits.zip"), &dest).unwrap();
    assert_eq!(server.log.lock().unwrap().len(), 2);
}

#[test]
fn zip_slip_archives_are_refused_whole() {
    let zip = fruits_zip(&[
        ("Training/a/ok.txt", b"fine"),
        ("../../escaped.txt", b"gotcha"),
    ]);
    let server = Server::start(HashMap::from([(
        "/evil.zip".to_string(),
        Route::File {
            bytes: zip,
            auth: None,
            drop_first: false,
        },
    )]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/evil");
    let err = untar_data(&server.url("/evil.zip"), &dest)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("zip-slip") && err.contains("../../escaped.txt"),
        "{err}"
    );
    assert!(!dest.exists(), "nothing may be unpacked");
    assert!(!tmp.path().join("escaped.txt").exists() && !tmp.path().join("a/escaped.txt").exists());
}

fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_old();
        // Written raw so hostile names like "../x" survive into the archive.
        let field = &mut header.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn tgz_archives_unpack_and_hostile_ones_do_not() {
    let jpeg = common::sample_jpeg(9);
    let good = tgz(&[
        ("fruits/Training/a/r_0_100.jpg", &jpeg),
        ("fruits/Test/a/r_1_100.jpg", &jpeg),
    ]);
    let evil = tgz(&[
        ("fruits/Training/a/r_0_100.jpg", &jpeg),
        ("../evil.sh", b"rm -rf ~"),
    ]);
    let server = Server::start(HashMap::from([
        (
            "/good.tgz".to_string(),
            Route::File {
                bytes: good,
                auth: None,
                drop_first: false,
            },
        ),
        (
            "/evil.tgz".to_string(),
            Route::File {
                bytes: evil,
                auth: None,
                drop_first: false,
            },
        ),
    ]));
    let tmp = tempfile::tempdir().unwrap();
    let path = untar_data(&server.url("/good.tgz"), &tmp.path().join("good")).unwrap();
    assert_eq!(fruits360_layout(&path).unwrap(), path.join("fruits"));
    let err = untar_data(&server.url("/evil.tgz"), &tmp.path().join("evil"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("../evil.sh") && err.contains("outside"),
        "{err}"
    );
    assert!(!tmp.path().join("evil").exists() && !tmp.path().join("evil.sh").exists());
    let mut r = String::new();
    let _ = std::fs::File::open(tmp.path().join("evil.sh")).map(|mut f| f.read_to_string(&mut r));
    assert!(r.is_empty());
}

#[test]
fn credentials_come_from_env_or_kaggle_json_and_never_show_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_string_lossy().into_owned();
    std::fs::write(
        tmp.path().join("kaggle.json"),
        r#"{"username":"bob","key":"fake-test-key-not-a-secret-qwzx"}"#,
    )
    .unwrap();
    let from_file =
        KaggleCredentials::from_lookup(|k| (k == "KAGGLE_CONFIG_DIR").then(|| dir.clone()))
            .unwrap();
    assert_eq!(from_file.username, "bob");
    assert!(!format!("{from_file:?}").contains("fake-test-key"));
    let env_wins = KaggleCredentials::from_lookup(|k| match k {
        "KAGGLE_USERNAME" => Some("ann".into()),
        "KAGGLE_KEY" => Some("k".into()),
        "KAGGLE_CONFIG_DIR" => Some(dir.clone()),
        _ => None,
    })
    .unwrap();
    assert_eq!(env_wins.username, "ann");
    let none = KaggleCredentials::from_lookup(|k| (k == "HOME").then(|| "/nonexistent".into()))
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("KAGGLE_USERNAME") && none.contains("/nonexistent/.kaggle/kaggle.json"),
        "{none}"
    );
    std::fs::write(
        tmp.path().join("kaggle.json"),
        r#"{"user":"bob","key":"fake-test-key-not-a-secret-qwzx"}"#,
    )
    .unwrap();
    let bad = KaggleCredentials::from_lookup(|k| (k == "KAGGLE_CONFIG_DIR").then(|| dir.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("not valid kaggle.json") && !bad.contains("fake-test-key"),
        "{bad}"
    );
}

/// Every Fruits 360 layout, as small generated trees: today's archive with its variants side
/// by side (picked by name, not by sort order), the 2019 release with and without its zip's
/// wrapper, and a plain folder.
#[test]
fn fruits360_layouts_are_found_by_name() {
    use fastvision::data::download::fruits360_variant;
    use fastvision::lesson::DataSource;
    let tree = |root: &Path, dirs: &[&str]| {
        for d in dirs {
            for split in ["Training/Apple", "Test/Apple"] {
                std::fs::create_dir_all(root.join(d).join(split)).unwrap();
            }
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let today = tmp.path().join("today");
    tree(
        &today,
        &[
            // Sorts before the lesson's variant: the old rule (first found) took it.
            "fruits-360_0-preview/fruits-360-preview",
            "fruits-360_100x100/fruits-360",
            "fruits-360_original-size/fruits-360-original-size",
            "fruits-360_3-body-problem/fruits-360-3-body-problem",
        ],
    );
    std::fs::create_dir_all(today.join("fruits-360_dataset_meta/meta")).unwrap();
    let l = fruits360_variant(&today, None).unwrap();
    assert_eq!(l.variant, "100x100");
    assert_eq!(l.path, today.join("fruits-360_100x100/fruits-360"));
    assert_eq!(l.others, ["0-preview", "3-body-problem", "original-size"]);
    let said = l.to_string();
    assert!(
        said.contains("100x100 variant") && said.contains("#0-preview"),
        "{said}"
    );
    assert_eq!(
        fruits360_variant(&today, Some("original-size"))
            .unwrap()
            .path,
        today.join("fruits-360_original-size/fruits-360-original-size")
    );
    let err = fruits360_variant(&today, Some("250x250"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no \"250x250\" variant") && err.contains("original-size"),
        "{err}"
    );
    assert_eq!(fruits360_layout(&today).unwrap(), l.path);

    // The 2019 release: a top-level fruits-360/, or inside its zip's fruits-360_dataset/.
    for (name, inner) in [
        ("2019", "fruits-360"),
        ("2019-zip", "fruits-360_dataset/fruits-360"),
    ] {
        let root = tmp.path().join(name);
        tree(&root, &[inner]);
        let l = fruits360_variant(&root, None).unwrap();
        assert_eq!(
            (l.path, l.variant.as_str()),
            (root.join(inner), "fruits-360")
        );
        assert!(l.others.is_empty());
    }
    // A folder that is itself the layout.
    let plain = tmp.path().join("plain");
    tree(&plain, &["."]);
    assert_eq!(fruits360_layout(&plain).unwrap(), plain.join("."));

    // FASTVISION_DATA spellings.
    assert_eq!(
        "kaggle:moltean/fruits#original-size"
            .parse::<DataSource>()
            .unwrap(),
        DataSource::Kaggle("moltean/fruits#original-size".into())
    );
    let spec = format!("{}#3-body-problem", today.display());
    let (path, said) = spec.parse::<DataSource>().unwrap().get().unwrap();
    assert_eq!(
        path,
        today.join("fruits-360_3-body-problem/fruits-360-3-body-problem")
    );
    assert!(said.contains("3-body-problem variant"), "{said}");
}
