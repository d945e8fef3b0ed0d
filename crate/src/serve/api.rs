//! The HTTP side: routes, uploads, answers and errors. Every error is JSON `{"error": "..."}`
//! with the status that fits and a message saying what to send instead; no answer carries a
//! file system path, and nothing is served from disk but the page built into the binary.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page: pick, drop or paste a photo |
//! | `POST /predict` | an image as multipart field `file` (one or several) or as the raw body |
//! | `POST /analyze` | fastai's course template: `{"result": "<class>"}` |
//! | `GET /health/live`, `GET /health/ready` | 200, or 503 while the model loads |
//! | `GET /model` | architecture, classes, input size |
//! | `GET /metrics` | Prometheus text |
//! | `GET /openapi.json` | this API, described |

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};
use tch::Tensor;
use tokio::sync::{Semaphore, oneshot};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use super::ServeOptions;
use super::batcher::{Answer, Batcher, Job, Refused};
use crate::data::image::{Decode, decode_bytes_limited, fit_rgb};
use crate::show::colors::overlay_heatmap;

const PAGE: &str = include_str!("page.html");
const OPENAPI: &str = include_str!("openapi.json");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    batcher: Batcher,
    opts: Arc<ServeOptions>,
    decoders: Arc<Semaphore>,
    metrics: PrometheusHandle,
}

impl AppState {
    pub(crate) fn new(batcher: Batcher, opts: ServeOptions, metrics: PrometheusHandle) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        AppState {
            batcher,
            opts: Arc::new(opts),
            decoders: Arc::new(Semaphore::new(cores)),
            metrics,
        }
    }
}

/// An error answer: a status and a message for the person who sent the request.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What was wrong and what to send instead.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn json(&self) -> Value {
        json!({ "error": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.json())).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The router with its middleware: request ids, tracing, panics caught as JSON 500s, `nosniff`,
/// CORS only for the origin asked for, and the request metrics.
pub fn router(state: AppState) -> Router {
    let cors = state.opts.cors_origin.as_ref().and_then(|o| {
        HeaderValue::from_str(o).ok().map(|o| {
            CorsLayer::new()
                .allow_origin(AllowOrigin::exact(o))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE])
        })
    });
    let max_body = state.opts.max_body;
    let mut app = Router::new()
        .route("/", get(page))
        .route("/predict", post(predict))
        .route("/analyze", post(analyze))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/model", get(model_card))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // The handlers read bodies themselves, with this limit and a timeout.
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(record))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server failed on this request (it is logged); the next one is served as usual",
            )
            .into_response()
        }));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app.layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Requests by route and status, and their latency.
async fn record(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("fastvision_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("fastvision_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.batcher.is_ready() {
        Json(json!({ "ready": true })).into_response()
    } else if let Some(e) = s.batcher.load_error.get() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the model failed to load: {e}"),
        )
        .into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is loading").into_response()
    }
}

async fn model_card(State(s): State<AppState>) -> Response {
    match s.batcher.card.get() {
        Some(c) => Json(json!({
            "arch": c.arch,
            "classes": c.classes,
            "n_classes": c.classes.len(),
            "size": c.size,
            "resize": c.resize,
            "normalize": c.stats.map(|(mean, std)| json!({"mean": mean, "std": std})),
            "device": c.device,
            "max_batch": s.opts.max_batch,
        }))
        .into_response(),
        None => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model is loading").into_response()
        }
    }
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; the API is POST /predict, POST /analyze, GET /model, \
             GET /health/ready, GET /metrics and GET /openapi.json",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; see GET /openapi.json for the methods each route takes",
            uri.path()
        ),
    )
}

/// `?k=` and `?heatmap=` of `/predict`.
#[derive(Debug, Deserialize)]
pub struct PredictQuery {
    /// How many of the most likely classes to list (default 5).
    pub k: Option<usize>,
    /// Whether to add the predicted class's heatmap over the image the model saw.
    pub heatmap: Option<bool>,
}

/// One uploaded image: its name (never a path) and bytes.
struct Upload {
    name: String,
    bytes: Bytes,
}

/// One image as the model will see it.
struct Decoded {
    x: Tensor,
    /// The square the model looked at, for the heatmap.
    view: image::RgbImage,
}

