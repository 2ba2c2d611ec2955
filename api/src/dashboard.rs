//! The dashboard: a page and its script and style, compiled into the binary from
//! `api/dashboard/` (plain files, no build step), served at `/`. The script uses only the
//! public API under `/api/v1` and its event stream, with the token the operator signs in
//! with (kept in the tab's `sessionStorage`, sent as `Authorization`, never in a URL).
//!
//! Every answer carries a strict Content-Security-Policy: nothing but this origin's own
//! script, style and API, no inline script or style, no frames, no forms posting elsewhere.
//! The assets are revalidated by their ETag (a digest of their bytes), so a new release is
//! picked up on the next load and an unchanged one costs a 304.

use std::sync::OnceLock;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, Request, Response, Result};
use sha2::{Digest, Sha256};

/// What the browser may load and where it may connect: this origin only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../dashboard/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../dashboard/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../dashboard/app.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../dashboard/favicon.svg"),
    },
];

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.body.as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// Serves the dashboard's files; anything else under it is a 404 problem.
pub struct Dashboard;

impl Endpoint for Dashboard {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let path = match req.uri().path() {
            "/index.html" => "/",
            path => path,
        };
        let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
            return Ok(crate::problem::problem_response(
                &crate::problem::Problem::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("nothing is served at {path:?}"),
                ),
            ));
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(crate::problem::problem_response(
                &crate::problem::Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "the dashboard's files are only read (GET)",
                ),
            ));
        }
        let asset = &ASSETS[index];
        let etag = &etags()[index];
        let fresh = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
        let mut response = if fresh {
            Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .finish()
        } else {
            Response::builder()
                .content_type(asset.content_type)
                .body(asset.body)
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if let Ok(value) = HeaderValue::from_str(etag) {
            headers.insert(header::ETAG, value);
        }
        Ok(response)
    }
}
