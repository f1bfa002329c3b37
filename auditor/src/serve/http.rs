//! The routes of `serve`: authenticated ingest of observations and object-store
//! notifications, health, readiness, metrics and the latest signed checkpoint. Every request
//! is read, parsed and judged whole before anything is queued: a refused request writes
//! nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::events::{self, ObjectStore};
use super::{Job, Service};
use crate::ingest::{Location, Report, Submission};

/// The service's routes.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/observations", post(observations))
        .route("/v1/events/seaweedfs", post(seaweedfs))
        .route("/v1/events/minio", post(minio))
        .route("/v1/events/ceph", post(ceph))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(service.clone(), budget))
        .layer(middleware::from_fn_with_state(service.clone(), count))
        .with_state(service)
}

/// Charges a request with a body its share of `--max-inflight-bytes` until it is answered, or
/// answers 503 at once when the share is not free: memory stays bounded in bytes, whatever
/// the queue length.
async fn budget(State(s): State<Arc<Service>>, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(s.max_body as u64)
        .min(s.max_body as u64)
        .max(1);
    let cost = declared.saturating_mul(super::COST_PER_BODY_BYTE);
    let Some(share) = s.budget.try_take(cost) else {
        s.shared.metrics.refused_busy.inc();
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: the requests in progress hold the memory this one needs ({cost} bytes of --max-inflight-bytes {}); nothing of this request was recorded: retry later",
                s.budget.total()
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let answer = next.run(req).await;
    drop(share);
    answer
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_response(status, &json!({ "error": message.to_string() }))
}

/// A JSON answer (axum's `Json` needs a feature this workspace leaves off).
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        format!("{value}\n"),
    )
        .into_response()
}

async fn count(State(s): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    s.shared
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

async fn readyz(State(s): State<Arc<Service>>) -> Response {
    if s.shared.ready.load(Ordering::SeqCst)
        && !s.queue.is_closed()
        && !s.shared.judging.load(Ordering::SeqCst)
    {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first complete listing of the cluster (volumes, claims, pods, nodes, NodeAttestations, NetworkPolicies)\n",
        )
            .into_response()
    } else if s.shared.ready.load(Ordering::SeqCst) && !s.queue.is_closed() {
        (StatusCode::OK, "ready\n").into_response()
    } else if s.shared.standby.load(Ordering::SeqCst) {
        // Ready to take over: a rollout must not wait for a standby to lead. Writers reach
        // the leader through its pod label, not through readiness.
        (
            StatusCode::OK,
            "standby: waiting for the sequencer's Lease\n",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the sequencer is not running\n",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<Arc<Service>>) -> Response {
    s.shared
        .metrics
        .queue_depth
        .set((s.queue.max_capacity() - s.queue.capacity()) as i64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        s.shared.metrics.render(),
    )
        .into_response()
}

async fn checkpoint(State(s): State<Arc<Service>>) -> Response {
    let note = s.shared.checkpoint.read().ok().and_then(|c| c.clone());
    match note {
        Some(note) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            note,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the ledger is empty: no checkpoint yet",
        ),
    }
}

/// The writer named by the bearer token, or the 401 answer.
fn authenticate<'a>(s: &'a Service, headers: &HeaderMap) -> Result<&'a str, Box<Response>> {
    let unauthorized = |why: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, why);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hexagone-auditor\""),
        );
        Box::new(r)
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    s.tokens
        .writer(token.trim())
        .ok_or_else(|| unauthorized("unknown token"))
}

