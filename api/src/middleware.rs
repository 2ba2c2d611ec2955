//! Around every request: a request id, the body limit, authentication, and errors shaped as
//! problems (poem's own errors too: a request it cannot parse, checked against the spec to
//! name every field at fault; unknown routes; a method the path does not have, with `Allow`).

use std::sync::Arc;

use longshore_jobs::admin::Scope;
use longshore_jobs::telemetry::{
    self, HTTP_METHOD, HTTP_ROUTE, HTTP_STATUS, OTEL_KIND, OTEL_NAME, OTEL_STATUS, URL_PATH,
};
use opentelemetry::KeyValue;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use crate::auth::{Verdict, authenticate};
use crate::problem::{PROBLEM_JSON, Problem, problem_response};
use crate::validate::{ReadBody, Sent, Spec, parse_problem};
use crate::{ApiState, RequestId};

pub(crate) async fn around<E: Endpoint>(
    ep: std::sync::Arc<E>,
    mut req: Request,
) -> poem::Result<Response> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let (method, path, started) = (
        req.method().clone(),
        req.uri().path().to_owned(),
        std::time::Instant::now(),
    );
    let (span, route) = server_span(&req, &method, &path);
    let response = async {
        match prepare(&mut req).await {
            Err(response) => response,
            Ok(()) => call(&*ep, req, &method).await,
        }
    }
    .instrument(span.clone())
    .await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    span.record(HTTP_STATUS, status);
    if status >= 500 {
        span.record(OTEL_STATUS, "error");
    }
    telemetry::metrics::get().http.record(
        elapsed,
        &[
            KeyValue::new(HTTP_METHOD, method.to_string()),
            KeyValue::new(HTTP_ROUTE, route),
            KeyValue::new(HTTP_STATUS, i64::from(status)),
        ],
    );
    let ms = elapsed * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, ms, request_id = %request_id, "request failed");
    } else {
        tracing::debug!(%method, %path, status, ms, request_id = %request_id, "request");
    }
    Ok(finish(response, &request_id).await)
}

/// The server span of a request (`GET /api/v1/jobs/{id}`, per the HTTP conventions), a child
/// of the caller's span when the request carries a valid `traceparent`.
/// Also returns the route template (empty unless telemetry is exported).
fn server_span(req: &Request, method: &Method, path: &str) -> (tracing::Span, String) {
    let route = telemetry::exporting()
        .then(|| req.data::<Arc<Spec>>().and_then(|spec| spec.template(path)))
        .flatten()
        .unwrap_or_default();
    let name = match route.as_str() {
        "" => method.to_string(),
        route => format!("{method} {route}"),
    };
    let span = tracing::info_span!(
        "request",
        { OTEL_NAME } = %name,
        { OTEL_KIND } = "server",
        { HTTP_METHOD } = %method,
        { URL_PATH } = path,
        { HTTP_ROUTE } = route.as_str(),
        { HTTP_STATUS } = tracing::field::Empty,
        { OTEL_STATUS } = tracing::field::Empty,
    );
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(telemetry::parse_traceparent);
    if let Some(parent) = parent {
        telemetry::set_remote_parent(&span, parent);
    }
    (span, route)
}

/// The answer to a request whose route panicked.
pub(crate) fn panic_problem(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    problem_response(&Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed to handle the request",
    ))
}

/// Calls the endpoint within the request deadline, shaping its errors as problems.
async fn call<E: Endpoint>(ep: &E, req: Request, method: &Method) -> Response {
    let deadline = req
        .data::<ApiState>()
        .map(|state| state.shared.config.request_timeout);
    let checked = req
        .data::<Arc<Spec>>()
        .map(|spec| (Arc::clone(spec), Sent::of(&req)));
    let called = match deadline {
        Some(limit) => match tokio::time::timeout(limit, ep.call(req)).await {
            Ok(called) => called,
            Err(_) => return timed_out(method, limit),
        },
        None => ep.call(req).await,
    };
    match called {
        Ok(response) => response.into_response(),
        Err(error) if error.is_from_response() => error.into_response(),
        Err(error) => {
            if let Some((spec, sent)) = &checked {
                if let Some(problem) = parse_problem(spec, sent, &error) {
                    return problem_response(&problem);
                }
                if error.status() == StatusCode::METHOD_NOT_ALLOWED {
                    return method_not_allowed(spec, sent);
                }
            }
            poem_problem(&error)
        }
    }
}

