//! Data augmentation as fastai's `get_transforms()` defines it, applied to a whole batch at once:
//! one sampling grid per batch (flip, rotate and zoom as an affine map, bent by a perspective
//! warp), one `grid_sampler` call on the batch's device with reflection padding, and lighting
//! (brightness and contrast in logit space). This is how fastai v2 runs augmentation on the GPU;
//! fastai v1 did the same maths one image at a time on the CPU. The loader's background thread
//! draws the parameters, computes the grid and applies lighting to the 8-bit pixels through a
//! lookup table, so the device only resamples.
//!
//! Random draws come from a seeded generator passed in, never from a global one, so an epoch's
//! augmentations are reproducible.

use rand::Rng;
use tch::{Device, Kind, Tensor};

/// Channel mean and standard deviation used to normalise batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Per-channel mean (R, G, B) of pixels in [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

/// ImageNet's channel statistics, which pretrained models expect (fastai's `imagenet_stats`).
///
/// ```
/// use fastvision::imagenet_stats;
/// assert_eq!(imagenet_stats.mean[0], 0.485);
/// ```
#[allow(non_upper_case_globals)]
pub const imagenet_stats: Stats = Stats {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};

impl Stats {
    fn tensors(&self, device: Device) -> (Tensor, Tensor) {
        let mean = Tensor::from_slice(&self.mean)
            .view([1, 3, 1, 1])
            .to_device(device);
        let std = Tensor::from_slice(&self.std)
            .view([1, 3, 1, 1])
            .to_device(device);
        (mean, std)
    }

    /// `(x - mean) / std` for a float batch `[N, 3, H, W]` in [0, 1].
    ///
    /// ```
    /// use fastvision::imagenet_stats;
    /// let x = tch::Tensor::full([1, 3, 2, 2], 0.5, (tch::Kind::Float, tch::Device::Cpu));
    /// let back = imagenet_stats.denorm(&imagenet_stats.norm(&x));
    /// assert!((back - x).abs().max().double_value(&[]) < 1e-6);
    /// ```
    pub fn norm(&self, x: &Tensor) -> Tensor {
        let (mean, std) = self.tensors(x.device());
        (x - mean) / std
    }

    /// `(scale, shift)` with `u8 * scale + shift == norm(u8 / 255)`, shaped `[1, 3, 1, 1]`.
    /// The loader asks for them every batch, so they are copied without blocking: a blocking
    /// copy to a GPU waits for all the work queued there, which would make the host wait for
    /// the previous step before it can queue the next.
    ///
    /// ```
    /// let (scale, shift) = fastvision::imagenet_stats.u8_affine(tch::Device::Cpu);
    /// let x = tch::Tensor::full([1, 3, 1, 1], 255.0, (tch::Kind::Float, tch::Device::Cpu));
    /// let expected = fastvision::imagenet_stats.norm(&(&x / 255.0));
    /// assert!((x * scale + shift - expected).abs().max().double_value(&[]) < 1e-5);
    /// ```
    pub fn u8_affine(&self, device: Device) -> (Tensor, Tensor) {
        let scale: Vec<f32> = self.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let shift: Vec<f32> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(m, s)| -m / s)
            .collect();
        let on_device = |v: &[f32]| {
            Tensor::from_slice(v)
                .view([1, 3, 1, 1])
                .to_device_(device, Kind::Float, true, false)
        };
        (on_device(&scale), on_device(&shift))
    }

    /// The inverse of [`Stats::norm`]: back to pixels in [0, 1] for display.
    pub fn denorm(&self, x: &Tensor) -> Tensor {
        let (mean, std) = self.tensors(x.device());
        x * std + mean
    }
}

