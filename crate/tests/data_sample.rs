//! generate_sample: the offline stand-in for Fruits 360.

use std::path::Path;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn sample_has_the_fruits360_layout_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = fastvision::generate_sample(&tmp.path().join("a"), 5, 10, 7).unwrap();
    let b = fastvision::generate_sample(&tmp.path().join("b"), 5, 10, 7).unwrap();
    let c = fastvision::generate_sample(&tmp.path().join("c"), 5, 10, 8).unwrap();

    let classes: Vec<String> = std::fs::read_dir(a.join("Training"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(classes.len(), 5);
    assert!(
        classes.iter().all(|c| c.starts_with("Synthetic ")),
        "{classes:?}"
    );
    assert!(
        std::fs::read_to_string(a.join("SYNTHETIC.txt"))
            .unwrap()
            .contains("not photographs")
    );
    for class in &classes {
        assert_eq!(
            std::fs::read_dir(a.join("Training").join(class))
                .unwrap()
                .count(),
            10
        );
        assert_eq!(
            std::fs::read_dir(a.join("Test").join(class))
                .unwrap()
                .count(),
            3
        );
    }

    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa.len(), 5 * 13 + 1);
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "same seed, same bytes: {}",
            x.display()
        );
    }
    let differs = fa.iter().zip(&fc).filter(|(x, y)| {
        x.extension().is_some_and(|e| e == "jpg")
            && std::fs::read(x).unwrap() != std::fs::read(y).unwrap()
    });
    assert!(differs.count() > 50, "another seed draws other images");

    let jpg = fa
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "jpg"))
        .unwrap();
    let name = jpg.file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with("r_") && name.ends_with("_100.jpg"),
        "{name}"
    );
    let img = image::open(jpg).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (100, 100));
    // White background in the corners, a coloured object in the middle.
    assert!(img.get_pixel(1, 1).0.iter().all(|&v| v > 245));
    let object = img
        .pixels()
        .filter(|p| p.0.iter().any(|&v| v < 200))
        .count();
    assert!(
        object > 1500 && object < 8000,
        "{object} object pixels of 10000"
    );
}

#[test]
fn classes_look_different_and_frames_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fastvision::generate_sample(&tmp.path().join("s"), 4, 3, 1).unwrap();
    let mut means = Vec::new();
    let mut classes: Vec<_> = std::fs::read_dir(dir.join("Training"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    for class in &classes {
        let mut frames: Vec<_> = std::fs::read_dir(class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        frames.sort();
        let a = image::open(&frames[0]).unwrap().to_rgb8();
        let b = image::open(&frames[1]).unwrap().to_rgb8();
        assert_ne!(
            a.as_raw(),
            b.as_raw(),
            "consecutive frames of {} must differ",
            class.display()
        );
        let n = a.as_raw().len() as f64 / 3.0;
        let mean: Vec<f64> = (0..3)
            .map(|c| {
                a.as_raw()
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / n
            })
            .collect();
        means.push(mean);
    }
    for i in 0..means.len() {
        for j in i + 1..means.len() {
            let d: f64 = (0..3).map(|c| (means[i][c] - means[j][c]).abs()).sum();
            assert!(
                d > 5.0,
                "classes {i} and {j} have nearly the same colour: {:?} {:?}",
                means[i],
                means[j]
            );
        }
    }
}

#[test]
fn an_existing_other_folder_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("mine");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("precious.txt"), "keep").unwrap();
    let err = fastvision::generate_sample(&dest, 3, 2, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dest.join("precious.txt")).unwrap(),
        "keep"
    );
    // The same arguments twice reuse the first sample.
    let s = tmp.path().join("s");
    fastvision::generate_sample(&s, 3, 2, 0).unwrap();
    fastvision::generate_sample(&s, 3, 2, 0).unwrap();
    assert!(fastvision::generate_sample(&s, 3, 2, 1).is_err());
}

/// Several processes (parallel tests, doc tests) making the same sample at once all get it,
/// whole, and leave no temporary folders behind.
#[test]
fn the_same_sample_made_at_once_by_several_threads_is_one_whole_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("s");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| fastvision::generate_sample(&dest, 3, 6, 9)))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), dest);
        }
    });
    let entries: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["s"], "no temporary folder left");
    let classes = std::fs::read_dir(dest.join("Training")).unwrap().count();
    assert_eq!(classes, 3);
}