/// `report` with its node described by the cluster: the Node of that name must exist, and
/// each fact the writer gave (providerID, a label, an address) must be the cluster's. The
/// cluster's whole description replaces the writer's, so a writer can name a node, not
/// describe it.
fn from_cluster(
    nodes: &kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Node>,
    mut report: Report,
) -> Result<Report, String> {
    let Location::Node(given) = &report.location else {
        return Ok(report);
    };
    let name = &given.name;
    let node = nodes
        .get(&kube::runtime::reflector::ObjectRef::new(name))
        .ok_or_else(|| format!("node {name:?} is not a node of this cluster"))?;
    let cluster = crate::collect::volumes::reported(&node);
    if let Some(p) = &given.provider_id
        && cluster.provider_id.as_ref() != Some(p)
    {
        return Err(format!(
            "node {name:?}: providerID {p:?} is not the cluster's ({})",
            cluster
                .provider_id
                .as_deref()
                .map_or_else(|| "none".to_owned(), |c| format!("{c:?}"))
        ));
    }
    for (key, value) in &given.labels {
        match cluster.labels.get(key) {
            Some(c) if c == value => {}
            Some(c) => {
                return Err(format!(
                    "node {name:?}: label {key} is {c:?} in the cluster, not {value:?}"
                ));
            }
            None => {
                return Err(format!(
                    "node {name:?}: label {key} is not set on it in the cluster"
                ));
            }
        }
    }
    for a in &given.addresses {
        if !cluster.addresses.contains(a) {
            return Err(format!(
                "node {name:?}: address {} {} is not among the cluster's ({})",
                a.kind,
                a.address,
                cluster
                    .addresses
                    .iter()
                    .map(|c| format!("{} {}", c.kind, c.address))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    report.location = Location::Node(cluster);
    Ok(report)
}

/// Reads the body up to `--max-body` (more: 413).
async fn read_body(s: &Service, body: Body) -> Result<axum::body::Bytes, Box<Response>> {
    match tokio::time::timeout(s.body_timeout, to_bytes(body, s.max_body)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes (--max-body)",
                s.max_body
            ),
        ))),
        Err(_) => Err(Box::new(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {:?} (--header-timeout); nothing was recorded",
                s.body_timeout
            ),
        ))),
    }
}

/// Judges every report (all or nothing), queues them, waits for their commit. Each report's
/// idempotency key is the writer's own on `route` ([`crate::ingest::request_key`]): no other
/// writer, and no other route, can take it first.
async fn submit(
    s: &Arc<Service>,
    writer: &str,
    route: &str,
    arrived: Instant,
    mut reports: Vec<Report>,
) -> Response {
    for r in &mut reports {
        r.id =
            r.id.take()
                .map(|id| crate::ingest::request_key(writer, route, &id));
    }
    if s.shared.ready.load(Ordering::SeqCst) && !s.shared.judging.load(Ordering::SeqCst) {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the auditor has not yet read the cluster's NodeAttestations (its first listing of the cluster is not complete); nothing of this request was recorded: retry later",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let reports = match s.cluster_nodes.get() {
        Some(nodes) => match reports
            .into_iter()
            .enumerate()
            .map(|(i, r)| from_cluster(nodes, r).map_err(|e| (i, e)))
            .collect::<Result<Vec<Report>, _>>()
        {
            Ok(r) => r,
            Err((i, e)) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "line {}: {e}; with `serve --kubernetes` the auditor describes a node from the cluster's Node object: name it, and give only facts that agree with it; nothing of this request was recorded",
                        i + 1
                    ),
                );
            }
        },
        None => reports,
    };
    // Judging is CPU work (database lookups for every address): off the async workers, so a
    // large request does not hold up the sequencer task or other connections.
    let service = s.clone();
    let judged = tokio::task::spawn_blocking(move || {
        let snapshot = service.judge.snapshot();
        let now = time::OffsetDateTime::now_utc();
        reports
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                service.judge.judge(r, &snapshot, now).map_err(|e| {
                    format!(
                        "observation {}: {e}; nothing of this request was recorded",
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<Submission>, String>>()
    })
    .await;
    let items = match judged {
        Ok(Ok(items)) => items,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("judging failed: {e}; nothing was recorded"),
            );
        }
    };
    if items.is_empty() {
        return json_response(StatusCode::OK, &json!({"entries": [], "size": null}));
    }
    if !s.shared.ready.load(Ordering::SeqCst) {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            if s.shared.standby.load(Ordering::SeqCst) {
                "this replica stands by (another holds the sequencer's Lease); nothing of this request was recorded: retry on the leader"
            } else {
                "the sequencer is not running; nothing of this request was recorded: retry later"
            },
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        items,
        arrived,
        reply,
    };
    match s.queue.try_send(job) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ingest queue is full; nothing of this request was recorded: retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the sequencer is not running; nothing of this request was recorded",
            );
        }
    }
    match answer.await {
        Ok(Ok(committed)) => {
            // Which writer posted which entries: the entries do not name their writer.
            let recorded: Vec<u64> = committed
                .entries
                .iter()
                .filter(|e| e.recorded)
                .map(|e| e.seq)
                .collect();
            if let (Some(first), Some(last)) = (recorded.iter().min(), recorded.iter().max()) {
                tracing::info!(
                    "writer {writer}: recorded entries {first}-{last} ({} of {} observations; checkpoint {})",
                    recorded.len(),
                    committed.entries.len(),
                    committed.size
                );
            }
            let mut body = serde_json::to_value(&committed).unwrap_or_default();
            body["writer"] = json!(writer);
            json_response(StatusCode::OK, &body)
        }
        Ok(Err(e)) if e.contains("idempotency key") => error(StatusCode::CONFLICT, e),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the sequencer stopped before committing this request; it was not acknowledged",
        ),
    }
}

