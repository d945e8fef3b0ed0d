//! lr_find's suggestions against fastai's own: real sweeps recorded by fastvision
//! (crate/examples/lr_find_curves.rs) whose `valley`, `steep` and `minimum` were computed by
//! fastai 2.8.12 itself (scripts/lr_find_fixtures.py). Covers a sweep stopped where the loss
//! diverged, a noisy one that ran its full length, and a short one.

use fastvision::learner::recorder::Recorder;
use serde_json::Value;

fn fixtures() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lr_find");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    ((a - b) / b).abs() < 1e-6
}

#[test]
fn suggestions_equal_fastai_on_recorded_sweeps() {
    let all = fixtures();
    assert!(all.len() >= 3, "{} fixtures", all.len());
    let mut early_stopped = 0;
    for fx in &all {
        let name = fx["name"].as_str().unwrap();
        assert!(
            fx["made_by"].as_str().unwrap().contains("fastai 2.8.12"),
            "{name}: {}",
            fx["made_by"]
        );
        let num_it = fx["num_it"].as_u64().unwrap() as usize;
        let rec = Recorder {
            lrs: floats(&fx["lrs"]),
            losses: floats(&fx["losses"]),
            num_it,
            is_lr_find: true,
            ..Default::default()
        };
        if rec.lrs.len() < num_it {
            early_stopped += 1;
        }
        let s = rec.suggestions().unwrap();
        let ours = [
            ("valley", s.valley, s.valley_at),
            ("steep", s.steep, s.steep_at),
            ("minimum", s.minimum, s.minimum_at),
        ];
        for (func, lr, (x, y)) in ours {
            let theirs = &fx["fastai"][func];
            let (want_lr, want) = (theirs["lr"].as_f64().unwrap(), floats(&theirs["point"]));
            assert!(
                close(lr, want_lr) && close(x, want[0]) && close(y, want[1]),
                "{name} {func}: fastvision {lr:e} at ({x:e}, {y}), fastai {want_lr:e} at ({:e}, {})",
                want[0],
                want[1]
            );
        }
        // The plot draws the whole sweep, up to the divergence.
        assert_eq!(
            rec.lr_curve().unwrap().sweep().0.len(),
            rec.lrs.len(),
            "{name}"
        );
    }
    assert!(early_stopped >= 1, "no fixture stopped at the divergence");
}
