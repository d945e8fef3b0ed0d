//! Which device fastvision computes on, decided in one place: CUDA when the machine has it,
//! else the CPU, unless `FASTVISION_DEVICE` says otherwise.

use crate::{Error, Result};
use tch::{Cuda, Device};

/// The environment variable that overrides the device choice: `cpu`, `cuda` or `cuda:N`.
pub const DEVICE_ENV: &str = "FASTVISION_DEVICE";

/// Keeps freed tensor memory in the process instead of handing it back to the kernel after
/// every batch. glibc's automatic mmap threshold stops at 32 MiB, and a block above it is
/// mapped on its own and unmapped on free: a 64-photo batch at 224 px and the first layers'
/// activations are larger, so with glibc's defaults every training step faults them in again
/// page by page, a large share of a CPU step spent in system time. Here nothing is mapped on
/// its own (`M_MMAP_MAX` 0), and the heap's free top is never handed back (`M_TRIM_THRESHOLD`
/// -1: a step's activations, freed at its end, would otherwise be trimmed and faulted in again
/// by the next step): large blocks come from the heap and the next step reuses them. The heap
/// grows 64 MiB beyond each request (`M_TOP_PAD`), so it reaches a step's size in a few moves.
/// And every thread started afterwards allocates from the one main heap (`M_ARENA_MAX` 1):
/// glibc's other arenas are heaps of at most 64 MiB, where a larger block is mapped on its own
/// whatever the settings, and one heap also keeps the loader's and libtorch's threads from each
/// holding their own free memory.
///
/// The price: the process keeps its peak memory until it ends, and its threads share one
/// allocator lock (tensors are few and large, so they rarely wait on it). A thread that has
/// already allocated keeps its own heap, so call this first thing in `main`, before any thread
/// starts.
///
/// It changes the whole process's allocator, so the library never calls it on its own: the
/// `fastvision` binary and the benchmark call it first thing in `main`, and the notebook
/// kernel gets the same settings from [`GLIBC_TUNABLES`] in its kernel spec (scripts/kernel.sh),
/// which glibc applies before any thread exists. Call it at the start of your own program for
/// the same speed.
///
/// ```
/// fastvision::device::tune_allocator(); // once, before any threads start
/// ```
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // GLIBC_TUNABLES below says the same for a process's start: change both together.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only adjusts glibc's allocator thresholds; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    });
}

/// [`tune_allocator`]'s settings as glibc reads them from the environment when a process
/// starts, before any thread exists: for a process that cannot call it first thing, such as
/// the notebook kernel (scripts/kernel.sh sets exactly this). "Never trim" is written as
/// 1 TiB, the documented form of a size.
///
/// ```
/// assert!(fastvision::device::GLIBC_TUNABLES.contains("glibc.malloc.arena_max=1"));
/// ```
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:glibc.malloc.top_pad=67108864:glibc.malloc.arena_max=1";

/// What became of libtorch's CUDA half in this process (see [`load_cuda_backend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaBackend {
    /// No NVIDIA driver (`libcuda.so.1`) here: CPU only, nothing tried.
    NoDriver,
    /// `libtorch_cuda.so` is loaded, from this file.
    Loaded(String),
    /// A driver is present but `libtorch_cuda.so` did not load: each file tried, with the
    /// loader's reason.
    Failed(Vec<String>),
}

/// Loads libtorch's CUDA half when the machine has an NVIDIA driver, before anyone asks
/// whether CUDA works; returns whether it is loaded.
///
/// Nothing links `libtorch_cuda.so` (crate/build.rs explains why): on a CPU-only machine it
/// would only cost resident memory. With a driver present (`libcuda.so.1`), loading it
/// with `RTLD_GLOBAL` registers its CUDA hooks as linking would (tch-rs#988), in our binaries
/// and in notebook cells alike. It is looked for beside the libtorch actually loaded (a moved
/// binary finds its torch through `LD_LIBRARY_PATH`), then on the
/// loader's path. When a driver is there and every try fails, the reasons are logged once as a warning,
/// rather than a silent fall back to the CPU.
///
/// ```
/// let loaded = fastvision::device::load_cuda_backend();
/// assert!(loaded || !tch::Cuda::is_available());
/// ```
pub fn load_cuda_backend() -> bool {
    matches!(cuda_backend(), CudaBackend::Loaded(_))
}

