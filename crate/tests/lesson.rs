//! `fastvision lesson` end to end on a small generated sample: every figure and the report.

use fastvision::lesson::{LessonOptions, run_lesson};

#[test]
fn the_lesson_writes_every_figure_and_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = fastvision::generate_sample(&tmp.path().join("fruits"), 4, 20, 3).unwrap();
    let out = tmp.path().join("out");
    let opts = LessonOptions {
        data: fastvision::lesson::DataSource::Folder(data),
        out: out.clone(),
        epochs: (1, 1),
        ..Default::default()
    };
    let report = run_lesson(&opts).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    for png in [
        "show_batch.png",
        "plot_losses.png",
        "top_losses.png",
        "confusion_matrix.png",
        "lr_find.png",
    ] {
        let img = image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(img.width() > 300, "{png} is {}px wide", img.width());
        assert!(html.contains(&format!("src={png}")), "report lacks {png}");
    }
    assert!(
        html.contains("error_rate") && html.contains("predict("),
        "{html}"
    );
    assert!(
        out.join("export.safetensors").is_file()
            && out.join("models/stage-1.safetensors").is_file()
    );
    let learn = fastvision::load_learner(&out.join("export.safetensors")).unwrap();
    assert_eq!(learn.classes.len(), 4);
}
