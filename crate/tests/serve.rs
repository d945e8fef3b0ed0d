//! `fastvision serve` over real HTTP on a socket: answers equal `Model::predict` on the same
//! file, every kind of bad upload gets its own status and the next good request still
//! succeeds, 64 concurrent clients get their own answers from shared batches, a full queue
//! answers 503, and a shutdown with requests in flight answers all of them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fastvision::serve::{ServeOptions, Server};
use fastvision::{cnn_learner, error_rate, mobilenet_v2};
use serde_json::Value;

/// A model exported from generated data, and photos to send it: the real sample's Test photos
/// when it is there, else the generated ones.
struct Fixture {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    photos: Vec<PathBuf>,
}

/// The metrics recorder is the process's own, shared by every server in it: the tests here run
/// one at a time so that the batch counts one of them reads are its own.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fixture() -> (std::sync::MutexGuard<'static, ()>, Fixture) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 21);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.fit(1, 1e-3).unwrap();
    let model = tmp.path().join("export.safetensors");
    learn.export(&model).unwrap();
    let photos = {
        let dir = common::real_sample();
        let mut all: Vec<PathBuf> = Vec::new();
        for class in std::fs::read_dir(dir.join("Test")).unwrap().take(8) {
            let class = class.unwrap().path();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&class)
                .unwrap()
                .map(|f| f.unwrap().path())
                .collect();
            files.sort();
            all.extend(files.into_iter().take(4));
        }
        all.sort();
        all
    };
    assert!(photos.len() >= 16, "{} photos", photos.len());
    (
        guard,
        Fixture {
            _tmp: tmp,
            model,
            photos,
        },
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    retry_after: Option<String>,
    json: Value,
}

/// Every JSON answer the tests received, to check that none names a path of this machine.
static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn send(url: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut r = agent()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.body_mut().read_to_string().unwrap();
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    Reply {
        status,
        retry_after,
        json,
    }
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap())
}

const BOUNDARY: &str = "fastvision-test-boundary";

/// A multipart body with one part per `(field, file name, bytes)`.
fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

fn predict_file(base: &str, file: &Path) -> Reply {
    let bytes = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    let (ct, body) = multipart(&[("file", name, &bytes)]);
    send(&format!("{base}/predict?k=3"), &ct, &body)
}

