//! `verify_images` over a folder of large photos holds one image per worker, not one per file:
//! 200 generated 4000x3000 JPEGs (36 MB each decoded, 7.2 GB together) with `max_size` 500 are
//! fixed in a `fastvision verify` process whose peak RSS stays under 600 MB. Alone in its test
//! binary, so the peak of the one child process is what `getrusage` reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const N: usize = 200;
const W: u16 = 4000;
const H: u16 = 3000;

/// A smooth 4000x3000 photo-like JPEG (gradients and a disc), different per `seed`.
fn large_jpeg(seed: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity(W as usize * H as usize * 3);
    for y in 0..H as u32 {
        for x in 0..W as u32 {
            let (dx, dy) = (x as i64 - 2000, y as i64 - 1500);
            let inside = dx * dx + dy * dy < 1_000_000;
            px.push(if inside { 200 } else { (x / 16 + seed) as u8 });
            px.push(if inside {
                (40 + seed * 3) as u8
            } else {
                (y / 12) as u8
            });
            px.push(((x + y) / 28) as u8);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&px, W, H, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn peak_rss_of_children_mb() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage.ru_maxrss as f64 / 1024.0
}

fn snapshot(files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::read(f).unwrap()))
        .collect()
}

#[test]
fn verify_fixes_200_large_photos_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Photos");
    let class = dir.join("Apple");
    std::fs::create_dir_all(&class).unwrap();
    let variants: Vec<Vec<u8>> = (0..4).map(large_jpeg).collect();
    for i in 0..N {
        std::fs::write(class.join(format!("{i:03}.jpg")), &variants[i % 4]).unwrap();
    }
    // Untouchables: a small fine photo and a note, and three broken files.
    let small = image::RgbImage::from_fn(120, 90, |x, y| image::Rgb([x as u8, y as u8, 90]));
    small.save(class.join("small.png")).unwrap();
    std::fs::write(dir.join("notes.txt"), "taken on a sunny day\n").unwrap();
    let keep = snapshot(&[class.join("small.png"), dir.join("notes.txt")]);
    std::fs::write(class.join("cut.jpg"), &variants[0][..variants[0].len() / 2]).unwrap();
    std::fs::write(class.join("empty.jpg"), b"").unwrap();
    std::fs::write(class.join("text.jpg"), b"not a picture").unwrap();

    let before = peak_rss_of_children_mb();
    let out = Command::new(env!("CARGO_BIN_EXE_fastvision"))
        .args(["verify", "-r", "--max-size", "500"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = peak_rss_of_children_mb();
    assert!(peak > before, "the verify process is the largest child");
    println!("fastvision verify over {N} 4000x3000 JPEGs: peak RSS {peak:.0} MB");
    assert!(
        stdout.contains(&format!(
            "{} images checked, 3 broken, {N} resized or converted",
            N + 4
        )),
        "{stdout}"
    );
    assert!(
        peak < 600.0,
        "peak RSS {peak:.0} MB: verify must not hold the images it fixes"
    );

    for i in 0..N {
        let f = class.join(format!("{i:03}.jpg"));
        let (w, h) = image::image_dimensions(&f).unwrap();
        assert!(
            w.max(h) <= 500 && w.max(h) >= 499,
            "{}: {w}x{h}",
            f.display()
        );
    }
    for name in ["cut.jpg", "empty.jpg", "text.jpg"] {
        assert!(!class.join(name).exists());
        assert!(
            tmp.path()
                .join(".quarantine/Photos/Apple")
                .join(name)
                .is_file(),
            "{name} quarantined"
        );
    }
    assert_eq!(snapshot(&keep.keys().cloned().collect::<Vec<_>>()), keep);
    let left: Vec<_> = std::fs::read_dir(&class).unwrap().collect();
    assert_eq!(left.len(), N + 1, "no temporary files left behind");
}
