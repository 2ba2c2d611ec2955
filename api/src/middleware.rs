//! Around every request: a request id, the body limit, authentication, and errors shaped as
//! problems (poem's own errors too: bad JSON, bad parameters, unknown routes).

use longshore_jobs::admin::Scope;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use crate::auth::{Verdict, authenticate};
use crate::problem::{PROBLEM_JSON, Problem, problem_response};
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
    let response = match prepare(&mut req).await {
        Err(response) => response,
        Ok(()) => match ep.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) if error.is_from_response() => error.into_response(),
            Err(error) => {
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
                // Parse errors of poem-openapi are 400s; anything else it raises about the
                // request is one too, never a 500.
                let status = if status.is_server_error() {
                    status
                } else {
                    status_or_400(status)
                };
                problem_response(&Problem::new(status, code, error.to_string()))
            }
        },
    };
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %path, status, ms, request_id = %request_id, "request failed");
    } else {
        tracing::debug!(%method, %path, status, ms, request_id = %request_id, "request");
    }
    Ok(finish(response, &request_id).await)
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

fn status_or_400(status: StatusCode) -> StatusCode {
    if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// Applies the body limit and authentication; an `Err` is the response to send at once.
async fn prepare(req: &mut Request) -> Result<(), Response> {
    let Some(state) = req.data::<ApiState>().cloned() else {
        return Ok(());
    };
    let limit = state.shared.config.max_body_bytes;
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
    if declared.is_none_or(|n| n > 0) {
        let body = req.take_body();
        let bytes = read_limited(body, limit).await.map_err(|()| too_large())?;
        req.set_body(bytes);
    }
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
    match authenticate(&state, header.as_deref()).await {
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

/// The scope a request needs: `admin` for tokens and the audit log, `read` for other reads,
/// `enqueue` to enqueue, `operate` for every other change.
pub(crate) fn required_scope(method: &Method, path: &str) -> Scope {
    let path = path.trim_end_matches('/');
    if path.starts_with("/api/v1/tokens") || path.starts_with("/api/v1/audit") {
        return Scope::Admin;
    }
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return Scope::Read;
    }
    if *method == Method::POST && (path == "/api/v1/jobs" || path == "/api/v1/jobs/batch") {
        return Scope::Enqueue;
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

/// Adds the request id to the response header and to any problem body.
async fn finish(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
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
