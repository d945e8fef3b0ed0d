//! `learn.summary()`: every stage with its output shape, parameter counts, what trains, and
//! which layer group it belongs to.

use std::fmt;

use polars::prelude::*;
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

use crate::learner::Learner;

/// One row of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Stage or layer name.
    pub layer: String,
    /// Output shape for one image.
    pub output_shape: Vec<i64>,
    /// Parameters.
    pub params: i64,
    /// Parameters that train now.
    pub trainable: i64,
    /// Layer group.
    pub group: usize,
}

/// The summary table.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The rows, input to output.
    pub rows: Vec<SummaryRow>,
    /// Frozen layer groups.
    pub frozen_groups: usize,
    /// Architecture and input size, for the title.
    pub title: String,
}

impl Learner {
    /// The model summary (renders as a table in a notebook).
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// println!("{}", learn.summary());
    /// ```
    pub fn summary(&self) -> Summary {
        // Parameters are exactly the layer groups'; BatchNorm running statistics are not
        // counted.
        let params = || {
            self.layer_groups
                .iter()
                .enumerate()
                .flat_map(|(g, ps)| ps.iter().map(move |p| (g, p)))
        };
        let count = |keep: &dyn Fn(&str) -> bool| -> (i64, i64) {
            params().filter(|(_, (name, _))| keep(name)).fold(
                (0, 0),
                |(all, trainable), (_, (_, t))| {
                    let n = t.numel() as i64;
                    (all + n, trainable + if t.requires_grad() { n } else { 0 })
                },
            )
        };
        // The group each parameter trains in now (after a `split`, not the body's own).
        let group_of = |keep: &dyn Fn(&str) -> bool| {
            params().find(|(_, (name, _))| keep(name)).map(|(g, _)| g)
        };
        let s = self.model.size as i64;
        let x = Tensor::zeros([1, 3, s, s], (Kind::Float, self.model.device()));
        let mut rows = Vec::new();
        tch::no_grad(|| match self.model.cnn() {
            Some(cnn) => {
                let mut x = self.model.forward_layout(&x);
                for stage in &cnn.body {
                    x = stage.module.forward_t(&x, false);
                    let in_stage = |name: &str| {
                        stage
                            .paths
                            .iter()
                            .any(|p| name.starts_with(&format!("{p}.")))
                    };
                    let (params, trainable) = count(&in_stage);
                    rows.push(SummaryRow {
                        layer: stage.name.clone(),
                        output_shape: x.size(),
                        params,
                        trainable,
                        group: group_of(&in_stage).unwrap_or(stage.group),
                    });
                }
                let out = cnn.head.forward_t(&x, false);
                let (params, trainable) = count(&|name| name.starts_with("head."));
                rows.push(SummaryRow {
                    layer: "head (ConcatPool, BN, Dropout, Linear 512, ReLU, BN, Dropout, Linear)"
                        .into(),
                    output_shape: out.size(),
                    params,
                    trainable,
                    group: group_of(&|name| name.starts_with("head."))
                        .unwrap_or(self.n_groups() - 1),
                });
            }
            None => {
                // A network of its own shows one row per layer group; the last carries the
                // output's shape.
                let out = self.model.forward(&x, crate::models::Mode::Eval);
                let name = self.model.name();
                for g in 0..self.n_groups() {
                    let (params, trainable) = params().filter(|(group, _)| *group == g).fold(
                        (0, 0),
                        |(all, tr), (_, (_, t))| {
                            let n = t.numel() as i64;
                            (all + n, tr + if t.requires_grad() { n } else { 0 })
                        },
                    );
                    let last = g + 1 == self.n_groups();
                    rows.push(SummaryRow {
                        layer: format!("{name}, layer group {g}"),
                        output_shape: if last { out.size() } else { Vec::new() },
                        params,
                        trainable,
                        group: g,
                    });
                }
            }
        });
        Summary {
            rows,
            frozen_groups: self.frozen_groups(),
            title: format!("{} at {}px", self.model.name(), self.model.size),
        }
    }
}

impl Summary {
    /// The summary as a DataFrame: layer, output shape, params, trainable, group.
    ///
    /// ```no_run
    /// # let learn: fastvision::Learner = unimplemented!();
    /// assert_eq!(learn.summary().df().width(), 5);
    /// ```
    pub fn df(&self) -> DataFrame {
        let col = |f: &dyn Fn(&SummaryRow) -> String| self.rows.iter().map(f).collect::<Vec<_>>();
        df!(
            "layer" => col(&|r| r.layer.clone()),
            "output shape" => col(&|r| {
                r.output_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ")
            }),
            "params" => self.rows.iter().map(|r| r.params).collect::<Vec<_>>(),
            "trainable" => col(&|r| {
                if r.trainable == r.params {
                    "yes".into()
                } else if r.trainable == 0 {
                    "no".into()
                } else {
                    "BatchNorm only".into()
                }
            }),
            "group" => self.rows.iter().map(|r| r.group as u64).collect::<Vec<_>>(),
        )
        .expect("columns of equal length")
    }

    fn caption(&self) -> String {
        let total: i64 = self.rows.iter().map(|r| r.params).sum();
        let trainable: i64 = self.rows.iter().map(|r| r.trainable).sum();
        let frozen = match self.frozen_groups {
            0 => "no layer group frozen".to_string(),
            n => format!("model frozen up to layer group {n} (BatchNorm layers still train)"),
        };
        format!(
            "{}: {total} parameters, {trainable} trainable; {frozen}",
            self.title
        )
    }

    /// Shows the summary as a table in a notebook.
    pub fn evcxr_display(&self) {
        crate::show::table::display(&self.df(), Some(&self.caption()));
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::show::table::text(&self.df(), Some(&self.caption())))
    }
}