/// The augmentation settings of fastai v1's `get_transforms` (training set only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transforms {
    /// Flip left-right with probability 0.5.
    pub do_flip: bool,
    /// Also flip vertically and transpose (the dihedral group), for images with no "up".
    pub flip_vert: bool,
    /// Largest rotation in degrees, drawn uniformly in [-max_rotate, max_rotate].
    pub max_rotate: f64,
    /// Largest zoom factor, drawn uniformly in [1, max_zoom], about a random focal point.
    pub max_zoom: f64,
    /// Largest lighting change: brightness in 0.5 ± max_lighting/2, contrast in
    /// [1 - max_lighting, 1 / (1 - max_lighting)] (log-uniform).
    pub max_lighting: f64,
    /// Largest perspective warp magnitude.
    pub max_warp: f64,
    /// Probability of each of rotate, zoom and warp.
    pub p_affine: f64,
    /// Probability of each of brightness and contrast.
    pub p_lighting: f64,
    /// A fixed zoom and flip in place of the random ones: one of test-time augmentation's
    /// views ([`Transforms::tta_view`]). `None` for training.
    pub view: Option<TtaView>,
}

/// One of fastai v1's eight test-time views: zoom by `scale` towards a corner (`row`, `col` in
/// {0, 1}), flipped or not. Rotation, warp and lighting stay random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtaView {
    /// Zoom factor (fastai: 1.35).
    pub scale: f64,
    /// Focal point's row, 0 (top) to 1 (bottom).
    pub row: f64,
    /// Focal point's column, 0 (left) to 1 (right).
    pub col: f64,
    /// Mirror left-right.
    pub flip: bool,
}

/// fastai's default augmentation: flip p=0.5, rotate ±10°, zoom up to 1.1, lighting 0.2,
/// warp 0.2, p_affine and p_lighting 0.75, reflection padding.
///
/// ```
/// let tfms = fastvision::get_transforms();
/// assert_eq!((tfms.max_rotate, tfms.max_zoom, tfms.p_affine), (10.0, 1.1, 0.75));
/// ```
pub fn get_transforms() -> Transforms {
    Transforms {
        do_flip: true,
        flip_vert: false,
        max_rotate: 10.0,
        max_zoom: 1.1,
        max_lighting: 0.2,
        max_warp: 0.2,
        p_affine: 0.75,
        p_lighting: 0.75,
        view: None,
    }
}

/// fastai's `get_transforms(do_flip=..., max_rotate=..., ...)` as a builder: each method sets
/// one argument and keeps the other defaults.
///
/// ```
/// let tfms = fastvision::get_transforms().flip_vert(true).max_rotate(20.0).p_lighting(0.5);
/// assert_eq!((tfms.flip_vert, tfms.max_rotate, tfms.p_lighting), (true, 20.0, 0.5));
/// assert_eq!(tfms.max_zoom, 1.1); // untouched: fastai's default
/// ```
impl Transforms {
    /// Flip left-right at random (fastai: true).
    pub fn do_flip(mut self, v: bool) -> Self {
        self.do_flip = v;
        self
    }
    /// Also flip vertically and transpose, for images with no "up" (fastai: false).
    pub fn flip_vert(mut self, v: bool) -> Self {
        self.flip_vert = v;
        self
    }
    /// Largest rotation in degrees (fastai: 10).
    pub fn max_rotate(mut self, v: f64) -> Self {
        self.max_rotate = v;
        self
    }
    /// Largest zoom factor, 1 for none (fastai: 1.1).
    pub fn max_zoom(mut self, v: f64) -> Self {
        self.max_zoom = v;
        self
    }
    /// Largest lighting change (fastai: 0.2).
    pub fn max_lighting(mut self, v: f64) -> Self {
        self.max_lighting = v;
        self
    }
    /// Largest perspective warp (fastai: 0.2).
    pub fn max_warp(mut self, v: f64) -> Self {
        self.max_warp = v;
        self
    }
    /// Probability of each of rotate, zoom and warp (fastai: 0.75).
    pub fn p_affine(mut self, v: f64) -> Self {
        self.p_affine = v;
        self
    }
    /// Probability of each of brightness and contrast (fastai: 0.75).
    pub fn p_lighting(mut self, v: f64) -> Self {
        self.p_lighting = v;
        self
    }

