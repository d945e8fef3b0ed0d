//! fastai's classification head (`create_head`): concat pooling, then two blocks of
//! BatchNorm, dropout and linear, with Kaiming-initialised linear layers.

use tch::nn;
use tch::{Kind, Tensor};

/// `cat([max_pool, avg_pool])` over the whole feature map, fastai's `AdaptiveConcatPool2d`:
/// the head sees both the strongest and the average response of each channel.
///
/// ```
/// let x = tch::Tensor::rand([2, 8, 4, 4], (tch::Kind::Float, tch::Device::Cpu));
/// assert_eq!(fastvision::models::head::adaptive_concat_pool(&x).size(), vec![2, 16, 1, 1]);
/// ```
pub fn adaptive_concat_pool(x: &Tensor) -> Tensor {
    Tensor::cat(
        &[
            x.adaptive_max_pool2d([1, 1]).0,
            x.adaptive_avg_pool2d([1, 1]),
        ],
        1,
    )
}

/// The head for `nf` body channels and `n_classes` outputs, under `p` (fastai's layer indices:
/// `2` BatchNorm, `4` linear, `6` BatchNorm, `8` linear): pool, flatten, BN, dropout 0.25,
/// linear 512, ReLU, BN, dropout 0.5, linear `n_classes`.
///
/// ```
/// use tch::nn::ModuleT;
/// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// let head = fastvision::models::head::create_head(&(vs.root() / "head"), 512, 30);
/// let x = tch::Tensor::rand([4, 512, 3, 3], (tch::Kind::Float, tch::Device::Cpu));
/// assert_eq!(head.forward_t(&x, false).size(), vec![4, 30]);
/// ```
pub fn create_head(p: &nn::Path, nf: i64, n_classes: i64) -> nn::SequentialT {
    let lin = |p: nn::Path, i: i64, o: i64| {
        let cfg = nn::LinearConfig {
            ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        nn::linear(p, i, o, cfg)
    };
    nn::seq_t()
        .add_fn(|x| adaptive_concat_pool(x).flatten(1, -1))
        .add(nn::batch_norm1d(p / 2, 2 * nf, Default::default()))
        .add_fn_t(|x, train| x.dropout(0.25, train))
        .add(lin(p / 4, 2 * nf, 512))
        .add_fn(|x| x.relu())
        .add(nn::batch_norm1d(p / 6, 512, Default::default()))
        .add_fn_t(|x, train| x.dropout(0.5, train))
        .add(lin(p / 8, 512, n_classes))
        .add_fn(|x| x.to_kind(Kind::Float))
}