fn start(model: &Path, opts: ServeOptions) -> (Server, String) {
    let server = Server::start(model, ServeOptions { port: 0, ..opts }).unwrap();
    let base = format!("http://{}", server.addr());
    for _ in 0..600 {
        if get(&format!("{base}/health/ready")).0 == 200 {
            return (server, base);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server never became ready");
}

/// The answer for `file` is `Model::predict`'s on the same file.
fn assert_same(answer: &Value, expected: &fastvision::models::Prediction, what: &str) {
    assert_eq!(answer["class"], expected.class, "{what}: {answer}");
    assert_eq!(answer["index"], expected.index, "{what}");
    let p = answer["probability"].as_f64().unwrap();
    assert!(
        (p - expected.probs[expected.index] as f64).abs() < 1e-5,
        "{what}: {p} against {}",
        expected.probs[expected.index]
    );
    for t in answer["top"].as_array().unwrap() {
        let i = t["index"].as_u64().unwrap() as usize;
        let q = t["probability"].as_f64().unwrap();
        assert!(
            (q - expected.probs[i] as f64).abs() < 1e-5,
            "{what}: class {i}"
        );
    }
}

#[test]
fn answers_equal_predict_and_bad_uploads_get_their_own_errors() {
    let (_one, fx) = fixture();
    let model = fastvision::models::export::load_learner_on(&fx.model, tch::Device::Cpu).unwrap();
    let (server, base) = start(
        &fx.model,
        ServeOptions {
            max_body: 2 * 1024 * 1024,
            max_pixels: 10_000_000,
            max_files: 4,
            body_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    );
    let good = &fx.photos[0];
    let expected = model.predict(good).unwrap();
    let check_good = |what: &str| {
        let r = predict_file(&base, good);
        assert_eq!(r.status, 200, "after {what}: {}", r.json);
        assert_same(&r.json, &expected, &format!("after {what}"));
    };

    // A good request: the class, its probability, the top k and the times.
    let r = predict_file(&base, good);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_same(&r.json, &expected, "multipart");
    assert_eq!(r.json["top"].as_array().unwrap().len(), 3);
    assert!(
        r.json["queue_ms"].as_f64().unwrap() >= 0.0 && r.json["compute_ms"].as_f64().unwrap() > 0.0
    );
    // The raw body with an image type, and the course's /analyze.
    let bytes = std::fs::read(good).unwrap();
    let r = send(&format!("{base}/predict"), "image/jpeg", &bytes);
    assert_same(&r.json, &expected, "raw body");
    let (ct, body) = multipart(&[("file", "a.jpg", &bytes)]);
    let r = send(&format!("{base}/analyze"), &ct, &body);
    assert_eq!(r.json, serde_json::json!({ "result": expected.class }));
    // Every file of a multipart request in order; a bad one gets its own error entry.
    let others: Vec<Vec<u8>> = fx.photos[1..4]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let (ct, body) = multipart(&[
        ("file", "one.jpg", &others[0]),
        ("file", "notes.jpg", b"just some text, not a photo"),
        ("file", "two.jpg", &others[1]),
        ("file", "three.jpg", &others[2]),
    ]);
    let r = send(&format!("{base}/predict"), &ct, &body);
    assert_eq!(r.status, 200);
    let items = r.json["predictions"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[1]["status"], 415, "{}", items[1]);
    for (item, file) in [
        (&items[0], &fx.photos[1]),
        (&items[2], &fx.photos[2]),
        (&items[3], &fx.photos[3]),
    ] {
        assert_same(
            item,
            &model.predict(file).unwrap(),
            &file.display().to_string(),
        );
    }
    // The heatmap: a PNG of the square the model saw.
    let (ct, body) = multipart(&[("file", "a.jpg", &bytes)]);
    let r = send(&format!("{base}/predict?heatmap=true"), &ct, &body);
    let url = r.json["heatmap"].as_str().unwrap();
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        url.strip_prefix("data:image/png;base64,").unwrap(),
    )
    .unwrap();
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (model.size, model.size));

    // A bad query string: 400, as JSON too.
    let r = send(&format!("{base}/predict?k=many"), "image/jpeg", &bytes);
    assert_eq!(r.status, 400, "{}", r.json);
    assert!(
        r.json["error"].as_str().unwrap().contains("?k=5"),
        "{}",
        r.json
    );
    // Empty body: 400.
    expect_error(&base, "image/jpeg", b"", 400, "empty", &check_good);
    // A text file named .jpg: 415, from its bytes.
    let (ct, body) = multipart(&[("file", "photo.jpg", b"hello, this is text")]);
    expect_error(
        &base,
        &ct,
        &body,
        415,
        "photo.jpg: not an image",
        &check_good,
    );
    // A truncated JPEG: 422, naming the damage.
    let (ct, body) = multipart(&[("file", "cut.jpg", &bytes[..bytes.len() / 2])]);
    expect_error(
        &base,
        &ct,
        &body,
        422,
        "truncated or corrupt JPEG",
        &check_good,
    );
    // A decompression bomb: a small PNG declaring 60000 x 60000 pixels, refused from its header.
    let bomb = png_declaring(60_000, 60_000);
    assert!(bomb.len() < 1000);
    let (ct, body) = multipart(&[("file", "bomb.png", &bomb)]);
    expect_error(
        &base,
        &ct,
        &body,
        422,
        "60000x60000 pixels is over",
        &check_good,
    );
    // Over --max-body: 413, from the declared length, before the body is read (a client that
    // keeps sending would see the connection closed, as curl does, so this one only reads).
    let reply = raw(
        server.addr(),
        &format!(
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            3 * 1024 * 1024
        ),
        &[],
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("over the 2 MB limit"), "{reply}");
    check_good("a body over the limit");
    // A misnamed field: 400 naming the field expected.
    let (ct, body) = multipart(&[("image", "a.jpg", &bytes)]);
    expect_error(&base, &ct, &body, 400, "`file` (found: image)", &check_good);
    // A body sent too slowly: 408.
    let reply = raw(
        server.addr(),
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n",
        &bytes[..10],
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    check_good("a slow body");

    // More files than --max-files: 413.
    let five: Vec<(&str, &str, &[u8])> = (0..5).map(|_| ("file", "a.jpg", &bytes[..])).collect();
    let (ct, body) = multipart(&five);
    expect_error(&base, &ct, &body, 413, "more than 4 files", &check_good);

    // The other routes; no route serves a file.
    let (status, text) = get(&format!("{base}/model"));
    assert_eq!(status, 200);
    let card: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        card["classes"].as_array().unwrap().len(),
        model.classes.len()
    );
    assert_eq!(card["size"], model.size);
    assert_eq!(get(&format!("{base}/health/live")).0, 200);
    let (status, page) = get(&format!("{base}/"));
    assert!(status == 200 && page.contains("<input type=\"file\""));
    let (status, spec) = get(&format!("{base}/openapi.json"));
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&spec).unwrap()["paths"]["/predict"].is_object());
    for path in ["/export.safetensors", "/../Cargo.toml", "/static/page.html"] {
        let (status, text) = get(&format!("{base}{path}"));
        assert_eq!(status, 404, "{path}: {text}");
    }
    let text = get(&format!("{base}/metrics")).1;
    assert!(
        text.contains("fastvision_http_requests_total{route=\"/predict\",status=\"415\"}"),
        "{text}"
    );
    // A model file that is not one: not ready, saying why, naming the file but not its folder.
    let bad = fx._tmp.path().join("not-a-model.safetensors");
    std::fs::write(&bad, b"plain text").unwrap();
    let broken = Server::start(
        &bad,
        ServeOptions {
            port: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let url = format!("http://{}/health/ready", broken.addr());
    let mut why = String::new();
    for _ in 0..200 {
        let (status, text) = get(&url);
        assert_eq!(status, 503);
        if text.contains("failed to load") {
            why = text;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(why.contains("not-a-model.safetensors"), "{why}");
    SEEN.lock().unwrap_or_else(|p| p.into_inner()).push(why);
    broken.shutdown().unwrap();

    // No answer carried a path of this machine.
    let here = fx.model.parent().unwrap().to_str().unwrap().to_string();
    for body in SEEN.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        assert!(!body.contains(&here), "an answer names {here}: {body}");
    }
    server.shutdown().unwrap();
}

/// Sends `head` and `body` on a socket of its own and reads whatever comes back until the
/// server closes it (or 10 s pass).
fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// Sends `body`, expects `status` with an error message containing `needle`, then checks that
/// a good request is still answered.
fn expect_error(
    base: &str,
    ct: &str,
    body: &[u8],
    status: u16,
    needle: &str,
    check_good: &dyn Fn(&str),
) {
    let r = send(&format!("{base}/predict"), ct, body);
    assert_eq!(r.status, status, "{}", r.json);
    let msg = r.json["error"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    check_good(needle);
}

/// A PNG whose header declares `w` x `h` pixels, with almost no data behind it.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::DynamicImage::new_rgb8(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    // IHDR's width and height sit at bytes 16..24; its CRC (29..33) is recomputed.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `fastvision_batch_size`'s sum and count in the metrics text.
fn batch_stats(text: &str) -> (f64, f64) {
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    (
        value("fastvision_batch_size_sum"),
        value("fastvision_batch_size_count"),
    )
}

#[test]
fn concurrent_clients_share_batches_a_full_queue_refuses_and_shutdown_answers_all() {
    let (_one, fx) = fixture();
    let model = fastvision::models::export::load_learner_on(&fx.model, tch::Device::Cpu).unwrap();
    let expected: Vec<_> = fx
        .photos
        .iter()
        .map(|p| model.predict(p).unwrap())
        .collect();

    // 64 clients at once, each with its own photo, 3 times: every answer is its own file's.
    let (server, base) = start(&fx.model, ServeOptions::default());
    let before = batch_stats(&get(&format!("{base}/metrics")).1);
    std::thread::scope(|s| {
        for c in 0..64 {
            let (base, photos, expected) = (&base, &fx.photos, &expected);
            s.spawn(move || {
                for round in 0..3 {
                    let i = (c * 7 + round) % photos.len();
                    let r = predict_file(base, &photos[i]);
                    assert_eq!(r.status, 200, "client {c}: {}", r.json);
                    assert_eq!(
                        r.json["file"],
                        photos[i].file_name().unwrap().to_str().unwrap()
                    );
                    assert_same(
                        &r.json,
                        &expected[i],
                        &format!("client {c}, {}", photos[i].display()),
                    );
                }
            });
        }
    });
    let after = batch_stats(&get(&format!("{base}/metrics")).1);
    let (sum, count) = (after.0 - before.0, after.1 - before.1);
    assert!(
        count > 0.0 && sum == 192.0,
        "{sum} images in {count} batches"
    );
    assert!(sum / count > 1.0, "mean batch size {}", sum / count);
    server.shutdown().unwrap();

    // A queue of 2 with one image a pass: many at once, and the rest are told to come back.
    let (server, base) = start(
        &fx.model,
        ServeOptions {
            queue: 2,
            max_batch: 1,
            ..Default::default()
        },
    );
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..48)
            .map(|c| {
                let (base, photos) = (&base, &fx.photos);
                s.spawn(move || {
                    // With its heatmap each pass takes a backward too: the queue fills.
                    let bytes = std::fs::read(&photos[c % photos.len()]).unwrap();
                    let r = send(
                        &format!("{base}/predict?heatmap=true"),
                        "image/jpeg",
                        &bytes,
                    );
                    (r.status, r.retry_after)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy = statuses.iter().filter(|s| s.0 == 503).count();
    assert!(busy > 0, "no 503 from a full queue: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| s.0 == 200 || (s.0 == 503 && s.1.as_deref() == Some("1"))),
        "{statuses:?}"
    );
    assert!(predict_file(&base, &fx.photos[0]).status == 200);
    server.shutdown().unwrap();

    // Shutdown while 16 requests are in flight (each sends half its photo, then the rest a
    // second later): all of them are answered, and only then does the server stop.
    let (server, base) = start(&fx.model, ServeOptions::default());
    let addr = server.addr();
    let in_flight = std::sync::atomic::AtomicUsize::new(0);
    let replies = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|c| {
                let (photos, in_flight) = (&fx.photos, &in_flight);
                s.spawn(move || {
                    let bytes = std::fs::read(&photos[c]).unwrap();
                    let mut sock = TcpStream::connect(addr).unwrap();
                    write!(
                        sock,
                        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n\
                         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    )
                    .unwrap();
                    // The server says continue once its handler reads the body: from then on
                    // the request is in flight.
                    let mut cont = [0u8; 25];
                    sock.read_exact(&mut cont).unwrap();
                    assert!(
                        cont.starts_with(b"HTTP/1.1 100 Continue"),
                        "{}",
                        String::from_utf8_lossy(&cont)
                    );
                    in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let half = bytes.len() / 2;
                    sock.write_all(&bytes[..half]).unwrap();
                    std::thread::sleep(Duration::from_millis(1000));
                    sock.write_all(&bytes[half..]).unwrap();
                    let mut reply = String::new();
                    sock.read_to_string(&mut reply).unwrap();
                    reply
                })
            })
            .collect();
        while in_flight.load(std::sync::atomic::Ordering::SeqCst) < 16 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = std::time::Instant::now();
        server.shutdown().unwrap();
        let waited = t.elapsed();
        let replies: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            waited >= Duration::from_millis(500),
            "shutdown returned after {waited:?}"
        );
        replies
    });
    for (c, reply) in replies.iter().enumerate() {
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "request {c} lost in shutdown: {reply}"
        );
        let json: Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_same(&json, &expected[c], &format!("request {c}"));
    }
    // Nothing is accepted after it.
    assert!(TcpStream::connect(addr).is_err() || get_status(&base).is_none());
}

/// GET /health/live's status, or None when nothing answers.
fn get_status(base: &str) -> Option<u16> {
    agent()
        .get(&format!("{base}/health/live"))
        .call()
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn the_page_classifies_a_photo_in_a_real_browser() {
    let python = common::repo_root().join(".venv/bin/python");
    let require = std::env::var("FASTVISION_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!require, "FASTVISION_REQUIRE_BROWSER=1 but {why}");
        eprintln!("SKIPPED the_page_classifies_a_photo_in_a_real_browser: {why}");
    };
    let has_playwright = std::process::Command::new(&python)
        .args(["-c", "import playwright"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_playwright {
        return skip("Playwright is not in .venv (make setup installs it)");
    }
    let (_one, fx) = fixture();
    let model = fastvision::models::export::load_learner_on(&fx.model, tch::Device::Cpu).unwrap();
    let photo = &fx.photos[5];
    let expected = model.predict(photo).unwrap();
    let (server, base) = start(&fx.model, ServeOptions::default());
    let shot = fx._tmp.path().join("serve.png");
    let script = common::repo_root().join("crate/tests/browser/serve_page.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&base)
        .arg(photo)
        .arg(&shot)
        .output()
        .unwrap();
    server.shutdown().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        return skip(&format!(
            "no chromium ({}); on Debian: apt-get install chromium",
            stderr.trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PAGE_JSON "))
        .unwrap_or_else(|| panic!("no result from the browser:\n{stdout}\n{stderr}"));
    let page: Value = serde_json::from_str(line).unwrap();
    assert_eq!(page["class"], expected.class, "{page}");
    assert_eq!(page["bars"][0], expected.class, "{page}");
    assert_eq!(
        page["bars"].as_array().unwrap().len(),
        5.min(model.classes.len()),
        "{page}"
    );
    let shown = format!("{:.1}% sure", 100.0 * expected.probs[expected.index]);
    assert_eq!(page["prob"], shown, "{page}");
    assert!(
        page["model_line"]
            .as_str()
            .unwrap()
            .contains(&format!("{} classes", model.classes.len()))
    );
    assert_eq!(
        page["focused"], "pick",
        "the photo picker is the first stop of the keyboard"
    );
    assert_eq!(page["heatmap_pressed"], "true");
    assert_eq!(
        page["heatmap_size"],
        serde_json::json!([model.size, model.size])
    );
    assert_eq!(
        page["phone_overflow"], false,
        "the page scrolls sideways at phone width"
    );
    assert!(
        page["error"].as_str().unwrap().contains("not an image"),
        "{page}"
    );
    assert_eq!(page["result_hidden"], true);
    assert_eq!(page["page_errors"], serde_json::json!([]));
    let png = image::open(&shot).unwrap();
    assert!(png.width() >= 1000, "{}x{}", png.width(), png.height());
}

#[test]
fn the_cli_serves_until_sigterm_then_exits_cleanly() {
    use std::io::BufRead;
    let (_one, fx) = fixture();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fastvision"))
        .args(["serve", fx.model.to_str().unwrap(), "--port", "0"])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails before its SIGTERM, so no server outlives it.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server said where it listens")
            .unwrap();
        if let Some(at) = line.split("on http://").nth(1) {
            break format!("http://{}", at.trim());
        }
    };
    // Whatever it logs from here on is drained, so it never blocks on a full pipe.
    let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let mut ready = false;
    for _ in 0..600 {
        if get(&format!("{base}/health/ready")).0 == 200 {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready, "the CLI's server never became ready");
    let r = predict_file(&base, &fx.photos[0]);
    assert_eq!(r.status, 200, "{}", r.json);
    // SAFETY: kill(2) on the child's own pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let logs = logs.join().unwrap().join("\n");
    assert!(logs.contains("shutting down"), "{logs}");
}
