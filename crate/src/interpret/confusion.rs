//! The confusion matrix as a picture, sized to the number of classes so that it stays
//! readable with a hundred of them.

use tch::Tensor;

use crate::show::Figure;
use crate::show::colors::{blues, oranges};
use crate::show::grid::DPI;
use crate::{Error, Result};

/// Options of [`ClassificationInterpretation::plot_confusion_matrix_with`] and
/// [`plot_confusion`]; the defaults draw plain counts for every class, as fastai does.
///
/// ```
/// use fastvision::interpret::ConfusionPlot;
/// let opts = ConfusionPlot { only_mistakes: true, ..Default::default() };
/// assert!(!opts.normalize);
/// // fastai's plot_confusion_matrix(figsize=(12, 12), dpi=60):
/// let fastai = ConfusionPlot { figsize: Some((12.0, 12.0)), dpi: Some(60.0), ..Default::default() };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConfusionPlot {
    /// Show each row as fractions of the actual class.
    pub normalize: bool,
    /// Keep only the classes involved in a mistake.
    pub only_mistakes: bool,
    /// The figure's size in inches, as matplotlib's `figsize`; `None` sizes it to the class
    /// count. Cells and labels shrink or grow to fit.
    pub figsize: Option<(f64, f64)>,
    /// Pixels per inch (matplotlib's `dpi`); `None` is 100. Fonts and lines scale with it, so
    /// a higher dpi gives the same figure in more pixels.
    pub dpi: Option<f64>,
}

impl ConfusionPlot {
    /// The defaults: counts, every class, sized to the class count.
    ///
    /// ```
    /// use fastvision::interpret::ConfusionPlot;
    /// let opts = ConfusionPlot::new().figsize(12.0, 12.0).dpi(60.0);
    /// assert_eq!((opts.figsize, opts.dpi), (Some((12.0, 12.0)), Some(60.0)));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
    /// The figure's size in inches (matplotlib's `figsize`).
    pub fn figsize(mut self, width: f64, height: f64) -> Self {
        self.figsize = Some((width, height));
        self
    }
    /// Pixels per inch (matplotlib's `dpi`).
    pub fn dpi(mut self, dpi: f64) -> Self {
        self.dpi = Some(dpi);
        self
    }
    /// Rows as fractions of the actual class (fastai's `normalize=True`).
    pub fn normalize(mut self) -> Self {
        self.normalize = true;
        self
    }
    /// Only the classes involved in a mistake (all of them, titled so, when there is none).
    pub fn only_mistakes(mut self) -> Self {
        self.only_mistakes = true;
        self
    }
}

