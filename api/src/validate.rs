//! A request checked against the API's own OpenAPI spec, for the answer to one that
//! poem-openapi could not parse: poem-openapi stops at the first field it cannot read and
//! says so in its own words; this names every field at fault, with what it accepts (the
//! allowed values, the range, the format), in the words of the spec a client reads.
//!
//! It runs only after a parse failure, so a valid request costs nothing. It knows the subset
//! of JSON Schema poem-openapi writes: `$ref`, `allOf`, `type`, `format` (`date-time`,
//! `uuid`, the integer widths), `enum`, `minimum`/`maximum`, `minLength`/`maxLength`,
//! `minItems`/`maxItems`, `required`, `properties` and `additionalProperties`. An object
//! with `properties` and no `additionalProperties` is closed: every request type of the API
//! refuses unknown fields (`#[oai(deny_unknown_fields)]`), which the spec does not record.

use poem::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use crate::problem::{FieldError, Problem};

mod schema;

use schema::Schemas;

/// The operations of the served specs, to check requests against.
pub(crate) struct Spec {
    operations: Vec<Operation>,
    schemas: Schemas,
}

struct Operation {
    method: Method,
    /// The path's segments from the root; `{name}` is a parameter.
    segments: Vec<String>,
    parameters: Vec<Value>,
    /// The schema of the JSON body, when the operation takes one.
    body: Option<Value>,
}

/// What a request sent, kept to check it after the route failed to parse it.
pub(crate) struct Sent {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: hyper::body::Bytes,
}

impl Sent {
    /// What `req` sent (its body as the middleware read it).
    pub fn of(req: &poem::Request) -> Sent {
        Sent {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            body: req
                .extensions()
                .get::<ReadBody>()
                .map(|read| read.0.clone())
                .unwrap_or_default(),
        }
    }
}

/// A request's body as the middleware read it, kept beside the request.
#[derive(Clone)]
pub(crate) struct ReadBody(pub hyper::body::Bytes);

/// What is wrong with a request: its invalid fields, and whether its body is not JSON at all
/// (why not).
#[derive(Default)]
pub(crate) struct Findings {
    pub errors: Vec<FieldError>,
    pub not_json: Option<String>,
}

impl Spec {
    /// The operations of `specs`, each an OpenAPI document (JSON) served under its prefix.
    pub fn new(specs: &[(&str, String)]) -> Spec {
        let mut operations = Vec::new();
        let mut schemas = Schemas::default();
        for (prefix, text) in specs {
            let Ok(doc) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if let Some(found) = doc
                .pointer("/components/schemas")
                .and_then(Value::as_object)
            {
                schemas.0.extend(found.clone());
            }
            let paths = doc["paths"].as_object().into_iter().flatten();
            for (path, methods) in paths {
                let segments = segments(&format!("{prefix}{path}"));
                for (method, op) in methods.as_object().into_iter().flatten() {
                    let Ok(method) = method.to_uppercase().parse::<Method>() else {
                        continue;
                    };
                    let body = op
                        .pointer("/requestBody/content")
                        .and_then(Value::as_object)
                        .and_then(|content| content.iter().find(|(ty, _)| ty.contains("json")))
                        .map(|(_, media)| media["schema"].clone());
                    operations.push(Operation {
                        method,
                        segments: segments.clone(),
                        parameters: op["parameters"].as_array().cloned().unwrap_or_default(),
                        body,
                    });
                }
            }
        }
        Spec {
            operations,
            schemas,
        }
    }

    /// The methods `path` answers (with `HEAD` where it answers `GET`), in a fixed order;
    /// none when no route has this path.
    pub fn allowed(&self, path: &str) -> Vec<Method> {
        let ops = self.route(path);
        let has = |m: &Method| ops.iter().any(|op| op.method == *m);
        [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ]
        .into_iter()
        .filter(|m| has(m) || (*m == Method::HEAD && has(&Method::GET)))
        .collect()
    }

    /// The route template `path` matches (`/api/v1/jobs/{id}`), for telemetry.
    pub fn template(&self, path: &str) -> Option<String> {
        let op = *self.route(path).first()?;
        Some(format!("/{}", op.segments.join("/")))
    }

    /// Checks every declared parameter and the JSON body of `sent`.
    pub fn check(&self, sent: &Sent) -> Findings {
        let mut found = Findings::default();
        let path = sent.uri.path();
        let Some(op) = self
            .route(path)
            .into_iter()
            .find(|op| op.method == sent.method)
        else {
            return found;
        };
        for parameter in &op.parameters {
            self.check_parameter(parameter, op, sent, &mut found.errors);
        }
        if let Some(schema) = &op.body {
            self.check_body(schema, sent, &mut found);
        }
        found
    }

