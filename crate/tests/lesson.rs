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
    // (figure, colours it must have at least): the two grids of photos have thousands, the
    // plots a few dozen (axes, text's anti-aliasing, lines or cells).
    for (png, min_colours) in [
        ("show_batch.png", 1000),
        ("plot_losses.png", 20),
        ("top_losses.png", 1000),
        ("confusion_matrix.png", 20),
        ("lr_find.png", 20),
    ] {
        let img = image::open(out.join(png))
            .unwrap_or_else(|e| panic!("{png}: {e}"))
            .to_rgb8();
        assert!(img.width() > 300, "{png} is {}px wide", img.width());
        let (ink, colours) = ink_and_colours(&img);
        assert!(
            ink > 0.02 && colours >= min_colours,
            "{png} looks blank: {:.1}% of it differs from its background, {colours} colours",
            100.0 * ink
        );
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

/// The share of pixels that differ from the most common colour (the background), and how many
/// colours the picture has.
fn ink_and_colours(img: &image::RgbImage) -> (f64, usize) {
    let mut counts = std::collections::HashMap::<[u8; 3], usize>::new();
    for p in img.pixels() {
        *counts.entry(p.0).or_default() += 1;
    }
    let background = counts.values().copied().max().unwrap_or(0);
    let total = (img.width() * img.height()) as f64;
    (1.0 - background as f64 / total, counts.len())
}
