//! `fastvision info`: what this build of fastvision sees, for bug reports and set-up checks.

use std::fmt;
use std::path::PathBuf;

use crate::{Result, config, device};

/// Versions, the chosen device, CUDA availability, threads and folders.
///
/// ```
/// let info = fastvision::Info::collect().unwrap();
/// assert!(info.threads >= 1);
/// println!("{info}");
/// ```
#[derive(Debug, Clone)]
pub struct Info {
    /// This crate's version.
    pub fastvision: &'static str,
    /// The tch crate's version, as locked when built.
    pub tch: &'static str,
    /// The libtorch version built against (from the torch wheel's `version.py`).
    pub libtorch: &'static str,
    /// Where libtorch's shared libraries were linked from at build time.
    pub libtorch_lib: &'static str,
    /// Where the libtorch this process runs on was actually loaded from.
    pub libtorch_loaded: Option<PathBuf>,
    /// What became of libtorch's CUDA half.
    pub cuda_backend: device::CudaBackend,
    /// The device fastvision will compute on.
    pub device: String,
    /// Whether libtorch can use CUDA here.
    pub cuda_available: bool,
    /// How many CUDA devices libtorch sees.
    pub cuda_devices: i64,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// libtorch's intra-op thread count.
    pub threads: i32,
    /// Where pretrained weights are looked for.
    pub weights_dir: PathBuf,
    /// Where datasets are downloaded to.
    pub data_dir: PathBuf,
}

impl Info {
    /// Gathers the facts; fails only if `FASTVISION_DEVICE` names a device that isn't there.
    ///
    /// ```
    /// let info = fastvision::Info::collect().unwrap();
    /// assert_eq!(info.fastvision, env!("CARGO_PKG_VERSION"));
    /// ```
    pub fn collect() -> Result<Self> {
        Ok(Info {
            fastvision: env!("CARGO_PKG_VERSION"),
            tch: env!("FASTVISION_TCH_VERSION"),
            libtorch: env!("FASTVISION_LIBTORCH_VERSION"),
            libtorch_lib: env!("FASTVISION_LIBTORCH_LIB"),
            device: device::device_name(device::default_device()?),
            // After default_device, which has made libtorch load (and tried its CUDA half).
            libtorch_loaded: device::loaded_libtorch_dir(),
            cuda_backend: device::cuda_backend().clone(),
            cuda_available: tch::Cuda::is_available(),
            cuda_devices: tch::Cuda::device_count(),
            cudnn_available: tch::Cuda::cudnn_is_available(),
            threads: tch::get_num_threads(),
            weights_dir: config::weights_dir(),
            data_dir: std::path::absolute(config::data_dir())
                .unwrap_or_else(|_| config::data_dir()),
        })
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "fastvision  {}", self.fastvision)?;
        writeln!(f, "tch         {}", self.tch)?;
        let loaded = self
            .libtorch_loaded
            .as_ref()
            .map_or_else(|| "not loaded".to_string(), |p| p.display().to_string());
        writeln!(f, "libtorch    {} ({loaded})", self.libtorch)?;
        if Some(std::path::Path::new(self.libtorch_lib)) != self.libtorch_loaded.as_deref() {
            writeln!(f, "built with  {}", self.libtorch_lib)?;
        }
        match &self.cuda_backend {
            device::CudaBackend::NoDriver => {}
            device::CudaBackend::Loaded(lib) => writeln!(f, "cuda lib    {lib}")?,
            device::CudaBackend::Failed(why) => {
                writeln!(f, "cuda lib    FAILED to load: {}", why.join("; "))?
            }
        }
        writeln!(f, "device      {}", self.device)?;
        writeln!(
            f,
            "cuda        {} ({} device(s))",
            yes_no(self.cuda_available),
            self.cuda_devices
        )?;
        writeln!(f, "cudnn       {}", yes_no(self.cudnn_available))?;
        writeln!(f, "threads     {}", self.threads)?;
        writeln!(f, "weights     {}", self.weights_dir.display())?;
        write!(f, "data        {}", self.data_dir.display())
    }
}
