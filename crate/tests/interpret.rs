//! ClassificationInterpretation on a learner trained on the real sample (generated data when
//! the sample is absent).

mod common;

use fastvision::interpret::plot_confusion;
use fastvision::models::Mode;
use fastvision::{
    ClassificationInterpretation, FromFolder, ImageDataBunch, Learner, cnn_learner, error_rate,
    get_transforms, imagenet_stats, mobilenet_v2,
};
use tch::{Kind, Tensor};

fn trained() -> (Learner, Option<tempfile::TempDir>) {
    let (path, tmp) = (common::real_sample(), None::<tempfile::TempDir>);
    let opts = FromFolder {
        train: "Training".into(),
        valid: "Test".into(),
        size: 64,
        ds_tfms: Some(get_transforms()),
        ..Default::default()
    };
    let data = ImageDataBunch::from_folder(&path, opts)
        .unwrap()
        .normalize(imagenet_stats)
        .unwrap();
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    // A short, deliberately imperfect training so there are mistakes to interpret.
    learn.fit_one_cycle(1, 1e-3).unwrap();
    (learn, tmp)
}

#[test]
fn interpretation_is_consistent_and_plots_read_well() {
    let (learn, _tmp) = trained();
    let interp = ClassificationInterpretation::from_learner(&learn).unwrap();
    let n = interp.items.len() as i64;
    let c = interp.classes.len() as i64;
    assert_eq!(interp.probs.size(), vec![n, c]);
    // Its own copy of the model predicts exactly as the learner does.
    let x = learn.data.valid_dl.one_batch(false).x;
    let (mine, theirs) = tch::no_grad(|| {
        (
            interp.model().forward(&x, Mode::Eval),
            learn.model.forward(&x, Mode::Eval),
        )
    });
    assert!(mine.equal(&theirs), "the interpretation's model differs");

    // top_losses: sorted, and each loss is the cross-entropy recomputed from the probabilities.
    let (losses, idx) = interp.top_losses();
    let losses: Vec<f64> = Vec::try_from(&losses.to_kind(Kind::Double)).unwrap();
    assert!(
        losses.windows(2).all(|w| w[0] >= w[1]),
        "top_losses must be sorted"
    );
    let idx: Vec<i64> = Vec::try_from(&idx).unwrap();
    for (&i, &l) in idx.iter().zip(&losses).take(50) {
        let y = interp.y_true.int64_value(&[i]);
        let ce = -interp.probs.double_value(&[i, y]).max(1e-30).ln();
        assert!(
            (ce - l).abs() < 1e-3 * (1.0 + l),
            "item {i}: loss {l}, recomputed {ce}"
        );
    }
    // top_loss(rank): the same ranking, named by item, file and loss; past the end, nothing.
    for rank in [0, 1, idx.len() - 1] {
        let (i, file, loss) = interp.top_loss(rank).unwrap();
        assert_eq!(i as i64, idx[rank], "rank {rank}");
        assert_eq!(file, interp.items[i], "rank {rank}");
        assert!((loss - losses[rank]).abs() < 1e-6, "rank {rank}: {loss}");
    }
    assert!(interp.top_loss(idx.len()).is_none());
    let df = interp.top_losses_df(5);
    assert_eq!(
        df.get_column_names(),
        [
            "file",
            "actual",
            "predicted",
            "loss",
            "P(actual)",
            "P(predicted)"
        ]
    );

    // The confusion matrix counts every item once, where its prediction says.
    let cm = interp.confusion_matrix();
    assert_eq!(cm.sum(Kind::Int64).int64_value(&[]), n);
    let mut manual = vec![0i64; (c * c) as usize];
    for i in 0..n {
        manual[(interp.y_true.int64_value(&[i]) * c + interp.pred_class.int64_value(&[i]))
            as usize] += 1;
    }
    assert_eq!(Vec::<i64>::try_from(cm.view([-1])).unwrap(), manual);
    let errors = n - cm.diagonal(0, 0, 1).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(errors, interp.n_errors());
    assert_eq!(interp.confusion_df().height() as i64, c);

    // most_confused agrees with the matrix.
    let mc = interp.most_confused(1);
    let total: i64 = mc.0.iter().map(|p| p.2).sum();
    assert_eq!(total, errors);
    assert!(mc.0.windows(2).all(|w| w[0].2 >= w[1].2));
    for (a, p, k) in &mc.0 {
        let ai = interp.classes.iter().position(|x| x == a).unwrap() as i64;
        let pi = interp.classes.iter().position(|x| x == p).unwrap() as i64;
        assert_eq!(cm.int64_value(&[ai, pi]), *k);
    }
    println!("{errors} mistakes in {n}; most confused:\n{mc}");

    // Grad-CAM: image-sized maps in [0, 1], different for different classes.
    let dl = &learn.data.valid_dl;
    let batch = dl.epoch(0).next().unwrap().unwrap();
    let x = batch.x.narrow(0, 0, 6);
    let a: Vec<i64> = Vec::try_from(&batch.y.narrow(0, 0, 6)).unwrap();
    let b: Vec<i64> = a.iter().map(|&y| (y + c / 2) % c).collect();
    let (ca, cb) = (
        interp.gradcam(&x, &a).unwrap(),
        interp.gradcam(&x, &b).unwrap(),
    );
    assert_eq!(ca.size(), vec![6, 64, 64]);
    assert!(ca.min().double_value(&[]) >= 0.0 && ca.max().double_value(&[]) <= 1.0 + 1e-6);
    let diff = (&ca - &cb).abs().mean(Kind::Float).double_value(&[]);
    assert!(
        diff > 0.02,
        "Grad-CAM for different classes differs by only {diff}"
    );

    let out = common::repo_root().join("out/test-figures");
    let fig = interp
        .plot_top_losses_with(9, (15.0, 11.0), fastvision::interpret::TopLosses::heatmap())
        .unwrap();
    let (w, h) = fig.size();
    assert!(
        w <= 1500 && (1050..=1100).contains(&h),
        "{w}x{h}: within figsize, using its height"
    );
    fig.save(&out.join("top_losses.png")).unwrap();
    let fig = interp.plot_confusion_matrix().unwrap();
    fig.save(&out.join("confusion_30.png")).unwrap();
    interp
        .plot_confusion_matrix_with(fastvision::interpret::ConfusionPlot {
            normalize: true,
            ..Default::default()
        })
        .unwrap()
        .save(&out.join("confusion_30_normalized.png"))
        .unwrap();
    if errors > 0 {
        interp
            .plot_confusion_matrix_with(fastvision::interpret::ConfusionPlot {
                only_mistakes: true,
                ..Default::default()
            })
            .unwrap()
            .save(&out.join("confusion_mistakes.png"))
            .unwrap();
    }
}