    /// View `i` (0 to 7) of fastai v1's test-time augmentation: zoom by `scale` towards the
    /// corner `(i & 1, i & 2)`, mirrored when `i & 4`, with these transforms' rotation, warp
    /// and lighting (fastai's `_tta_only`).
    ///
    /// ```
    /// let v = fastvision::get_transforms().tta_view(5, 1.35).view.unwrap();
    /// assert_eq!((v.row, v.col, v.flip), (1.0, 0.0, true));
    /// ```
    pub fn tta_view(mut self, i: usize, scale: f64) -> Self {
        self.view = Some(TtaView {
            scale,
            row: if i & 1 != 0 { 1.0 } else { 0.0 },
            col: if i & 2 != 0 { 1.0 } else { 0.0 },
            flip: i & 4 != 0,
        });
        self
    }
}

/// fastai v1's zoom about a focal point (`row`, `col` in [0, 1]), in output-to-input coordinates.
fn zoom_matrix(scale: f64, row: f64, col: f64) -> [[f64; 3]; 3] {
    let shrink = 1.0 - 1.0 / scale;
    [
        [1.0 / scale, 0.0, shrink * (2.0 * col - 1.0)],
        [0.0, 1.0 / scale, shrink * (2.0 * row - 1.0)],
        [0.0, 0.0, 1.0],
    ]
}

/// The random draws for one image, kept so tests can check the maths against them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemParams {
    /// Affine matrix mapping output coordinates to input coordinates (rows of a 2x3).
    pub affine: [[f64; 3]; 2],
    /// Perspective magnitudes (x, y); zero when not warped.
    pub warp: (f64, f64),
    /// Value added in logit space (logit of the brightness draw); zero when unchanged.
    pub brightness: f64,
    /// Factor applied in logit space; one when unchanged.
    pub contrast: f64,
}

fn mat_mul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

