//! The one thread that owns the model: requests wait in a bounded queue, and the worker takes
//! what is queued (up to `max_batch`, waiting at most `max_delay` for more) and runs one forward
//! pass per batch under no_grad. A full queue is refused at once (the caller answers 503); a
//! request whose client went away is dropped before it costs any compute.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tch::{Device, Tensor};
use tokio::sync::oneshot;

use crate::models::{Model, Prediction};

/// What the model answers for one image.
#[derive(Debug)]
pub(crate) struct Answer {
    pub prediction: Prediction,
    /// The predicted class's Grad-CAM heatmap `[S, S]` in [0, 1], when asked for.
    pub heatmap: Option<Vec<f32>>,
    pub queued: Duration,
    pub compute: Duration,
    pub batch_size: usize,
}

/// One image waiting for the model.
pub(crate) struct Job {
    /// The network's input `[3, S, S]`.
    pub x: Tensor,
    pub heatmap: bool,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Answer, String>>,
}

/// What the model is, once loaded.
#[derive(Debug, Clone)]
pub(crate) struct ModelCard {
    pub arch: String,
    pub classes: Vec<String>,
    pub size: u32,
    pub stats: Option<([f32; 3], [f32; 3])>,
    pub resize: crate::data::image::ResizeMethod,
    pub device: String,
}

/// Why a job was not queued.
pub(crate) enum Refused {
    /// The queue is full: try again shortly.
    Full,
    /// The model is not loaded (yet, or it failed to load).
    NotReady,
}

/// The handle the web side holds: queue a job, see the model card and the queue depth.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: Arc<std::sync::Mutex<Option<SyncSender<Job>>>>,
    pub card: Arc<OnceLock<ModelCard>>,
    pub load_error: Arc<OnceLock<String>>,
    pub depth: Arc<AtomicUsize>,
    /// Images accepted and still being decoded: on their way to the queue.
    incoming: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
}

/// An image on its way to the queue, counted while it decodes so the worker knows whether
/// waiting for company is worth it.
pub(crate) struct Incoming(Arc<AtomicUsize>);

impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchOptions {
    pub max_batch: usize,
    pub max_delay: Duration,
    pub queue: usize,
    pub threads: Option<i32>,
}

impl Batcher {
    /// Starts the worker, which loads the model from `path` onto `device` first; until it has,
    /// `card()` is None (the server is live but not ready).
    pub fn start(path: PathBuf, device: Device, opts: BatchOptions) -> (Batcher, JoinHandle<()>) {
        let (tx, rx) = sync_channel::<Job>(opts.queue.max(1));
        let batcher = Batcher {
            tx: Arc::new(std::sync::Mutex::new(Some(tx))),
            card: Arc::new(OnceLock::new()),
            load_error: Arc::new(OnceLock::new()),
            depth: Arc::new(AtomicUsize::new(0)),
            incoming: Arc::new(AtomicUsize::new(0)),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let b = batcher.clone();
        let worker = std::thread::Builder::new()
            .name("fastvision-model".into())
            .spawn(move || {
                if let Some(n) = opts.threads {
                    tch::set_num_threads(n);
                }
                let model = match crate::models::export::load_learner_on(&path, device) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!("the model could not be loaded: {e}");
                        // What clients may read names the file, not where it lives.
                        let name = path.file_name().map_or_else(
                            || "the model file".to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        let msg = e.to_string().replace(&path.display().to_string(), &name);
                        let _ = b.load_error.set(msg);
                        return;
                    }
                };
                // One pass before the first request, so libtorch's one-time set-up is not a
                // client's wait.
                let s = model.size as i64;
                if let Err(e) =
                    model.predict_inputs(&Tensor::zeros([1, 3, s, s], tch::kind::FLOAT_CPU))
                {
                    tracing::error!("the model failed its first pass: {e}");
                    let _ = b.load_error.set(e.to_string());
                    return;
                }
                let _ = b.card.set(ModelCard {
                    arch: model.name(),
                    classes: model.classes.clone(),
                    size: model.size,
                    stats: model.stats.map(|s| (s.mean, s.std)),
                    resize: model.resize,
                    device: crate::device::device_name(model.device()),
                });
                b.ready.store(true, Ordering::SeqCst);
                tracing::info!(
                    "model ready: {} for {} classes at {} px",
                    model.name(),
                    model.classes.len(),
                    model.size
                );
                work(&model, &rx, &b.depth, &b.incoming, opts);
            })
            .expect("spawning the model thread");
        (batcher, worker)
    }