async fn predict(
    State(s): State<AppState>,
    q: Result<Query<PredictQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    // Even a bad query string gets a JSON error.
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}: k is a whole number (?k=5) and heatmap is true or false (?heatmap=true)",
                    e.body_text()
                ),
            )
            .into_response();
        }
    };
    let uploads = match read_uploads(&s, req).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let k = q.k.unwrap_or(5).max(1);
    let heatmap = q.heatmap.unwrap_or(false);
    let answers = classify_all(&s, uploads, heatmap).await;
    let card = s.batcher.card.get().cloned();
    let classes = card.map(|c| c.classes).unwrap_or_default();
    if answers.len() == 1 {
        let (name, a) = answers.into_iter().next().expect("one");
        return match a {
            Ok((answer, view)) => {
                Json(answer_json(&name, &answer, view, k, &classes)).into_response()
            }
            Err(e) => e.into_response(),
        };
    }
    let items: Vec<Value> = answers
        .into_iter()
        .map(|(name, a)| match a {
            Ok((answer, view)) => answer_json(&name, &answer, view, k, &classes),
            Err(e) => json!({ "file": name, "error": e.message, "status": e.status.as_u16() }),
        })
        .collect();
    Json(json!({ "predictions": items })).into_response()
}

/// fastai's course template: `{"result": "<class>"}` for the first image.
async fn analyze(State(s): State<AppState>, req: Request) -> Response {
    let mut uploads = match read_uploads(&s, req).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    uploads.truncate(1);
    match classify_all(&s, uploads, false).await.pop() {
        Some((_, Ok((a, _)))) => Json(json!({ "result": a.prediction.class })).into_response(),
        Some((_, Err(e))) => e.into_response(),
        None => ApiError::new(StatusCode::BAD_REQUEST, "no image").into_response(),
    }
}

fn answer_json(
    name: &str,
    a: &Answer,
    view: Option<image::RgbImage>,
    k: usize,
    classes: &[String],
) -> Value {
    let p = &a.prediction;
    let mut order: Vec<usize> = (0..p.probs.len()).collect();
    order.sort_by(|&i, &j| p.probs[j].total_cmp(&p.probs[i]));
    let top: Vec<Value> = order
        .iter()
        .take(k)
        .map(|&i| json!({ "class": classes.get(i).unwrap_or(&p.class), "index": i, "probability": p.probs[i] }))
        .collect();
    let mut v = json!({
        "file": name,
        "class": p.class,
        "index": p.index,
        "probability": p.probs[p.index],
        "top": top,
        "queue_ms": a.queued.as_secs_f64() * 1e3,
        "compute_ms": a.compute.as_secs_f64() * 1e3,
        "batch_size": a.batch_size,
    });
    if let (Some(map), Some(mut view)) = (a.heatmap.as_ref(), view)
        && map.len() == (view.width() * view.height()) as usize
    {
        overlay_heatmap(&mut view, map, 0.6);
        let mut png = Vec::new();
        if image::DynamicImage::ImageRgb8(view)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .is_ok()
        {
            v["heatmap"] = json!(format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            ));
        }
    }
    v
}

/// Reads the body (within the size limit and the time limit) and finds the images in it: the
/// multipart fields named `file`, or the raw body when its type is an image.
async fn read_uploads(s: &AppState, req: Request) -> Result<Vec<Upload>, ApiError> {
    let max = s.opts.max_body;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request is over the {} limit: send a smaller image (or start the server \
                 with a larger --max-body)",
                human_bytes(max)
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(s.opts.body_timeout, axum::body::to_bytes(body, max)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body took over {} s to arrive; send it again on a faster connection",
                        s.opts.body_timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(_)) => return Err(too_large()),
            Ok(Ok(b)) => b,
        };
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request body is empty: send an image as the multipart field `file` \
             (curl -F file=@photo.jpg) or as the raw body with Content-Type image/jpeg",
        ));
    }
    if content_type.starts_with("multipart/form-data") {
        let req = Request::from_parts(parts, Body::from(bytes));
        let mut form = axum::extract::Multipart::from_request(req, &())
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unreadable multipart body ({}); send the image as the field `file`",
                        e.body_text()
                    ),
                )
            })?;
        let mut files = Vec::new();
        let mut others = Vec::new();
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unreadable multipart body ({}); send the image as the field `file`",
                            e.body_text()
                        ),
                    ));
                }
            };
            let name = field.name().unwrap_or("").to_string();
            if name != "file" {
                others.push(if name.is_empty() {
                    "(unnamed)".into()
                } else {
                    name
                });
                continue;
            }
            let file = field
                .file_name()
                .map(base_name)
                .unwrap_or_else(|| format!("file {}", files.len() + 1));
            let data = field.bytes().await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unreadable multipart field `file` ({})", e.body_text()),
                )
            })?;
            files.push(Upload {
                name: file,
                bytes: data,
            });
            if files.len() > s.opts.max_files {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "more than {} files in one request: send them in several requests (or \
                         start the server with a larger --max-files)",
                        s.opts.max_files
                    ),
                ));
            }
        }
        if files.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "no multipart field named `file` (found: {}); send the image as `file`, \
                     e.g. curl -F file=@photo.jpg",
                    if others.is_empty() {
                        "none".to_string()
                    } else {
                        others.join(", ")
                    }
                ),
            ));
        }
        return Ok(files);
    }
    if content_type.starts_with("image/") || content_type.starts_with("application/octet-stream") {
        return Ok(vec![Upload {
            name: "body".into(),
            bytes,
        }]);
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type {:?} is not an image: send the image as the multipart field `file` or \
             as the raw body with Content-Type image/jpeg (or image/png, ...)",
            if content_type.is_empty() {
                "(none)"
            } else {
                &content_type
            }
        ),
    ))
}

