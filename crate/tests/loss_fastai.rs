//! fastvision's losses against fastai's own (crate/tests/fixtures/losses.json, made by
//! scripts/loss_fixtures.py with fastai 2.8.12), and a learner's `loss_func` used everywhere a
//! loss is: training, validation and the per-item losses the interpretation ranks.

mod common;

use fastvision::loss::{CrossEntropyFlat, LabelSmoothingCrossEntropy, LossFunc};
use fastvision::{ClassificationInterpretation, cnn_learner, error_rate, mobilenet_v2};
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture() -> Value {
    let path = common::repo_root().join("crate/tests/fixtures/losses.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn losses_equal_fastais_item_by_item() {
    let f = fixture();
    let rows: Vec<Vec<f64>> = f["logits"].as_array().unwrap().iter().map(floats).collect();
    let logits = Tensor::from_slice2(&rows).to_kind(Kind::Float);
    let targets = Tensor::from_slice(
        &f["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect::<Vec<_>>(),
    );
    let ours: [(&str, Box<dyn LossFunc>); 3] = [
        ("cross_entropy_flat", Box::new(CrossEntropyFlat)),
        (
            "label_smoothing_0.1",
            Box::new(LabelSmoothingCrossEntropy { eps: 0.1 }),
        ),
        (
            "label_smoothing_0.3",
            Box::new(LabelSmoothingCrossEntropy { eps: 0.3 }),
        ),
    ];
    for (name, loss) in ours {
        let theirs = &f["losses"][name];
        let per_item =
            Vec::<f64>::try_from(loss.per_item(&logits, &targets).to_kind(Kind::Double)).unwrap();
        // float32 arithmetic on both sides, with logits up to about 1,400 in the first row.
        for (i, (a, b)) in per_item.iter().zip(floats(&theirs["none"])).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{name}, item {i}: {a} where fastai has {b}"
            );
        }
        let mean = loss.loss(&logits, &targets).double_value(&[]);
        let b = theirs["mean"].as_f64().unwrap();
        assert!(
            (mean - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{name}, mean: {mean} where fastai has {b}"
        );
    }
}

/// A learner trained with label smoothing reports it in validation and ranks its top losses by
/// it, not by a cross-entropy computed somewhere else.
#[test]
fn a_learners_loss_func_is_the_one_every_step_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_data(tmp.path(), 3);
    let mut learn = cnn_learner(&data, mobilenet_v2, &[error_rate]).unwrap();
    learn.loss_func = Box::new(LabelSmoothingCrossEntropy::default());
    learn.clear_cbs();
    learn.fit_one_cycle(1, 1e-3).unwrap();

    let (probs, y, losses) = learn.get_preds(&learn.data.valid_dl).unwrap();
    // Label smoothing from the probabilities by hand: eps/C * -Σ log p + (1 - eps) * -log p_y.
    let c = probs.size()[1] as f64;
    let logp = probs.clamp_min(1e-30).log();
    let by_hand = -logp.sum_dim_intlist(1, false, Kind::Float) * (0.1 / c)
        - logp.gather(1, &y.unsqueeze(1), false).squeeze_dim(1) * 0.9;
    let diff = (&losses - &by_hand).abs().max().double_value(&[]);
    assert!(
        diff < 1e-3,
        "per-item losses differ from label smoothing by {diff}"
    );
    let plain = CrossEntropyFlat.per_item(&probs.log(), &y);
    assert!(
        (&losses - &plain).abs().max().double_value(&[]) > 1e-3,
        "the losses are plain cross-entropy"
    );

    let (valid_loss, _) = learn.validate().unwrap();
    let mean = losses.mean(Kind::Double).double_value(&[]);
    assert!(
        (valid_loss - mean).abs() < 1e-4 * mean,
        "validate {valid_loss}, get_preds mean {mean}"
    );
    let recorded = learn.recorder.epochs[0].valid_loss.unwrap();
    assert!(
        (recorded - valid_loss).abs() < 1e-4 * valid_loss,
        "the fit recorded {recorded}"
    );

    let interp = ClassificationInterpretation::from_learner(&learn).unwrap();
    let (top, _) = interp.top_losses_k(1);
    let top = top.double_value(&[0]);
    let max = losses.max().double_value(&[]);
    assert!(
        (top - max).abs() < 1e-5 * max.max(1.0),
        "top loss {top}, largest loss {max}"
    );
}
