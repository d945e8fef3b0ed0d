//! The evcxr display protocol: a value shows itself in a notebook by printing
//! `EVCXR_BEGIN_CONTENT <mime>` ... `EVCXR_END_CONTENT` to stdout. evcxr keeps only the last
//! output of each MIME type per cell, so every value emits exactly one.

use std::io::Write;

use base64::Engine;

/// Sends HTML to the notebook (no-op effect outside evcxr beyond printing the block).
///
/// ```
/// fastvision::show::display_html("<b>hello</b>");
/// ```
pub fn display_html(html: &str) {
    emit("text/html", html);
}

/// Sends a PNG to the notebook, base64-encoded as evcxr expects.
pub fn display_png(png: &[u8]) {
    emit(
        "image/png",
        &base64::engine::general_purpose::STANDARD.encode(png),
    );
}

/// A PNG as a `data:` URI, for an `<img src=...>` inside HTML.
///
/// ```
/// assert!(fastvision::show::display::png_data_uri(&[1, 2]).starts_with("data:image/png;base64,"));
/// ```
pub fn png_data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn emit(mime: &str, content: &str) {
    // One locked write, so output from other threads cannot land inside the block.
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = write!(
        out,
        "EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT\n"
    );
    let _ = out.flush();
}

/// Escapes text for HTML.
///
/// ```
/// assert_eq!(fastvision::show::escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
/// ```
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether this code runs inside an evcxr notebook kernel (see [`crate::config::in_notebook`]).
///
/// ```
/// assert!(!fastvision::show::in_notebook());
/// ```
pub fn in_notebook() -> bool {
    crate::config::in_notebook()
}