/// One image's answer, with the square the model saw when a heatmap was asked for.
type Classified = Result<(Answer, Option<image::RgbImage>), ApiError>;

/// Decodes every upload (in parallel, at most one per core at a time), queues those that
/// decoded, and waits for their answers; one answer per upload, in order.
async fn classify_all(
    s: &AppState,
    uploads: Vec<Upload>,
    heatmap: bool,
) -> Vec<(String, Classified)> {
    // A JoinSet aborts its tasks when dropped: a client that goes away takes its images out
    // of the queue (their replies close, and the worker skips them).
    let mut tasks = tokio::task::JoinSet::new();
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    for (i, u) in uploads.into_iter().enumerate() {
        let s2 = s.clone();
        let on_its_way = s.batcher.incoming();
        tasks.spawn(async move {
            let decoded = match decode(&s2, u).await {
                Ok(d) => d,
                Err(e) => return (i, Err(e)),
            };
            let (tx, rx) = oneshot::channel();
            let job = Job {
                x: decoded.x,
                heatmap,
                enqueued: Instant::now(),
                reply: tx,
            };
            match s2.batcher.submit(job, on_its_way) {
                Ok(()) => {}
                Err(Refused::Full) => {
                    return (
                        i,
                        Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the server is busy (its queue is full); retry after a second",
                        )),
                    );
                }
                Err(Refused::NotReady) => {
                    return (
                        i,
                        Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the model is not ready yet; retry when GET /health/ready answers 200",
                        )),
                    );
                }
            }
            let answer = match rx.await {
                Ok(Ok(a)) => Ok((a, heatmap.then_some(decoded.view))),
                Ok(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
                Err(_) => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down; retry shortly",
                )),
            };
            (i, answer)
        });
    }
    let mut results: Vec<Option<Classified>> = names.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, r)) = done {
            results[i] = Some(r);
        }
    }
    names
        .into_iter()
        .zip(results)
        .map(|(name, r)| {
            let r = r.unwrap_or_else(|| {
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server failed on this image (it is logged)",
                ))
            });
            (name, r)
        })
        .collect()
}

/// Magic bytes, then the strict decode `predict` uses, refusing too many pixels before any
/// are allocated; on a blocking thread, bounded by the decoder permits.
async fn decode(s: &AppState, u: Upload) -> Result<Decoded, ApiError> {
    let Some(card) = s.batcher.card.get().cloned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is not ready yet; retry when GET /health/ready answers 200",
        ));
    };
    if u.bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{}: the file is empty (0 bytes); send a photo", u.name),
        ));
    }
    if image::guess_format(&u.bytes).is_err() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{}: not an image (its first bytes are not JPEG, PNG, GIF, BMP, WebP or TIFF); \
                 send a photo in one of those formats",
                u.name
            ),
        ));
    }
    let _permit = s
        .decoders
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let max_pixels = s.opts.max_pixels;
    let stats = card.stats.map(|(mean, std)| crate::Stats { mean, std });
    tokio::task::spawn_blocking(move || {
        let d = decode_bytes_limited(Path::new(&u.name), &u.bytes, Decode::Strict, max_pixels)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        let view = fit_rgb(d.image, card.size, card.resize);
        let x = crate::models::model::rgb_to_input(&view, stats.as_ref());
        Ok(Decoded { x, view })
    })
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the image could not be decoded",
        ))
    })
}

/// The last part of a client's file name: no directories ever reach an answer.
fn base_name(f: &str) -> String {
    let name = f.rsplit(['/', '\\']).next().unwrap_or(f);
    if name.is_empty() {
        "file".into()
    } else {
        name.chars().take(200).collect()
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.0} MB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KB", n as f64 / 1024.0)
    }
}
