//! Architectures and weights: torchvision's own checkpoints load unchanged and compute the
//! same outputs; the real MobileNetV2 ImageNet weights recognise real fruit.

mod common;

use std::collections::HashMap;
use std::process::Command;

use fastvision::data::image::load_rgb;
use fastvision::models::weights::{convert_pth, load_into, pretrained_weights, python};
use fastvision::models::{Arch, Mode, archs::forward_stages, mobilenet_v2};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// torchvision builds `arch` with random weights, saves its state_dict as a .pth, and saves an
/// input with torchvision's logits for it; our model must load the .pth and agree.
#[test]
fn torchvision_checkpoints_load_and_match_outputs() {
    let py = python().expect("the .venv python (make setup)");
    let tmp = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let pth = tmp.path().join(format!("{arch}.pth"));
        let io = tmp.path().join(format!("{arch}-io.safetensors"));
        let script = format!(
            "import torch, torchvision, safetensors.torch as st\n\
             torch.manual_seed(0)\n\
             m = torchvision.models.{arch}(weights=None).eval()\n\
             torch.save(m.state_dict(), '{}')\n\
             x = torch.rand(2, 3, 64, 64)\n\
             with torch.no_grad(): y = m(x)\n\
             st.save_file({{'x': x, 'y': y}}, '{}')\n",
            pth.display(),
            io.display()
        );
        let out = Command::new(&py).arg("-c").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Converted by four threads at once into one file, as parallel tests do with a cold
        // torch cache: every conversion succeeds and leaves one whole file, no temporaries.
        let st = tmp.path().join(format!("{arch}.safetensors"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| convert_pth(&pth, &st).unwrap());
            }
        });
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let vs = VarStore::new(Device::Cpu);
        let body = arch.body(&vs.root());
        let classifier = arch.imagenet_classifier(&vs.root());
        let n = load_into(&vs, &st, &[""]).unwrap();
        assert_eq!(n, vs.variables().len(), "{arch}: every variable loaded");

        let io: HashMap<String, Tensor> =
            Tensor::read_safetensors(&io).unwrap().into_iter().collect();
        let y = tch::no_grad(|| {
            classifier.forward_t(&forward_stages(&body, &io["x"], Mode::Eval), false)
        });
        let diff = (&y - &io["y"]).abs().max().double_value(&[]);
        assert!(
            diff < 1e-3,
            "{arch}: logits differ from torchvision's by {diff}"
        );
    }
}

#[test]
fn real_mobilenet_weights_recognise_real_fruit() {
    let sample = common::real_sample();
    let vs = VarStore::new(Device::Cpu);
    let body = mobilenet_v2.body(&vs.root());
    let classifier = mobilenet_v2.imagenet_classifier(&vs.root());
    load_into(
        &vs,
        &pretrained_weights(mobilenet_v2).unwrap(),
        &["features", "classifier"],
    )
    .unwrap();

    // ImageNet classes: 948 Granny Smith, 949 strawberry, 950 orange, 951 lemon, 954 banana.
    for (class, imagenet) in [
        ("Strawberry", 949),
        ("Orange", 950),
        ("Lemon", 951),
        ("Banana Lady Finger", 954),
    ] {
        let dir = sample.join("Training").join(class);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let imgs: Vec<Tensor> = files[..10]
            .iter()
            .map(|f| {
                let rgb = load_rgb(f, 224).unwrap();
                Tensor::from_slice(rgb.as_raw())
                    .view([224, 224, 3])
                    .permute([2, 0, 1])
                    .to_kind(Kind::Float)
                    / 255.0
            })
            .collect();
        let x = fastvision::imagenet_stats.norm(&Tensor::stack(&imgs, 0));
        let logits =
            tch::no_grad(|| classifier.forward_t(&forward_stages(&body, &x, Mode::Eval), false));
        let pred = Vec::<i64>::try_from(logits.argmax(-1, false)).unwrap();
        let hits = pred.iter().filter(|&&p| p == imagenet).count();
        assert!(
            hits >= 6,
            "{class}: ImageNet class {imagenet} for only {hits} of 10 images ({pred:?})"
        );
    }
}

#[test]
fn unknown_architectures_are_named() {
    let err = "resnet35".parse::<Arch>().unwrap_err().to_string();
    assert!(
        err.contains("resnet34") && err.contains("mobilenet_v2"),
        "{err}"
    );
}