/// The outcome of loading libtorch's CUDA half (loading it first if nobody has yet).
///
/// ```
/// use fastvision::device::{CudaBackend, cuda_backend};
/// if let CudaBackend::Failed(reasons) = cuda_backend() { eprintln!("{reasons:?}") }
/// ```
pub fn cuda_backend() -> &'static CudaBackend {
    static STATE: std::sync::OnceLock<CudaBackend> = std::sync::OnceLock::new();
    STATE.get_or_init(|| {
        if dlopen("libcuda.so.1", libc::RTLD_NOW | libc::RTLD_LOCAL).is_err() {
            return CudaBackend::NoDriver;
        }
        let mut tries: Vec<String> = Vec::new();
        if let Some(dir) = loaded_libtorch_dir() {
            tries.push(dir.join("libtorch_cuda.so").to_string_lossy().into_owned());
        }
        tries.push("libtorch_cuda.so".into());
        tries.dedup();
        let mut reasons = Vec::new();
        for name in &tries {
            match dlopen(name, libc::RTLD_NOW | libc::RTLD_GLOBAL) {
                Ok(()) => return CudaBackend::Loaded(name.clone()),
                Err(why) => reasons.push(format!("{name}: {why}")),
            }
        }
        log::warn!(
            "this machine has an NVIDIA driver, but libtorch's CUDA half did not load, so \
             fastvision runs on the CPU:\n  {}\nPut the torch {} libraries on LD_LIBRARY_PATH \
             (python3 -c 'import torch, os; print(os.path.dirname(torch.__file__) + \"/lib\")').",
            reasons.join("\n  "),
            env!("FASTVISION_LIBTORCH_VERSION")
        );
        CudaBackend::Failed(reasons)
    })
}

/// The folder of the `libtorch_cpu.so` this process actually loaded (which may not be the one
/// it was built against, for a binary moved to another machine).
///
/// ```
/// let _ = tch::Tensor::zeros([1], tch::kind::FLOAT_CPU);
/// let dir = fastvision::device::loaded_libtorch_dir().unwrap();
/// assert!(dir.join("libtorch_cpu.so").is_file());
/// ```
pub fn loaded_libtorch_dir() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
}

fn dlopen(name: &str, flags: libc::c_int) -> std::result::Result<(), String> {
    let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a valid C string; the handle is deliberately never closed, since
    // libtorch keeps pointers into the library for the life of the process. dlerror returns a
    // thread-local message valid until the next dl* call, copied out at once.
    unsafe {
        if !libc::dlopen(c.as_ptr(), flags).is_null() {
            return Ok(());
        }
        let err = libc::dlerror();
        Err(if err.is_null() {
            "not found".into()
        } else {
            std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned()
        })
    }
}

/// The device to use: `FASTVISION_DEVICE` if set, otherwise the first GPU if CUDA works, else CPU.
///
/// ```
/// let dev = fastvision::default_device().unwrap();
/// let t = tch::Tensor::ones([2], (tch::Kind::Float, dev));
/// assert_eq!(t.device(), dev);
/// ```
pub fn default_device() -> Result<Device> {
    load_cuda_backend();
    match crate::config::var(DEVICE_ENV) {
        Some(spec) => parse_device(&spec, Cuda::device_count()),
        None => Ok(Device::cuda_if_available()),
    }
}

/// Reads a device name (`cpu`, `cuda`, `cuda:N`, `gpu`) against the number of GPUs present.
///
/// ```
/// use tch::Device;
/// use fastvision::device::parse_device;
/// assert_eq!(parse_device("cpu", 0).unwrap(), Device::Cpu);
/// assert_eq!(parse_device("cuda:1", 2).unwrap(), Device::Cuda(1));
/// assert!(parse_device("cuda", 0).is_err());
/// ```
pub fn parse_device(spec: &str, cuda_devices: i64) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let index = match spec.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(Error::Device(format!(
                    "{DEVICE_ENV}={spec:?} is not a device name: use cpu, cuda or cuda:N (for example cuda:0)"
                )));
            }
        },
    };
    if cuda_devices == 0 {
        return Err(Error::Device(format!(
            "{DEVICE_ENV}={spec} asks for CUDA, but libtorch sees no CUDA device on this machine \
             (no NVIDIA GPU, no driver for the CUDA 13 wheel, or libtorch_cuda not linked). \
             Unset {DEVICE_ENV} or set it to cpu; `fastvision info` shows what was found"
        )));
    }
    if index as i64 >= cuda_devices {
        return Err(Error::Device(format!(
            "{DEVICE_ENV}={spec} asks for GPU {index}, but this machine has {cuda_devices} \
             (cuda:0 to cuda:{})",
            cuda_devices - 1
        )));
    }
    Ok(Device::Cuda(index))
}

/// Whether models on `device` should keep weights and batches channels-last (NHWC) when
/// nobody asked otherwise, the faster of the two on each (bench/RESULTS.md has both
/// measurements, mobilenet_v2 at 100 px, bs 64):
/// - CPU: yes. oneDNN's NHWC kernels run an epoch markedly faster.
/// - CUDA: no. On the H200 channels-last made the first epoch much slower (cuDNN's choice of
///   kernels) and later ones barely faster, so it loses on any ordinary fit.
///
/// ```
/// use fastvision::device::prefers_channels_last;
/// assert!(prefers_channels_last(tch::Device::Cpu));
/// assert!(!prefers_channels_last(tch::Device::Cuda(0)));
/// ```
pub fn prefers_channels_last(device: Device) -> bool {
    !device.is_cuda()
}

/// A short human name for a device: `cpu` or `cuda:0`.
///
/// ```
/// assert_eq!(fastvision::device::device_name(tch::Device::Cuda(1)), "cuda:1");
/// ```
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}
