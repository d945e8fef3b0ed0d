//! The toolkit for pictures and tables: [`Figure`] (a PNG that shows inline in a notebook),
//! image grids, line-chart helpers, colours, DataFrame tables, progress bars and the evcxr display
//! protocol.
//! It knows nothing of data, learners or interpretation: each of those draws its own plots
//! with these tools (`show_batch` in `data/`, the recorder's plots in `learner/recorder`, the
//! confusion matrix and top losses in `interpret`).

pub mod colors;
pub mod display;
pub mod figure;
pub mod grid;
pub mod logging;
pub mod plots;
pub mod progress;
pub mod render;
pub mod table;

pub use display::{display_html, display_png, escape, in_notebook};
pub use figure::Figure;
pub use progress::Progress;