/// Any other error of poem's as a problem: never a 500 for what is wrong with the request.
fn poem_problem(error: &poem::Error) -> Response {
    let status = error.status();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    if status.is_server_error() {
        tracing::error!(error = %error, "request failed");
    }
    let status = if status.is_server_error() {
        status
    } else {
        status_or_400(status)
    };
    problem_response(&Problem::new(status, code, error.to_string()))
}

/// 405 with `Allow`, the methods the path has.
fn method_not_allowed(spec: &Spec, sent: &Sent) -> Response {
    let path = sent.uri.path();
    let methods = spec.allowed(path);
    let allowed = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = problem_response(&Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {path}; it allows {allowed}",
            sent.method
        ),
    ));
    if let Ok(value) = HeaderValue::from_str(&allowed) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The answer to a request that outlasted its deadline: a read changed nothing (503); a
/// change may or may not have been made (504).
fn timed_out(method: &Method, limit: std::time::Duration) -> Response {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let (status, detail) = if safe {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request did not finish within {limit:?}; retry later"),
        )
    } else {
        (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request did not finish within {limit:?}; it may or may not have taken effect"
            ),
        )
    };
    problem_response(&Problem::new(status, "timeout", detail))
}

fn status_or_400(status: StatusCode) -> StatusCode {
    if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// The longest request target accepted; longer ones get 414.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest header block accepted; larger ones get 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Applies the size limits and authentication, then reads the body under its deadline; an
/// `Err` is the response to send at once. Nothing of the body is read before the caller is
/// known, so an anonymous client cannot make the server hold its bytes.
async fn prepare(req: &mut Request) -> Result<(), Response> {
    let Some(state) = req.data::<ApiState>().cloned() else {
        return Ok(());
    };
    check_head(req)?;
    let config = &state.shared.config;
    let limit = config.max_body_bytes;
    let too_large = || {
        problem_response(&Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    authorize(req, &state).await?;
    if declared.is_none_or(|n| n > 0) {
        let body = req.take_body();
        let read = tokio::time::timeout(config.body_timeout, read_limited(body, limit)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(())) => return Err(too_large()),
            Err(_) => {
                return Err(problem_response(&Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {:?}",
                        config.body_timeout
                    ),
                )));
            }
        };
        // Kept beside the request, to check it against the spec if the route cannot parse it.
        let bytes = hyper::body::Bytes::from(bytes);
        req.extensions_mut().insert(ReadBody(bytes.clone()));
        req.set_body(bytes);
    }
    Ok(())
}

/// 414 and 431 as problems (hyper's own, for heads beyond what it buffers, have no body).
fn check_head(req: &Request) -> Result<(), Response> {
    let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI_BYTES {
        return Err(problem_response(&Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri} bytes, over the limit of {MAX_URI_BYTES}"),
        )));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Err(problem_response(&Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the headers are {headers} bytes, over the limit of {MAX_HEADER_BYTES}"),
        )));
    }
    Ok(())
}

/// Authenticates a request to the API from its headers and checks its scope.
async fn authorize(req: &mut Request, state: &ApiState) -> Result<(), Response> {
    let path = req.uri().path();
    let guarded = path.starts_with("/api/v1/")
        && !path.starts_with("/api/v1/openapi.json")
        && !path.starts_with("/api/v1/docs");
    if !guarded {
        return Ok(());
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let needed = required_scope(req.method(), path);
    match authenticate(state, header.as_deref()).await {
        Ok(Verdict::Allow(principal)) => {
            // Checked before the body is parsed, so a token without the scope learns nothing
            // about what a valid request would be. The routes check again.
            if let Err(error) = principal.require(needed) {
                return Err(problem_response(error.problem()));
            }
            req.extensions_mut().insert(principal);
            Ok(())
        }
        Ok(Verdict::Local) => {
            if let Err(detail) = same_origin_on_loopback(req, state) {
                return Err(problem_response(&Problem::new(
                    StatusCode::FORBIDDEN,
                    "cross_site",
                    detail,
                )));
            }
            req.extensions_mut().insert(crate::Principal::local());
            req.headers_mut().insert(
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer local"),
            );
            Ok(())
        }
        Ok(Verdict::Deny(detail)) => {
            let mut response = problem_response(&Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                detail,
            ));
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(response)
        }
        Err(error) => Err(problem_response(error.problem())),
    }
}