#[test]
fn a_131_class_matrix_is_drawn_readably() {
    let c = 131i64;
    let classes: Vec<String> = (0..c)
        .map(|i| format!("Fruit variety number {i}"))
        .collect();
    // Mostly right, with a few confusions between neighbours.
    let cm = Tensor::eye(c, (Kind::Int64, tch::Device::Cpu)) * 40
        + Tensor::eye(c, (Kind::Int64, tch::Device::Cpu)).roll([1], [1]) * 2;
    let fig = plot_confusion(&cm, &classes, Default::default()).unwrap();
    let (w, h) = fig.size();
    assert!(w >= 131 * 8 && h >= 131 * 8 && w < 4000, "{w}x{h}");
    fig.save(&common::repo_root().join("out/test-figures/confusion_131.png"))
        .unwrap();
    // At 95 classes with a diagonal of 170, one mistake and twenty are told apart: each has
    // its own colour, far from the other and from the background.
    let c95 = 95i64;
    let mut counts = vec![0i64; (c95 * c95) as usize];
    for i in 0..c95 {
        counts[(i * c95 + i) as usize] = 170;
    }
    counts[(3 * c95 + 4) as usize] = 1;
    counts[(40 * c95 + 41) as usize] = 20;
    let cm95 = Tensor::from_slice(&counts).view([c95, c95]);
    let img = plot_confusion(&cm95, &classes[..95], Default::default())
        .unwrap()
        .to_rgb();
    let (one, twenty) = (
        fastvision::show::colors::oranges(0.25),
        fastvision::show::colors::oranges(1.0),
    );
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(
        count(one) > 20 && count(twenty) > 20,
        "{} {}",
        count(one),
        count(twenty)
    );
    let far = one
        .iter()
        .zip(&twenty)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .sum::<i32>();
    assert!(far > 200, "1 and 20 look alike: {one:?} {twenty:?}");
    // No mistake at all: the mistakes-only view is still a picture (the whole matrix, so
    // titled), not an error in the middle of a notebook.
    let perfect = plot_confusion(
        &(Tensor::eye(3, (Kind::Int64, tch::Device::Cpu)) * 5),
        &classes[..3],
        fastvision::interpret::ConfusionPlot::new().only_mistakes(),
    )
    .unwrap();
    assert!(perfect.size().0 > 200);
    let two = plot_confusion(
        &Tensor::from_slice(&[9i64, 1, 2, 8]).view([2, 2]),
        &classes[..2],
        Default::default(),
    )
    .unwrap();
    assert!(two.size().0 < 1000);
}

#[test]
fn tta_blends_augmented_predictions() {
    let (learn, _tmp) = trained();
    let plain = ClassificationInterpretation::from_learner(&learn).unwrap();
    let tta = ClassificationInterpretation::from_learner_tta(
        &learn,
        fastvision::learner::tta::Tta::default(),
    )
    .unwrap();
    assert_eq!(tta.probs.size(), plain.probs.size());
    let sums = tta
        .probs
        .sum_dim_intlist(Some([1i64].as_slice()), false, Kind::Float);
    assert!(
        (sums - 1.0).abs().max().double_value(&[]) < 1e-4,
        "TTA probabilities still sum to 1"
    );
    let moved = (&tta.probs - &plain.probs)
        .abs()
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(
        moved > 1e-5 && moved < 0.2,
        "TTA changed predictions by {moved}"
    );
    let (l, i) = tta.top_losses_k(1);
    let i = i.int64_value(&[0]);
    let y = tta.y_true.int64_value(&[i]);
    assert!((l.double_value(&[0]) + tta.probs.double_value(&[i, y]).ln()).abs() < 1e-4);
}