/// Draws a confusion matrix (see [`ClassificationInterpretation::plot_confusion_matrix`]).
///
/// ```
/// let cm = tch::Tensor::from_slice(&[5i64, 1, 0, 7]).view([2, 2]);
/// let fig = fastvision::interpret::plot_confusion(&cm, &["apple".into(), "pear".into()], Default::default()).unwrap();
/// assert!(fig.size().0 > 200);
/// ```
pub fn plot_confusion(cm: &Tensor, classes: &[String], opts: ConfusionPlot) -> Result<Figure> {
    let ConfusionPlot {
        normalize,
        only_mistakes,
        figsize,
        dpi,
    } = opts;
    let dpi = dpi.unwrap_or(DPI);
    if !(dpi > 0.0 && dpi.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "plot_confusion_matrix: dpi must be positive, got {dpi}"
        )));
    }
    if let Some((fw, fh)) = figsize
        && !(fw > 0.0 && fh > 0.0 && fw.is_finite() && fh.is_finite())
    {
        return Err(Error::InvalidArgument(format!(
            "plot_confusion_matrix: figsize must be two positive sizes in inches, got ({fw}, {fh})"
        )));
    }
    // Layout is worked out at 100 px per inch, then every length is scaled to `dpi`.
    let s = dpi / DPI;
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let c = classes.len();
    let counts: Vec<Vec<i64>> = (0..c)
        .map(|a| {
            (0..c)
                .map(|p| cm.int64_value(&[a as i64, p as i64]))
                .collect()
        })
        .collect();
    let mistaken: Vec<usize> = (0..c)
        .filter(|&i| (0..c).any(|j| j != i && (counts[i][j] > 0 || counts[j][i] > 0)))
        .collect();
    // With no mistake at all, the mistakes-only view is the whole matrix, and its title says so.
    let no_mistakes = only_mistakes && mistaken.is_empty();
    let keep: Vec<usize> = if only_mistakes && !no_mistakes {
        mistaken
    } else {
        (0..c).collect()
    };
    let n = keep.len();
    let values: Vec<Vec<f64>> = keep
        .iter()
        .map(|&a| {
            let row_sum: i64 = counts[a].iter().sum();
            keep.iter()
                .map(|&p| {
                    if normalize {
                        counts[a][p] as f64 / row_sum.max(1) as f64
                    } else {
                        counts[a][p] as f64
                    }
                })
                .collect()
        })
        .collect();
    // The diagonal and the mistakes each get their own scale and colours: against a diagonal
    // of hundreds, one mistake and twenty would both be the palest blue.
    let max_of = |diagonal: bool| {
        values
            .iter()
            .enumerate()
            .flat_map(|(r, row)| row.iter().enumerate().map(move |(c, &v)| (r == c, v)))
            .filter(|&(d, _)| d == diagonal)
            .map(|(_, v)| v)
            .fold(0.0, f64::max)
            .max(1e-12)
    };
    let (vmax, vmax_off) = (max_of(true), max_of(false));

    // Cells shrink with the class count (or fit the figsize); fonts and label space follow.
    let longest = keep
        .iter()
        .map(|&i| classes[i].chars().count())
        .max()
        .unwrap_or(5) as f64;
    let margins = |cell: f64| {
        let tick_font = (cell * 0.8).clamp(7.0, 15.0);
        let label = longest * tick_font * 0.58 + 10.0;
        (tick_font, label + 30.0, 50.0, label + 30.0)
    };
    let mut cell = (1100.0 / n as f64).floor().clamp(12.0, 64.0);
    if let Some((fw, fh)) = figsize {
        // Twice: the labels' room depends on the cell size it sets.
        for _ in 0..2 {
            let (_, left, top, bottom) = margins(cell);
            let room = (fw * DPI - left - 20.0).min(fh * DPI - top - bottom);
            cell = (room / n as f64).floor().max(2.0);
        }
    }
    let (tick_font, left, top, bottom) = margins(cell);
    let px = |v: f64| (v * s).round() as u32;
    let (cell_f, left_f, top_f) = (cell, left, top);
    let (cell, left, top) = (px(cell_f), px(left_f), px(top_f));
    let (w, h) = (
        left + n as u32 * cell + px(20.0),
        top + n as u32 * cell + px(bottom),
    );
    let tick_font = tick_font * s;
    let show_text = cell_f >= 26.0;
    let title = if no_mistakes {
        "Confusion matrix: no mistakes, every prediction is right"
    } else if normalize {
        "Confusion matrix (rows sum to 1): right in blue, mistakes in orange"
    } else {
        "Confusion matrix: right in blue, mistakes in orange (darker: more)"
    };

    Figure::draw(w, h, |root| {
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title,
            ((w / 2) as i32, px(22.0) as i32),
            TextStyle::from(("sans-serif", 20.0 * s).into_font()).pos(centre),
        ))?;
        for (r, row) in values.iter().enumerate() {
            for (col, &v) in row.iter().enumerate() {
                let (x0, y0) = (
                    (left + col as u32 * cell) as i32,
                    (top + r as u32 * cell) as i32,
                );
                // Right predictions in blues, on a square-root scale; mistakes in oranges, on
                // a log scale of their own, floored so a single one shows: 1 and 20 differ.
                let t = if v <= 0.0 {
                    0.0
                } else if r == col {
                    (v / vmax).sqrt().max(0.2)
                } else {
                    ((1.0 + v / vmax_off * 19.0).ln() / 20f64.ln()).max(0.25)
                };
                let [cr, cg, cb] = if r == col || v <= 0.0 {
                    blues(t)
                } else {
                    oranges(t)
                };
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    RGBColor(cr, cg, cb).filled(),
                ))?;
                if show_text && v > 0.0 {
                    let text = if normalize {
                        format!("{v:.2}")
                    } else {
                        format!("{}", v as i64)
                    };
                    let colour = if t > 0.6 { WHITE } else { BLACK };
                    let style =
                        TextStyle::from(("sans-serif", (cell_f * 0.38).min(16.0) * s).into_font())
                            .color(&colour)
                            .pos(centre);
                    root.draw(&Text::new(
                        text,
                        (x0 + cell as i32 / 2, y0 + cell as i32 / 2),
                        &style,
                    ))?;
                }
            }
        }
        let grid_end = (top + n as u32 * cell) as i32;
        root.draw(&Rectangle::new(
            [
                (left as i32, top as i32),
                (left as i32 + (n as u32 * cell) as i32, grid_end),
            ],
            BLACK.stroke_width(1),
        ))?;
        let right = TextStyle::from(("sans-serif", tick_font).into_font())
            .pos(Pos::new(HPos::Right, VPos::Center));
        let rotated = TextStyle::from(
            ("sans-serif", tick_font)
                .into_font()
                .transform(FontTransform::Rotate270),
        )
        .pos(Pos::new(HPos::Right, VPos::Center));
        for (k, &i) in keep.iter().enumerate() {
            let mid = (k as u32 * cell + cell / 2) as i32;
            root.draw(&Text::new(
                classes[i].clone(),
                (left as i32 - px(6.0) as i32, top as i32 + mid),
                &right,
            ))?;
            root.draw(&Text::new(
                classes[i].clone(),
                (left as i32 + mid, grid_end + px(6.0) as i32),
                &rotated,
            ))?;
        }
        let axis = TextStyle::from(("sans-serif", 17.0 * s).into_font()).pos(centre);
        root.draw(&Text::new(
            "Predicted",
            (
                (left + n as u32 * cell / 2) as i32,
                h as i32 - px(14.0) as i32,
            ),
            &axis,
        ))?;
        let axis_v = TextStyle::from(
            ("sans-serif", 17.0 * s)
                .into_font()
                .transform(FontTransform::Rotate270),
        )
        .pos(centre);
        root.draw(&Text::new(
            "Actual",
            (px(14.0) as i32, (top + n as u32 * cell / 2) as i32),
            &axis_v,
        ))?;
        Ok(())
    })
}