/// `POST /v1/observations`: one observation object, or an array of them, in the format of
/// `append`'s input lines (element N is reported as line N).
async fn observations(State(s): State<Arc<Service>>, headers: HeaderMap, body: Body) -> Response {
    let arrived = Instant::now();
    let writer = match authenticate(&s, &headers) {
        Ok(w) => w.to_string(),
        Err(r) => return *r,
    };
    let bytes = match read_body(&s, body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    // Each element is parsed once, from its own text, so that an error names its element.
    let values: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => match serde_json::from_slice::<&serde_json::value::RawValue>(&bytes) {
            Ok(one) if one.get().starts_with('{') => vec![one],
            Ok(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "expected one observation (a JSON object) or an array of them",
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}; nothing was recorded"),
                );
            }
        },
    };
    let mut reports = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        match crate::ingest::parse_line(i as u64 + 1, v.get()) {
            Ok(r) => reports.push(r),
            // The collector's store: what it records, it observes in the cluster itself.
            Err(e) if e.reserved_store().is_some() => {
                return error(
                    StatusCode::FORBIDDEN,
                    format!("{e}; nothing of this request was recorded"),
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{e}; nothing of this request was recorded"),
                );
            }
        }
    }
    submit(&s, &writer, "observations", arrived, reports).await
}

async fn seaweedfs(s: State<Arc<Service>>, h: HeaderMap, r: Request) -> Response {
    event(ObjectStore::SeaweedFs, s, h, r).await
}

async fn minio(s: State<Arc<Service>>, h: HeaderMap, r: Request) -> Response {
    event(ObjectStore::Minio, s, h, r).await
}

async fn ceph(s: State<Arc<Service>>, h: HeaderMap, r: Request) -> Response {
    event(ObjectStore::Ceph, s, h, r).await
}

/// `POST /v1/events/<store>?endpoint=NAME[&class=CLASS]`: a notification from an object
/// store declared as `endpoint` in the inventory.
async fn event(
    store: ObjectStore,
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let arrived = Instant::now();
    let writer = match authenticate(&s, &headers) {
        Ok(w) => w.to_string(),
        Err(r) => return *r,
    };
    let query = req.uri().query().unwrap_or("").to_string();
    let mut endpoint = None;
    let mut class = "object".to_string();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "endpoint" => endpoint = Some(v.into_owned()),
            "class" => class = v.into_owned(),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{k}` (expected `endpoint` and `class`)"),
                );
            }
        }
    }
    let Some(endpoint) = endpoint else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "give the object store's inventory name: /v1/events/{}?endpoint=NAME",
                store.as_str()
            ),
        );
    };
    let bytes = match read_body(&s, req.into_body()).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let notification = match events::parse(store, &bytes) {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{e}; nothing was recorded"),
            );
        }
    };
    let mut reports = Vec::with_capacity(notification.stored.len());
    for (i, o) in notification.stored.iter().enumerate() {
        match o.report(store, &endpoint, &class) {
            Ok(r) => reports.push(r),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("object {}: {e}; nothing was recorded", i + 1),
                );
            }
        }
    }
    let route = format!("events/{}", store.as_str());
    submit(&s, &writer, &route, arrived, reports).await
}