/// In local mode (no token exists, a loopback address) every request acts with every scope,
/// so only requests from this machine's own tools may pass: a `Host` that names loopback (a
/// page on another name that resolves here, DNS rebinding, is refused), and no `Origin` or
/// `Sec-Fetch-Site` that says the request comes from another site (a form on any web page
/// could otherwise pause queues or cancel jobs).
fn same_origin_on_loopback(req: &Request, state: &ApiState) -> Result<(), String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(host) = &host
        && !is_loopback_host(host, state.shared.config.listen)
    {
        return Err(format!(
            "without a token the API answers only requests addressed to this machine              (Host {host:?}); create a token to reach it by another name"
        ));
    }
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err("without a token the API refuses requests from other sites".to_owned());
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let same = host.as_ref().is_some_and(|host| {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
        if !same {
            return Err(format!(
                "without a token the API refuses requests from other origins ({origin:?})"
            ));
        }
    }
    Ok(())
}

/// Whether a `Host` header names this machine: `localhost`, a loopback address, or the
/// address the server listens on, with any port.
fn is_loopback_host(host: &str, listen: std::net::SocketAddr) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || ip == listen.ip())
}

/// The scope a request needs: `admin` for tokens and the audit log, `read` for other reads,
/// `enqueue` to enqueue jobs and pushes, `admin` to define schedules, sweeps and webhook
/// endpoints, `operate` for every other change.
pub(crate) fn required_scope(method: &Method, path: &str) -> Scope {
    let path = path.trim_end_matches('/');
    if path.starts_with("/api/v1/tokens") || path.starts_with("/api/v1/audit") {
        return Scope::Admin;
    }
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return Scope::Read;
    }
    let enqueues = [
        "/api/v1/jobs",
        "/api/v1/jobs/batch",
        "/api/v1/push",
        "/api/v1/push/batch",
        "/api/v1/lifecycle-events",
        "/api/v1/lifecycle-events/batch",
        "/api/v1/activity",
    ];
    if *method == Method::POST && enqueues.contains(&path) {
        return Scope::Enqueue;
    }
    // Webhook endpoints hold secrets and decide where requests go: admins define them;
    // redelivering and replaying operate.
    if path.starts_with("/api/v1/webhook-endpoints")
        && !path.ends_with("/redeliver")
        && !path.ends_with("/replay")
    {
        return Scope::Admin;
    }
    // Defining what runs on a timer is for admins; pausing, resuming and triggering operate.
    let schedule_definition = (path == "/api/v1/schedules" && *method == Method::POST)
        || (path.starts_with("/api/v1/schedules/")
            && path.matches('/').count() == 4
            && (*method == Method::PATCH || *method == Method::DELETE));
    // So is defining a sweep (it runs SQL on a target).
    let sweep_definition = path.starts_with("/api/v1/sweeps/")
        && path.matches('/').count() == 4
        && (*method == Method::PUT || *method == Method::DELETE);
    if schedule_definition || sweep_definition {
        return Scope::Admin;
    }
    Scope::Operate
}

/// Reads at most `limit` bytes of `body`; `Err` when there are more.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ()> {
    use futures::StreamExt;
    let mut stream = body.into_bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ())?;
        if bytes.len() + chunk.len() > limit {
            return Err(());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Adds the request id to the response header and to any problem body, and tells a client
/// refused for want of the database when to retry.
async fn finish(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = body.into_vec().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = match serde_json::from_slice::<Problem>(&bytes) {
        Ok(mut problem) => {
            problem.request_id = Some(request_id.to_owned());
            serde_json::to_vec(&problem).unwrap_or(bytes)
        }
        Err(_) => bytes,
    };
    let mut response = Response::from_parts(parts, Body::from(body));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}
