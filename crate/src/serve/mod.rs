//! `fastvision serve`: an exported model as a web page and a JSON API, fastai's course
//! deployment done for production. One thread owns the model and answers requests in dynamic
//! batches ([`batcher`]); images are checked and decoded before they queue, in parallel and
//! bounded; a full queue is a 503 with `Retry-After`, never a hang; every bad upload is a JSON
//! error with the status that fits, and the server goes on serving ([`api`]).
//!
//! ```no_run
//! use fastvision::serve::{ServeOptions, Server};
//! let server = Server::start("out/export.safetensors".as_ref(), ServeOptions::default()).unwrap();
//! println!("serving on http://{}", server.addr());
//! server.shutdown().unwrap();
//! ```

pub mod api;
mod batcher;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tch::Device;

use crate::{Error, Result};
use batcher::{BatchOptions, Batcher};

/// How `serve` runs: the flags of `fastvision serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on; loopback by default, so nothing outside this machine can reach it
    /// unless asked (`0.0.0.0`).
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// How long the worker waits for more images once one is queued.
    pub max_delay: Duration,
    /// Images that may wait for the model; more are refused with 503.
    pub queue: usize,
    /// Most image files in one request; more are refused with 413.
    pub max_files: usize,
    /// Largest request body in bytes; more is refused with 413.
    pub max_body: usize,
    /// Largest image (width x height) decoded; more is refused with 422 before any pixel
    /// memory is allocated.
    pub max_pixels: u64,
    /// libtorch threads for the model (`None`: libtorch's default, one per core).
    pub threads: Option<i32>,
    /// An origin allowed to call the API from its own pages (CORS); `None`: same origin only.
    pub cors_origin: Option<String>,
    /// Where the model runs.
    pub device: Device,
    /// How long a client may take to send its body; slower is refused with 408.
    pub body_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8000,
            max_batch: 32,
            max_delay: Duration::from_millis(5),
            queue: 256,
            max_files: 64,
            max_body: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            threads: None,
            cors_origin: None,
            device: Device::Cpu,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// The process's Prometheus recorder: installed once, shared by every server in the process.
fn prometheus() -> Result<PrometheusHandle> {
    static HANDLE: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("fastvision_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                })
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Error::InvalidArgument(format!("metrics: {e}")))
}

/// A running server: its address, and a way to stop it gracefully.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// Binds `opts.host:opts.port` and serves `model` from a thread of its own; returns once
    /// the socket is listening (the model may still be loading: `/health/ready` says when it
    /// is done).
    ///
    /// ```no_run
    /// use fastvision::serve::{ServeOptions, Server};
    /// let opts = ServeOptions { port: 0, ..Default::default() };
    /// let server = Server::start("export.safetensors".as_ref(), opts).unwrap();
    /// assert_ne!(server.addr().port(), 0);
    /// ```
    pub fn start(model: &Path, opts: ServeOptions) -> Result<Server> {
        let listener = bind(&opts)?;
        let addr = listener.local_addr().map_err(|e| Error::io("socket", e))?;
        // Everything that can fail fails here, before the server's thread exists.
        let metrics = prometheus()?;
        let runtime = runtime()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let model = model.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("fastvision-serve".into())
            .spawn(move || {
                run(model, opts, listener, runtime, metrics, async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| Error::io("thread", e))?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, answers every request already accepted, then returns.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::InvalidArgument(
                "the server's thread panicked".into(),
            )),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Serves `model` until Ctrl-C or SIGTERM, then shuts down gracefully: what
/// `fastvision serve` runs.
///
/// ```no_run
/// fastvision::serve::serve("out/export.safetensors".as_ref(), Default::default()).unwrap();
/// ```
pub fn serve(model: &Path, opts: ServeOptions) -> Result<()> {
    if !model.is_file() {
        return Err(Error::InvalidArgument(format!(
            "{}: no such model file; export one with learn.export(...) or `fastvision lesson`",
            model.display()
        )));
    }
    let listener = bind(&opts)?;
    let addr = listener.local_addr().map_err(|e| Error::io("socket", e))?;
    let (metrics, runtime) = (prometheus()?, runtime()?);
    tracing::info!("serving {} on http://{addr}", model.display());
    run(
        model.to_path_buf(),
        opts,
        listener,
        runtime,
        metrics,
        shutdown_signal(),
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fastvision-http")
        .build()
        .map_err(|e| Error::io("tokio runtime", e))
}

/// How long a shutdown waits for the requests in flight before it closes their connections.
const GRACE: Duration = Duration::from_secs(30);

fn bind(opts: &ServeOptions) -> Result<std::net::TcpListener> {
    let at = format!("{}:{}", opts.host, opts.port);
    let listener = std::net::TcpListener::bind(&at).map_err(|e| {
        Error::InvalidArgument(format!(
            "cannot listen on {at}: {e}; choose another --port (or --host)"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("socket", e))?;
    Ok(listener)
}

/// Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: answering the requests already accepted");
}

/// The server's life: start the model's worker, serve until `stop`, answer what is in
/// flight (for up to [`GRACE`]), close the queue and wait for the worker.
fn run(
    model: PathBuf,
    opts: ServeOptions,
    listener: std::net::TcpListener,
    runtime: tokio::runtime::Runtime,
    metrics: PrometheusHandle,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (batcher, worker) = Batcher::start(
        model,
        opts.device,
        BatchOptions {
            max_batch: opts.max_batch.max(1),
            max_delay: opts.max_delay,
            queue: opts.queue,
            threads: opts.threads,
        },
    );
    let state = api::AppState::new(batcher.clone(), opts, metrics);
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = tx.send(true);
        });
        let stopping = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        let graceful = axum::serve(listener, api::router(state))
            .with_graceful_shutdown(stopping(rx.clone()));
        let deadline = async {
            stopping(rx).await;
            tokio::time::sleep(GRACE).await;
        };
        tokio::select! {
            r = graceful => r,
            _ = deadline => {
                tracing::warn!("requests still open {} s after the stop: closing them", GRACE.as_secs());
                Ok(())
            }
        }
    });
    // Dropping the runtime ends what the deadline cut short; then the queue closes.
    drop(runtime);
    batcher.close();
    let _ = worker.join();
    served.map_err(|e| Error::io("serving", e))?;
    Ok(())
}