    /// The operations of the route that serves `path`: of the templates that match it, the
    /// one with literal segments earliest (as the router prefers `/jobs/batch` to
    /// `/jobs/{id}`).
    fn route(&self, path: &str) -> Vec<&Operation> {
        let given = segments(path);
        let matching = || {
            self.operations
                .iter()
                .filter(|op| matches(&op.segments, &given))
        };
        let literal = |op: &Operation| -> Vec<bool> {
            op.segments.iter().map(|s| !s.starts_with('{')).collect()
        };
        let Some(best) = matching().map(literal).max() else {
            return Vec::new();
        };
        matching().filter(|op| literal(op) == best).collect()
    }

    fn check_parameter(
        &self,
        parameter: &Value,
        op: &Operation,
        sent: &Sent,
        errors: &mut Vec<FieldError>,
    ) {
        let name = parameter["name"].as_str().unwrap_or_default();
        let values: Vec<String> = match parameter["in"].as_str() {
            Some("query") => {
                let query = sent.uri.query().unwrap_or_default();
                form_urlencoded::parse(query.as_bytes())
                    .filter(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
                    .collect()
            }
            Some("header") => sent
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect(),
            Some("path") => {
                let template = format!("{{{name}}}");
                let given = segments(sent.uri.path());
                op.segments
                    .iter()
                    .position(|s| *s == template)
                    .and_then(|i| given.get(i))
                    .map(|s| percent_decoded(s))
                    .into_iter()
                    .collect()
            }
            _ => return,
        };
        let schema = self.schemas.resolve(&parameter["schema"]);
        let is_array = schema["type"] == "array";
        if values.is_empty() {
            if parameter["required"] == true && !is_array {
                let expected = self.schemas.describe(schema);
                errors.push(field_error(name, format!("is required: {expected}")));
            }
            return;
        }
        // A single value is read from the first occurrence, a list from all of them.
        let (item, values) = if is_array {
            (&schema["items"], &values[..])
        } else {
            (schema, &values[..1])
        };
        for text in values {
            if let Err(message) = self.schemas.check_text(item, text) {
                errors.push(field_error(name, message));
                break;
            }
        }
    }

    fn check_body(&self, schema: &Value, sent: &Sent, found: &mut Findings) {
        let json = sent
            .headers
            .get(poem::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ty| ty.contains("json"));
        if !json {
            // Refused as unsupported (415) once its parameters are right.
            return;
        }
        if sent.body.is_empty() {
            let expected = self.schemas.describe(schema);
            found
                .errors
                .push(field_error("body", format!("is required: {expected}")));
            return;
        }
        match serde_json::from_slice::<Value>(&sent.body) {
            Ok(value) => self
                .schemas
                .check_value(schema, &value, "", &mut found.errors),
            Err(error) => found.not_json = Some(error.to_string()),
        }
    }
}

fn field_error(field: impl Into<String>, message: String) -> FieldError {
    FieldError {
        field: field.into(),
        message,
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn matches(template: &[String], given: &[String]) -> bool {
    template.len() == given.len()
        && template
            .iter()
            .zip(given)
            .all(|(t, g)| t.starts_with('{') || t == g)
}

/// `text` with its `%XX` escapes decoded, as the router gives a path parameter.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The problem for a request the route could not parse: 422 naming every invalid field, or
/// 400 `invalid_json` for a body that is not JSON at all; `None` for any other error.
/// poem-openapi's own error is the fallback, for what the spec does not say.
pub(crate) fn parse_problem(spec: &Spec, sent: &Sent, error: &poem::Error) -> Option<Problem> {
    use poem_openapi::error::{ParseParamError, ParsePathError, ParseRequestPayloadError};
    let fallback = if let Some(e) = error.downcast_ref::<ParseParamError>() {
        field_error(e.name, plain(&e.reason))
    } else if let Some(e) = error.downcast_ref::<ParsePathError>() {
        field_error(e.name, plain(&e.reason))
    } else if let Some(e) = error.downcast_ref::<ParseRequestPayloadError>() {
        field_error("body", plain(&e.reason))
    } else {
        return None;
    };
    let Findings {
        mut errors,
        not_json,
    } = spec.check(sent);
    if let Some(why) = not_json {
        if errors.is_empty() {
            return Some(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {why}"),
            ));
        }
        errors.push(field_error("body", format!("must be JSON: {why}")));
    }
    if errors.is_empty() {
        errors.push(fallback);
    }
    Some(Problem::invalid_fields(errors))
}

/// poem-openapi's reason without its framework words: the type names it was parsing.
fn plain(reason: &str) -> String {
    let mut text = reason;
    while let Some((_, rest)) = text
        .strip_prefix("failed to parse \"")
        .and_then(|rest| rest.split_once("\": "))
    {
        text = rest;
    }
    let text = text
        .find(" (occurred while parsing")
        .map_or(text, |end| &text[..end]);
    text.trim_end_matches('.').to_owned()
}
