//! Offline with no weights file: a clear error naming the file, where it was looked for, and
//! the offline alternatives. Its own test binary, since it points TORCH_HOME elsewhere.

use fastvision::models::weights::pretrained_weights;
use fastvision::resnet34;

#[test]
fn missing_resnet_weights_offline_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: this binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var("TORCH_HOME", tmp.path()) };
    // Unreachable by design: a local port nothing listens on stands in for the internet.
    let err = match pretrained_weights(resnet34) {
        Ok(p) => {
            // A machine that can reach download.pytorch.org gets the real file: also fine.
            assert!(p.ends_with("resnet34-b627a593.safetensors"));
            return;
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("resnet34-b627a593.pth"), "{err}");
    assert!(
        err.contains(&tmp.path().join("hub/checkpoints").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("mobilenet_v2") && err.contains("pretrained(false)"),
        "{err}"
    );
    assert!(
        !tmp.path()
            .join("hub/checkpoints/resnet34-b627a593.pth")
            .exists(),
        "no partial file left"
    );
}