impl Transforms {
    /// Draws one image's augmentation.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let p = fastvision::get_transforms().draw(&mut rng);
    /// assert!(p.contrast >= 0.8 - 1e-9 && p.contrast <= 1.25 + 1e-9);
    /// ```
    pub fn draw(&self, rng: &mut impl Rng) -> ItemParams {
        let mut m = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let flip = match self.view {
            Some(v) => v.flip,
            None => self.do_flip && rng.random_bool(0.5),
        };
        if flip {
            m = mat_mul(m, [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        }
        // fastai's test-time views drop the dihedral flips too.
        if self.flip_vert && self.view.is_none() {
            if rng.random_bool(0.5) {
                m = mat_mul(m, [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]);
            }
            if rng.random_bool(0.5) {
                m = mat_mul(m, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
            }
        }
        if self.max_rotate > 0.0 && rng.random_bool(self.p_affine) {
            let deg = rng.random_range(-self.max_rotate..=self.max_rotate);
            let (s, c) = deg.to_radians().sin_cos();
            m = mat_mul(m, [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]);
        }
        if let Some(v) = self.view {
            m = mat_mul(zoom_matrix(v.scale, v.row, v.col), m);
        } else if self.max_zoom > 1.0 && rng.random_bool(self.p_affine) {
            // fastai v1 `zoom`: scale about a focal point anywhere in the image.
            let scale = rng.random_range(1.0..=self.max_zoom);
            let (row, col) = (rng.random_range(0.0..=1.0), rng.random_range(0.0..=1.0));
            m = mat_mul(zoom_matrix(scale, row, col), m);
        }
        let warp = if self.max_warp > 0.0 && rng.random_bool(self.p_affine) {
            (
                rng.random_range(-self.max_warp..=self.max_warp),
                rng.random_range(-self.max_warp..=self.max_warp),
            )
        } else {
            (0.0, 0.0)
        };
        let mut brightness = 0.0;
        let mut contrast = 1.0;
        if self.max_lighting > 0.0 {
            if rng.random_bool(self.p_lighting) {
                let b: f64 = rng.random_range(
                    0.5 * (1.0 - self.max_lighting)..=0.5 * (1.0 + self.max_lighting),
                );
                brightness = (b / (1.0 - b)).ln();
            }
            if rng.random_bool(self.p_lighting) {
                let lo = (1.0 - self.max_lighting).ln();
                contrast = rng.random_range(lo..=-lo).exp();
            }
        }
        ItemParams {
            affine: [m[0], m[1]],
            warp,
            brightness,
            contrast,
        }
    }

    /// Augments a float batch `[N, C, H, W]` with pixels in [0, 1], on its own device.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// let x = tch::Tensor::rand([4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    /// let y = fastvision::get_transforms().apply(&x, &mut rng);
    /// assert_eq!(y.size(), x.size());
    /// ```
    pub fn apply(&self, x: &Tensor, rng: &mut impl Rng) -> Tensor {
        let params: Vec<ItemParams> = (0..x.size()[0]).map(|_| self.draw(rng)).collect();
        apply_params(x, &params)
    }
}

/// Solves for the 8 perspective coefficients taking `from` points onto `to` points.
fn perspective_coeffs(from: [[f64; 2]; 4], to: [[f64; 2]; 4]) -> [f64; 8] {
    let mut a = [[0.0f64; 9]; 8];
    for (i, (p, q)) in from.iter().zip(to.iter()).enumerate() {
        a[2 * i] = [
            p[0],
            p[1],
            1.0,
            0.0,
            0.0,
            0.0,
            -q[0] * p[0],
            -q[0] * p[1],
            q[0],
        ];
        a[2 * i + 1] = [
            0.0,
            0.0,
            0.0,
            p[0],
            p[1],
            1.0,
            -q[1] * p[0],
            -q[1] * p[1],
            q[1],
        ];
    }
    // Gauss-Jordan elimination with partial pivoting on the augmented 8x9 system.
    for col in 0..8 {
        let pivot = (col..8)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        let d = a[col][col];
        for v in a[col].iter_mut() {
            *v /= d;
        }
        for row in 0..8 {
            if row != col {
                let f = a[row][col];
                let pivot_row = a[col];
                for (v, p) in a[row].iter_mut().zip(pivot_row) {
                    *v -= f * p;
                }
            }
        }
    }
    std::array::from_fn(|i| a[i][8])
}

/// fastai's symmetric warp: the corners move in or out by the magnitudes.
fn warp_coeffs((mx, my): (f64, f64)) -> [f64; 8] {
    let orig = [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]];
    let targ = [
        [-1.0 - my, -1.0 - mx],
        [-1.0 + my, 1.0 + mx],
        [1.0 + my, -1.0 + mx],
        [1.0 - my, 1.0 - mx],
    ];
    perspective_coeffs(orig, targ)
}

/// An item's whole geometric augmentation as one 3x3 homography of output coordinates (x, y
/// in [-1, 1]) to input coordinates: its affine map followed by its perspective warp. The
/// grid point of output pixel (x, y) is `(u / w, v / w)` with `(u, v, w) = H (x, y, 1)`.
///
/// ```
/// use fastvision::data::transforms::{ItemParams, homography};
/// let flip = ItemParams { affine: [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], warp: (0.0, 0.0), brightness: 0.0, contrast: 1.0 };
/// assert_eq!(homography(&flip), [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
/// ```
pub fn homography(p: &ItemParams) -> [[f64; 3]; 3] {
    let [a, b] = p.affine;
    let affine = [a, b, [0.0, 0.0, 1.0]];
    if p.warp == (0.0, 0.0) {
        return affine;
    }
    let c = warp_coeffs(p.warp);
    mat_mul(
        [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], 1.0]],
        affine,
    )
}

