//! Errors as `application/problem+json` (RFC 9457): a stable `code`, a title, the detail,
//! the fields at fault, and the request id. Every error any route can answer is declared in
//! the spec, so a client can rely on the shape.

use longshore_jobs::{EnqueueError, StoreError};
use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The content type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem report.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// A URI naming the problem type: `about:blank` or a Longshore code page.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// A stable, machine-readable code, e.g. `invalid_field`.
    pub code: String,
    /// The fields at fault, for validation errors.
    #[oai(default, skip_serializing_if_is_empty)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The jobs concerned, when the outcome is unknown (`outcome_unknown`).
    #[oai(default, skip_serializing_if_is_empty)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_ids: Vec<String>,
    /// The request's id (also in the `x-request-id` header).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One invalid field.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// The field, e.g. `max_attempts` or `args.user_id`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: format!("https://longshore.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            job_ids: Vec::new(),
            request_id: None,
        }
    }

    /// A validation problem naming the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        let (field, message) = (field.into(), message.into());
        let mut problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("invalid {field}: {message}"),
        );
        problem.errors.push(FieldError { field, message });
        problem
    }

    /// A validation problem naming each field at fault.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Problem {
        let detail = match errors.as_slice() {
            [one] => format!("invalid {}: {}", one.field, one.message),
            many => {
                let fields: Vec<&str> = many.iter().map(|e| e.field.as_str()).collect();
                format!("invalid {} (see errors)", fields.join(", "))
            }
        };
        let mut problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail);
        problem.errors = errors;
        problem
    }
}

/// Every error response of the API.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: a body that is not JSON, a tampered cursor or event id.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// No valid bearer token.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The token lacks the scope this operation needs.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Nothing has this id.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The resource's state does not allow this now, or the same idempotency key is in flight.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body, or the job's args, is too large.
    #[oai(status = 413, content_type = "application/problem+json")]
    TooLarge(Json<Problem>),
    /// The body is not JSON (`Content-Type: application/json`).
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// A field is invalid (`errors` names each, with what it accepts), or an idempotency
    /// key was reused with another body.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Something is wrong on the server's side, e.g. a stored row that cannot be read.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// The database is unreachable, or refused the work for now; retry later. An enqueue
    /// answered 503 stored nothing.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
    /// The database did not confirm in time: the change may or may not have been stored.
    /// The problem names the jobs concerned; retry with the same `Idempotency-Key`, or look
    /// the jobs up.
    #[oai(status = 504, content_type = "application/problem+json")]
    Timeout(Json<Problem>),
}

impl ApiError {
    /// The error for `problem`, by its status.
    pub fn from_problem(problem: Problem) -> ApiError {
        let body = Json(problem);
        match body.0.status {
            400 => ApiError::BadRequest(body),
            401 => ApiError::Unauthorized(body),
            403 => ApiError::Forbidden(body),
            404 => ApiError::NotFound(body),
            409 => ApiError::Conflict(body),
            413 => ApiError::TooLarge(body),
            415 => ApiError::UnsupportedMediaType(body),
            422 => ApiError::Unprocessable(body),
            500 => ApiError::Internal(body),
            504 => ApiError::Timeout(body),
            _ => ApiError::Unavailable(body),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> ApiError {
        ApiError::from_problem(Problem::new(StatusCode::BAD_REQUEST, code, detail))
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::from_problem(Problem::new(StatusCode::NOT_FOUND, "not_found", detail))
    }

    /// 409 with `code`.
    pub fn conflict(code: &str, detail: impl Into<String>) -> ApiError {
        ApiError::from_problem(Problem::new(StatusCode::CONFLICT, code, detail))
    }

    /// 422 naming the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::from_problem(Problem::invalid(field, message))
    }

    /// The problem inside.
    pub fn problem(&self) -> &Problem {
        match self {
            ApiError::BadRequest(p)
            | ApiError::Unauthorized(p)
            | ApiError::Forbidden(p)
            | ApiError::NotFound(p)
            | ApiError::Conflict(p)
            | ApiError::TooLarge(p)
            | ApiError::UnsupportedMediaType(p)
            | ApiError::Unprocessable(p)
            | ApiError::Internal(p)
            | ApiError::Unavailable(p)
            | ApiError::Timeout(p) => &p.0,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match &error {
            StoreError::JobNotFound(id) => ApiError::not_found(format!("no job has id {id}")),
            StoreError::Conflict { .. } => ApiError::conflict("invalid_state", error.to_string()),
            StoreError::Unconfirmed { jobs } => {
                tracing::warn!(
                    jobs = jobs.len(),
                    "an enqueue's commit was not confirmed in time"
                );
                let mut problem = Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "outcome_unknown",
                    "the database did not confirm the commit in time: the jobs may or may not \
                     be stored; look them up by id, or retry with the same Idempotency-Key",
                );
                problem.job_ids = jobs.iter().map(ToString::to_string).collect();
                ApiError::Timeout(Json(problem))
            }
            StoreError::NoAnswer => {
                tracing::warn!("the database did not answer in time");
                ApiError::Timeout(Json(Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "the database did not answer in time; a change may or may not have been \
                     made (reads change nothing); retry later",
                )))
            }
            StoreError::Corrupt { .. } => {
                tracing::error!(error = %error_chain(&error), "stored data cannot be read");
                ApiError::Internal(Json(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_row",
                    error.to_string(),
                )))
            }
            _ if error.is_invalid_input() => {
                // Validation should have caught it; the database's refusal is still the
                // client's to fix, never a reason to retry.
                tracing::warn!(error = %error_chain(&error), "the database refused a value");
                ApiError::invalid("body", "a value cannot be stored by the database")
            }
            _ => {
                // Details of database failures stay in the log, not in the response.
                tracing::error!(error = %error_chain(&error), "store operation failed");
                let detail = match &error {
                    StoreError::Unavailable { .. } | StoreError::TimedOut { .. } => {
                        "the database is unavailable, nothing was stored or changed; retry later"
                    }
                    _ if error.is_unavailable() => "the database is unavailable; retry later",
                    _ => "the database operation failed; retry later",
                };
                ApiError::Unavailable(Json(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    detail,
                )))
            }
        }
    }
}

impl From<EnqueueError> for ApiError {
    fn from(error: EnqueueError) -> ApiError {
        match error {
            EnqueueError::Invalid { field, message } => ApiError::invalid(field, message),
            EnqueueError::TooLarge { field, message } => {
                let mut problem = Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("{field} too large: {message}"),
                );
                problem.errors.push(FieldError { field, message });
                ApiError::TooLarge(Json(problem))
            }
            EnqueueError::UnknownKind(kind) => {
                ApiError::invalid("kind", format!("no kind {kind:?} is registered"))
            }
            EnqueueError::Store(error) => error.into(),
        }
    }
}

/// An error with its causes, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body of a problem response, for the middleware that shapes poem's own errors.
pub fn problem_response(problem: &Problem) -> poem::Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
    poem::Response::builder()
        .status(status)
        .content_type(PROBLEM_JSON)
        .body(serde_json::to_vec(problem).unwrap_or_default())
}
