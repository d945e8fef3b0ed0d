//! Pictures and tables for people: figures (PNG), image grids, plots, and how they appear in a
//! notebook. Every figure is a [`Figure`] value: the last expression of an evcxr cell shows it
//! inline (one `image/png` output), and [`Figure::save`] writes it as a PNG.

pub mod colors;
pub mod display;
pub mod figure;
pub mod grid;
pub mod plots;

pub use display::{display_html, display_png, escape, html_table};
pub use figure::Figure;
