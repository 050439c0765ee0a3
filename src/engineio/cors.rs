//! CORS headers for polling responses, as the `cors` npm package (which the
//! official server uses) writes them.

use crate::http::{Headers, RequestHead, ResponseHead};

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigin {
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Echo whatever origin asks.
    Reflect,
    /// Echo the origin if it is one of these.
    List(Vec<String>),
}

/// CORS options (the `cors` option of the official server).
///
/// ```
/// use wsio::engineio::{Cors, CorsOrigin};
/// let cors = Cors::new(CorsOrigin::List(vec!["https://example.com".into()])).credentials(true);
/// assert!(cors.credentials);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cors {
    /// Allowed origins.
    pub origin: CorsOrigin,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods` of preflight answers.
    pub methods: String,
    /// `Access-Control-Allow-Headers`; `None` reflects the request's.
    pub allowed_headers: Option<String>,
    /// `Access-Control-Expose-Headers`.
    pub exposed_headers: Option<String>,
    /// `Access-Control-Max-Age`, in seconds.
    pub max_age: Option<u32>,
}

impl Cors {
    /// The `cors` package's defaults with the given origins.
    pub fn new(origin: CorsOrigin) -> Self {
        Cors {
            origin,
            credentials: false,
            methods: "GET,HEAD,PUT,PATCH,POST,DELETE".into(),
            allowed_headers: None,
            exposed_headers: None,
            max_age: None,
        }
    }

    /// Sets [`credentials`](Self::credentials).
    pub fn credentials(mut self, on: bool) -> Self {
        self.credentials = on;
        self
    }

    fn origin_headers(&self, req: &RequestHead, h: &mut Headers) {
        match &self.origin {
            CorsOrigin::Any => h.push("Access-Control-Allow-Origin", "*"),
            CorsOrigin::Reflect => {
                if let Some(o) = req.headers.get("origin") {
                    h.push("Access-Control-Allow-Origin", o);
                }
                h.push("Vary", "Origin");
            }
            CorsOrigin::List(list) => {
                if let Some(o) = req
                    .headers
                    .get_str("origin")
                    .filter(|o| list.iter().any(|a| a == o))
                {
                    h.push("Access-Control-Allow-Origin", o);
                }
                h.push("Vary", "Origin");
            }
        }
        if self.credentials {
            h.push("Access-Control-Allow-Credentials", "true");
        }
    }

    /// Adds the headers of an actual (non-preflight) response.
    pub fn apply(&self, req: &RequestHead, res: &mut ResponseHead) {
        self.origin_headers(req, &mut res.headers);
        if let Some(e) = &self.exposed_headers {
            res.headers.push("Access-Control-Expose-Headers", e);
        }
    }

    /// The 204 answer to a preflight `OPTIONS` request.
    pub fn preflight(&self, req: &RequestHead) -> ResponseHead {
        let mut res = ResponseHead::new(204);
        self.origin_headers(req, &mut res.headers);
        res.headers
            .push("Access-Control-Allow-Methods", &self.methods);
        match &self.allowed_headers {
            Some(a) => res.headers.push("Access-Control-Allow-Headers", a),
            None => {
                if let Some(r) = req.headers.get("access-control-request-headers") {
                    res.headers.push("Access-Control-Allow-Headers", r);
                }
                res.headers.push("Vary", "Access-Control-Request-Headers");
            }
        }
        if let Some(m) = self.max_age {
            res.headers.push("Access-Control-Max-Age", m.to_string());
        }
        if let Some(e) = &self.exposed_headers {
            res.headers.push("Access-Control-Expose-Headers", e);
        }
        res.headers.push("Content-Length", "0");
        res
    }
}