    /// Counts an image as on its way until the returned guard drops (once it is queued or
    /// refused).
    pub fn incoming(&self) -> Incoming {
        self.incoming.fetch_add(1, Ordering::SeqCst);
        Incoming(Arc::clone(&self.incoming))
    }

    /// Whether the model is loaded and answering.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Queues `job`, or says why not without waiting. `on_its_way` (the job's own count as
    /// decoding) ends just before the send, so the worker never waits for the job it holds.
    pub fn submit(&self, job: Job, on_its_way: Incoming) -> Result<(), Refused> {
        if !self.is_ready() {
            return Err(Refused::NotReady);
        }
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let tx = guard.as_ref().ok_or(Refused::NotReady)?;
        // Counted before the send, so the worker's decrement never goes below zero.
        self.depth.fetch_add(1, Ordering::SeqCst);
        drop(on_its_way);
        match tx.try_send(job) {
            Ok(()) => {
                metrics::gauge!("fastvision_queue_depth")
                    .set(self.depth.load(Ordering::SeqCst) as f64);
                Ok(())
            }
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::NotReady,
                })
            }
        }
    }

    /// Closes the queue: the worker answers what is queued, then ends.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.ready.store(false, Ordering::SeqCst);
    }
}

/// The worker's loop: until the queue closes, gather a batch and answer it. It waits up to
/// `max_delay` for more only while more images are being decoded: a lone request is answered
/// at once, and a burst shares one forward pass.
fn work(
    model: &Model,
    rx: &Receiver<Job>,
    depth: &AtomicUsize,
    incoming: &AtomicUsize,
    opts: BatchOptions,
) {
    let take = |job: Job| {
        depth.fetch_sub(1, Ordering::SeqCst);
        job
    };
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![take(first)];
        let deadline = Instant::now() + opts.max_delay;
        while jobs.len() < opts.max_batch {
            // What is already queued joins at once; then wait for more until the deadline.
            match rx.try_recv() {
                Ok(j) => {
                    jobs.push(take(j));
                    continue;
                }
                Err(_) if opts.max_delay.is_zero() || incoming.load(Ordering::SeqCst) == 0 => {
                    break;
                }
                Err(_) => {}
            }
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(j) => jobs.push(take(j)),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics::gauge!("fastvision_queue_depth").set(depth.load(Ordering::SeqCst) as f64);
        // A client that went away costs nothing more.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        answer(model, jobs);
    }
}

/// One forward pass for the batch (and one backward for the heatmaps asked for); every job
/// gets its own answer, or the same error if the pass failed.
fn answer(model: &Model, jobs: Vec<Job>) {
    let start = Instant::now();
    let n = jobs.len();
    metrics::histogram!("fastvision_batch_size").record(n as f64);
    let result = catch_unwind(AssertUnwindSafe(|| -> crate::Result<_> {
        let x = Tensor::stack(
            &jobs.iter().map(|j| j.x.shallow_clone()).collect::<Vec<_>>(),
            0,
        );
        let preds = model.predict_inputs(&x)?;
        let want: Vec<usize> = (0..n).filter(|&i| jobs[i].heatmap).collect();
        let mut maps: Vec<Option<Vec<f32>>> = vec![None; n];
        if !want.is_empty() {
            let idx = Tensor::from_slice(&want.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let classes: Vec<i64> = want.iter().map(|&i| preds[i].index as i64).collect();
            let cams = model
                .gradcam(&x.index_select(0, &idx), &classes)?
                .to_device(Device::Cpu);
            for (k, &i) in want.iter().enumerate() {
                maps[i] = Vec::try_from(cams.get(k as i64).contiguous().view([-1])).ok();
            }
        }
        Ok((preds, maps))
    }));
    let compute = start.elapsed();
    metrics::histogram!("fastvision_compute_seconds").record(compute.as_secs_f64());
    let result = match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("the model failed on this batch: {e}")),
        Err(p) => Err(format!(
            "the model failed on this batch: {}",
            crate::data::loader::panic_message(&*p)
        )),
    };
    match result {
        Ok((preds, maps)) => {
            for ((job, prediction), heatmap) in jobs.into_iter().zip(preds).zip(maps) {
                let queued = start.saturating_duration_since(job.enqueued);
                metrics::histogram!("fastvision_queue_seconds").record(queued.as_secs_f64());
                let _ = job.reply.send(Ok(Answer {
                    prediction,
                    heatmap,
                    queued,
                    compute,
                    batch_size: n,
                }));
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}