/// Output pixel `i` of `n` in [-1, 1], corners aligned.
fn coord(i: usize, n: usize) -> f64 {
    if n > 1 {
        -1.0 + 2.0 * i as f64 / (n - 1) as f64
    } else {
        0.0
    }
}

/// The sampling grid `[N, H, W, 2]` (x, y in [-1, 1], corners aligned) for a batch of drawn
/// parameters: each output pixel through its item's [`homography`]. Computed in plain Rust
/// on the host, which on a CPU is several times cheaper than the same maths as tensor
/// operations; for a GPU the loader sends the homographies instead and the device computes
/// the grid ([`homography_grid`]), 36 bytes an item rather than 8 per pixel.
///
/// ```
/// use fastvision::data::transforms::{ItemParams, sampling_grid};
/// let id = ItemParams { affine: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], warp: (0.0, 0.0), brightness: 0.0, contrast: 1.0 };
/// let g = sampling_grid(&[id], 3, 3);
/// assert_eq!(&g[..4], &[-1.0, -1.0, 0.0, -1.0]);
/// ```
pub fn sampling_grid(params: &[ItemParams], h: usize, w: usize) -> Vec<f32> {
    let mut grid = vec![0f32; params.len() * h * w * 2];
    for (p, out) in params.iter().zip(grid.chunks_exact_mut(h * w * 2)) {
        let m = homography(p);
        for i in 0..h {
            let y = coord(i, h);
            for j in 0..w {
                let x = coord(j, w);
                let [u, v, d] = m.map(|r| r[0] * x + r[1] * y + r[2]);
                let k = (i * w + j) * 2;
                out[k] = (u / d) as f32;
                out[k + 1] = (v / d) as f32;
            }
        }
    }
    grid
}

/// The homographies of `params` as a float tensor `[N, 3, 3]` (see [`homography_grid`]).
pub fn homographies(params: &[ItemParams]) -> Tensor {
    let flat: Vec<f32> = params
        .iter()
        .flat_map(|p| homography(p).into_iter().flatten())
        .map(|v| v as f32)
        .collect();
    Tensor::from_slice(&flat).view([params.len() as i64, 3, 3])
}

/// [`sampling_grid`] computed on the homographies' own device from `[N, 3, 3]`: one batched
/// matrix product and a division, so a GPU builds the grid itself instead of receiving it.
///
/// ```
/// use fastvision::data::transforms::{ItemParams, homographies, homography_grid, sampling_grid};
/// let p = ItemParams { affine: [[0.9, -0.1, 0.05], [0.1, 0.9, 0.0]], warp: (0.1, -0.2), brightness: 0.0, contrast: 1.0 };
/// let on_device = homography_grid(&homographies(&[p]), 5, 4);
/// let on_host = tch::Tensor::from_slice(&sampling_grid(&[p], 5, 4)).view([1, 5, 4, 2]);
/// assert!((on_device - on_host).abs().max().double_value(&[]) < 1e-6);
/// ```
pub fn homography_grid(m: &Tensor, h: usize, w: usize) -> Tensor {
    let opts = (Kind::Float, m.device());
    let axis = |n: usize| {
        if n > 1 {
            Tensor::linspace(-1.0, 1.0, n as i64, opts)
        } else {
            Tensor::zeros([n as i64], opts)
        }
    };
    let (h, w) = (h as i64, w as i64);
    let ys = axis(h as usize).view([h, 1]).expand([h, w], false);
    let xs = axis(w as usize).view([1, w]).expand([h, w], false);
    let base = Tensor::stack(&[xs, ys, Tensor::ones([h, w], opts)], 2).view([1, h * w, 3]);
    let uvw = base.matmul(&m.to_kind(Kind::Float).transpose(1, 2));
    let grid = uvw.narrow(2, 0, 2) / uvw.narrow(2, 2, 1);
    grid.view([-1, h, w, 2])
}

