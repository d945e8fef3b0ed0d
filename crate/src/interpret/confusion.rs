//! The confusion matrix as a picture, sized to the number of classes so that it stays
//! readable with a hundred of them.

use tch::Tensor;

use crate::show::Figure;
use crate::show::colors::blues;
use crate::{Error, Result};

/// Options of [`ClassificationInterpretation::plot_confusion_matrix_with`] and
/// [`plot_confusion`]; the defaults draw plain counts for every class, as fastai does.
///
/// ```
/// use fastvision::interpret::ConfusionPlot;
/// let opts = ConfusionPlot { only_mistakes: true, ..Default::default() };
/// assert!(!opts.normalize);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConfusionPlot {
    /// Show each row as fractions of the actual class.
    pub normalize: bool,
    /// Keep only the classes involved in a mistake.
    pub only_mistakes: bool,
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
    } = opts;
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
    let keep: Vec<usize> = if only_mistakes {
        (0..c)
            .filter(|&i| (0..c).any(|j| j != i && (counts[i][j] > 0 || counts[j][i] > 0)))
            .collect()
    } else {
        (0..c).collect()
    };
    if keep.is_empty() {
        return Err(Error::InvalidArgument(
            "no mistakes to show: every prediction is right (leave only_mistakes off)".into(),
        ));
    }
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
    let vmax = values
        .iter()
        .flatten()
        .cloned()
        .fold(0.0, f64::max)
        .max(1e-12);

    // Cells shrink with the class count; fonts and label space follow the cells.
    let cell = (1100 / n as u32).clamp(12, 64);
    let tick_font = (cell as f64 * 0.8).clamp(7.0, 15.0);
    let longest = keep
        .iter()
        .map(|&i| classes[i].chars().count())
        .max()
        .unwrap_or(5) as f64;
    let label_px = (longest * tick_font * 0.58) as u32 + 10;
    let (left, top, bottom) = (label_px + 30, 50u32, label_px + 30);
    let (w, h) = (left + n as u32 * cell + 20, top + n as u32 * cell + bottom);
    let show_text = cell >= 26;
    let title = if normalize {
        "Confusion matrix (rows sum to 1)"
    } else {
        "Confusion matrix"
    };

    Figure::draw(w, h, |root| {
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw(&Text::new(
            title,
            ((w / 2) as i32, 22),
            TextStyle::from(("sans-serif", 20.0).into_font()).pos(centre),
        ))?;
        for (r, row) in values.iter().enumerate() {
            for (col, &v) in row.iter().enumerate() {
                let (x0, y0) = (
                    (left + col as u32 * cell) as i32,
                    (top + r as u32 * cell) as i32,
                );
                // A square-root scale, floored for any non-zero cell, keeps rare confusions
                // visible next to a full diagonal.
                let t = if v > 0.0 {
                    (v / vmax).sqrt().max(0.2)
                } else {
                    0.0
                };
                let [cr, cg, cb] = blues(t);
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
                        TextStyle::from(("sans-serif", (cell as f64 * 0.38).min(16.0)).into_font())
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
                (left as i32 - 6, top as i32 + mid),
                &right,
            ))?;
            root.draw(&Text::new(
                classes[i].clone(),
                (left as i32 + mid, grid_end + 6),
                &rotated,
            ))?;
        }
        let axis = TextStyle::from(("sans-serif", 17.0).into_font()).pos(centre);
        root.draw(&Text::new(
            "Predicted",
            ((left + n as u32 * cell / 2) as i32, h as i32 - 14),
            &axis,
        ))?;
        let axis_v = TextStyle::from(
            ("sans-serif", 17.0)
                .into_font()
                .transform(FontTransform::Rotate270),
        )
        .pos(centre);
        root.draw(&Text::new(
            "Actual",
            (14, (top + n as u32 * cell / 2) as i32),
            &axis_v,
        ))?;
        Ok(())
    })
}