/// fastai's lighting for one pixel value in [0, 1]: brightness and contrast in logit space.
fn light(v: f64, brightness: f64, contrast: f64) -> f64 {
    let v = v.clamp(1e-6, 1.0 - 1e-6);
    let logit = (v / (1.0 - v)).ln();
    1.0 / (1.0 + (-(logit + brightness) * contrast).exp())
}

/// Applies each item's lighting to 8-bit pixels in place through a 256-entry lookup table:
/// lighting acts on each pixel alone, so a table per image replaces per-pixel `logit` and
/// `sigmoid` over the whole float batch. `pixels` holds the items one after another.
///
/// ```
/// use fastvision::data::transforms::{ItemParams, apply_lighting_u8};
/// let p = ItemParams { affine: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], warp: (0.0, 0.0), brightness: 1.0, contrast: 1.0 };
/// let mut px = vec![128u8; 3];
/// apply_lighting_u8(&mut px, &[p]);
/// assert!(px[0] > 180);
/// ```
pub fn apply_lighting_u8(pixels: &mut [u8], params: &[ItemParams]) {
    if params.is_empty() {
        return;
    }
    let per = pixels.len() / params.len();
    for (p, item) in params.iter().zip(pixels.chunks_exact_mut(per)) {
        if p.brightness == 0.0 && p.contrast == 1.0 {
            continue;
        }
        let lut: [u8; 256] = std::array::from_fn(|v| {
            (light(v as f64 / 255.0, p.brightness, p.contrast) * 255.0).round() as u8
        });
        for px in item.iter_mut() {
            *px = lut[*px as usize];
        }
    }
}

/// Applies drawn parameters to a float batch `[N, C, H, W]` in [0, 1] in fastai's order: one
/// `grid_sampler` (bilinear, reflection padding, corners aligned) over the affine-and-warp grid,
/// then lighting. The loaders use the equivalent fast path ([`apply_lighting_u8`] on the
/// 8-bit pixels, then the same grid); this is the reference it is tested against.
pub fn apply_params(x: &Tensor, params: &[ItemParams]) -> Tensor {
    let device = x.device();
    let size = x.size();
    let n = size[0];
    assert_eq!(n as usize, params.len(), "one ItemParams per image");
    let (h, w) = (size[2] as usize, size[3] as usize);
    let grid = Tensor::from_slice(&sampling_grid(params, h, w)).view([n, h as i64, w as i64, 2]);
    let mut out = x.grid_sampler(&grid.to_device(device), 0, 2, true);
    if params
        .iter()
        .any(|p| p.brightness != 0.0 || p.contrast != 1.0)
    {
        let b: Vec<f32> = params.iter().map(|p| p.brightness as f32).collect();
        let c: Vec<f32> = params.iter().map(|p| p.contrast as f32).collect();
        let b = Tensor::from_slice(&b).view([n, 1, 1, 1]).to_device(device);
        let c = Tensor::from_slice(&c).view([n, 1, 1, 1]).to_device(device);
        let logit = out.clamp(1e-6, 1.0 - 1e-6).logit(None::<f64>);
        out = ((logit + b) * c).sigmoid();
    }
    out.to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_coefficients_move_the_corners() {
        let c = warp_coeffs((0.1, -0.2));
        let apply = |x: f64, y: f64| {
            let d = c[6] * x + c[7] * y + 1.0;
            (
                (c[0] * x + c[1] * y + c[2]) / d,
                (c[3] * x + c[4] * y + c[5]) / d,
            )
        };
        let (x, y) = apply(-1.0, 1.0);
        assert!(
            (x - (-1.0 - 0.2)).abs() < 1e-9 && (y - 1.1).abs() < 1e-9,
            "{x} {y}"
        );
        let (x, y) = apply(1.0, 1.0);
        assert!((x - 1.2).abs() < 1e-9 && (y - 0.9).abs() < 1e-9, "{x} {y}");
    }
}
