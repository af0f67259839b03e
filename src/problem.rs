//! Every error the HTTP planes return, as one closed enum mapped to RFC 9457 problem+json here
//! and nowhere else.
//!
//! Problem `type`s are `urn:statusd:problem:<slug>` (stable identifiers, documented in the
//! README); on the W3C routes, errors the REC names use its URLs
//! (`https://www.w3.org/ns/credentials/status-list#<CODE>`). Details never echo credential
//! indices or request bodies.

use crate::issuer::{ItemError, ItemProblem};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use std::borrow::Cow;

/// `Cache-Control` of the 410 a retired list answers: a day, shared caches included.
pub const RETIRED_CACHE_CONTROL: &str = "public, max-age=86400";

/// The media types a route offers, for 406 answers.
pub type Offered = &'static [&'static str];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// 400: the list id in the path is not a valid id.
    BadListId,
    /// 400: the index in the path is not a canonical decimal integer.
    BadIndex,
    /// 400: the request body is not what the route expects.
    BadBody(String),
    /// 404: no route has this path.
    NoRoute,
    /// 404: the list does not exist (on W3C routes: STATUS_RETRIEVAL_ERROR).
    UnknownList { w3c: bool },
    /// 410: the list is retired: every credential in it expired ([`crate::retire`]). Cacheable,
    /// since a list never comes back.
    ListRetired,
    /// 404: the W3C purpose is not published.
    UnknownPurpose,
    /// 404: an index at or beyond the list size (IETF: the RP must reject; W3C: RANGE_ERROR).
    IndexOutOfRange { size: u32 },
    /// 405, with the methods the path allows.
    MethodNotAllowed { allow: &'static str },
    /// 406, listing what the route offers.
    NotAcceptable { offered: Offered },
    /// 413: body or batch larger than allowed.
    TooLarge { what: &'static str, limit: usize },
    /// 415: POST body that is not JSON.
    UnsupportedMediaType,
    /// 431: request headers larger than allowed.
    HeadersTooLarge { limit: usize },
    /// 400: hyper could not parse the request line or a header field (see `server::guard`).
    MalformedRequest,
    /// 414: the request target is past hyper's buffer (see `server::guard`).
    UriTooLong,
    /// 400: an HTTP/1.1 request without exactly one valid `Host` field (RFC 9112 §3.2).
    BadHost(&'static str),
    /// 400: a JSON request body names one key twice in an object (either plane).
    DuplicateJsonKey(String),
    /// 400: a field that may appear once appears more than once.
    RepeatedField(&'static str),
    /// 501: a transfer coding other than `chunked` (RFC 9112 §6.1).
    UnsupportedTransferEncoding,
    /// 415: a request body with a content coding (only identity is accepted).
    UnsupportedContentEncoding,
    /// 501: historical resolution (`?time=`) is disabled, as draft §12.7 recommends.
    HistoryNotSupported,
    /// 503: no snapshot published yet.
    NotReady,
    /// 503 (readiness only): serving, but not synchronised with the store for too long.
    Stale,
    /// 401: missing or malformed credentials on the admin plane.
    Unauthorized,
    /// 403: valid credentials without the needed scope.
    Forbidden { scope: &'static str },
    /// 401: the issuer API is off because no admin tokens are configured.
    AdminDisabled,
    /// An issuer operation failed (status from [`ItemError::status`]).
    Issuer(ItemProblem),
    /// 422: items of a batch failed validation; nothing was applied.
    BatchInvalid(Vec<(usize, ItemProblem)>),
    /// 503: the source of truth cannot be reached (with `Retry-After`).
    StoreUnavailable(String),
    /// 503: the public plane already holds its most requests in flight (with `Retry-After`).
    Overloaded,
    /// 408: a batch lookup body did not arrive within the read timeout.
    BodyTimeout,
    /// 410: no delta from the version asked for (statusd's extension): fetch the list instead.
    /// `list` is the list's id.
    DeltaUnavailable {
        reason: crate::snapshot::delta::Unavailable,
        list: String,
    },
    /// 400: the version in a delta's path is not a canonical decimal integer.
    BadVersion,
    /// 503: signing is paused and the list's last signed token is too close to its `exp` to
    /// serve (with `Retry-After`); lookups still answer.
    SigningUnavailable,
}

impl Problem {
    pub fn status(&self) -> StatusCode {
        use Problem::*;
        match self {
            DeltaUnavailable { .. } => StatusCode::GONE,
            BadListId | BadIndex | BadVersion | BadBody(_) | MalformedRequest | BadHost(_)
            | RepeatedField(_) | DuplicateJsonKey(_) => StatusCode::BAD_REQUEST,
            UriTooLong => StatusCode::URI_TOO_LONG,
            UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            UnsupportedContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NoRoute | UnknownList { .. } | UnknownPurpose | IndexOutOfRange { .. } => {
                StatusCode::NOT_FOUND
            }
            ListRetired => StatusCode::GONE,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HistoryNotSupported => StatusCode::NOT_IMPLEMENTED,
            NotReady | Stale => StatusCode::SERVICE_UNAVAILABLE,
            Unauthorized | AdminDisabled => StatusCode::UNAUTHORIZED,
            Forbidden { .. } => StatusCode::FORBIDDEN,
            Issuer(p) => p.error.status(),
            BatchInvalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreUnavailable(_) | Overloaded | SigningUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn type_uri(&self) -> Cow<'static, str> {
        use Problem::*;
        Cow::Borrowed(match self {
            Issuer(p) => return Cow::Owned(p.type_uri()),
            AdminDisabled => "urn:statusd:problem:admin-disabled",
            BatchInvalid(_) => "urn:statusd:problem:batch-invalid",
            StoreUnavailable(_) => "urn:statusd:problem:store-unavailable",
            Overloaded => "urn:statusd:problem:overloaded",
            SigningUnavailable => "urn:statusd:problem:signing-unavailable",
            BodyTimeout => "urn:statusd:problem:body-timeout",
            BadListId => "urn:statusd:problem:bad-list-id",
            DeltaUnavailable { .. } => "urn:statusd:problem:delta-unavailable",
            BadVersion => "urn:statusd:problem:bad-version",
            MalformedRequest => "urn:statusd:problem:malformed-request",
            UriTooLong => "urn:statusd:problem:uri-too-long",
            BadHost(_) => "urn:statusd:problem:bad-host",
            RepeatedField(_) => "urn:statusd:problem:repeated-field",
            DuplicateJsonKey(_) => "urn:statusd:problem:duplicate-json-key",
            UnsupportedTransferEncoding => "urn:statusd:problem:unsupported-transfer-encoding",
            UnsupportedContentEncoding => "urn:statusd:problem:unsupported-content-encoding",
            BadIndex => "urn:statusd:problem:bad-index",
            BadBody(_) => "urn:statusd:problem:bad-body",
            NoRoute => "urn:statusd:problem:no-route",
            UnknownList { w3c: true } => {
                "https://www.w3.org/ns/credentials/status-list#STATUS_RETRIEVAL_ERROR"
            }
            UnknownList { w3c: false } => "urn:statusd:problem:unknown-list",
            ListRetired => "urn:statusd:problem:list-retired",
            UnknownPurpose => "urn:statusd:problem:unknown-purpose",
            IndexOutOfRange { .. } => "urn:statusd:problem:index-out-of-range",
            MethodNotAllowed { .. } => "urn:statusd:problem:method-not-allowed",
            NotAcceptable { .. } => "urn:statusd:problem:not-acceptable",
            TooLarge { .. } => "urn:statusd:problem:too-large",
            UnsupportedMediaType => "urn:statusd:problem:unsupported-media-type",
            HeadersTooLarge { .. } => "urn:statusd:problem:headers-too-large",
            HistoryNotSupported => "urn:statusd:problem:history-not-supported",
            NotReady => "urn:statusd:problem:not-ready",
            Stale => "urn:statusd:problem:stale",
            Unauthorized => "urn:statusd:problem:unauthorized",
            Forbidden { .. } => "urn:statusd:problem:forbidden",
        })
    }

    fn title(&self) -> &'static str {
        use Problem::*;
        match self {
            BadListId => "Malformed list id",
            DeltaUnavailable { .. } => "Delta unavailable",
            BadVersion => "Malformed version",
            MalformedRequest => "Malformed request",
            UriTooLong => "Request target too long",
            BadHost(_) => "Missing or invalid Host",
            RepeatedField(_) => "Repeated header field",
            DuplicateJsonKey(_) => "Duplicate JSON key",
            UnsupportedTransferEncoding => "Transfer coding not implemented",
            UnsupportedContentEncoding => "Unsupported content coding",
            BadIndex => "Malformed index",
            BadBody(_) => "Malformed request body",
            NoRoute => "No such resource",
            UnknownList { .. } => "Unknown status list",
            ListRetired => "Status list retired",
            UnknownPurpose => "Unknown status purpose",
            IndexOutOfRange { .. } => "Index out of range",
            MethodNotAllowed { .. } => "Method not allowed",
            NotAcceptable { .. } => "No acceptable representation",
            TooLarge { .. } => "Request too large",
            UnsupportedMediaType => "Unsupported media type",
            HeadersTooLarge { .. } => "Request headers too large",
            HistoryNotSupported => "Historical resolution not supported",
            NotReady => "Not ready",
            Stale => "Stale",
            Unauthorized | AdminDisabled => "Unauthorized",
            Forbidden { .. } => "Forbidden",
            Issuer(p) => match p.error.status().as_u16() {
                400 => "Invalid operation",
                404 => "Unknown credential",
                422 => "Invalid relationship",
                503 => "Temporarily unavailable",
                410 => "List retired",
                507 => "Insufficient storage",
                500 => "Internal error",
                _ => "Conflict with the credential's state",
            },
            BatchInvalid(_) => "Invalid batch",
            StoreUnavailable(_) => "Source of truth unavailable",
            Overloaded => "Overloaded",
            SigningUnavailable => "Signing unavailable",
            BodyTimeout => "Request body timeout",
        }
    }

    fn detail(&self) -> String {
        use Problem::*;
        match self {
            BadListId => "list ids are 1 to 64 characters from A-Z a-z 0-9 - _".into(),
            BadVersion => "versions are non-negative decimal integers without sign or leading zeros".into(),
            DeltaUnavailable { reason, .. } => {
                use crate::snapshot::delta::Unavailable::*;
                match reason {
                    Ahead => "this version is newer than the list served here; fetch the list",
                    Unknown => "this server never held this version of the list; fetch the list",
                    TooOld => "this version is older than the changes kept for deltas; fetch the list",
                    TooLarge => "the delta from this version would not be smaller than the list; fetch the list",
                }
                .into()
            }
            BadIndex => "indices are non-negative decimal integers without sign or leading zeros".into(),
            BadBody(why) => why.clone(),
            NoRoute => "see the README for the routes this server offers".into(),
            UnknownList { .. } => "no status list with this id is published".into(),
            ListRetired => "this status list is retired: every credential it held has expired, so it is no longer published; its indices are never reused".into(),
            UnknownPurpose => "published purposes are revocation, suspension and message".into(),
            IndexOutOfRange { size } => format!("the list has {size} entries (indices 0 to {})", size.saturating_sub(1)),
            MethodNotAllowed { allow } => format!("allowed methods: {allow}"),
            NotAcceptable { offered } => format!("offered media types: {}", offered.join(", ")),
            TooLarge { what, limit } => format!("{what} is limited to {limit}"),
            UnsupportedMediaType => "send the body as application/json".into(),
            HeadersTooLarge { limit } => format!("request headers are limited to {limit} bytes and 100 fields"),
            MalformedRequest => "the request line or a header field is not valid HTTP/1.1 (RFC 9112)".into(),
            UriTooLong => "the request target is too long".into(),
            BadHost(why) => (*why).into(),
            RepeatedField(name) => format!("the {name} field may appear only once"),
            DuplicateJsonKey(why) => why.clone(),
            UnsupportedTransferEncoding => "only the chunked transfer coding is implemented".into(),
            UnsupportedContentEncoding => "send the request body without a Content-Encoding".into(),
            HistoryNotSupported => "the time parameter is not supported: historical status lists are disabled for privacy".into(),
            NotReady => "no status snapshot has been published yet".into(),
            Stale => "serving the last good snapshot, but the source of truth has not been reached within the staleness limit".into(),
            Unauthorized => "send Authorization: Bearer <token>".into(),
            Forbidden { scope } => format!("this operation needs the {scope:?} scope"),
            AdminDisabled => "the issuer API is disabled: no admin tokens are configured (STATUSD_ADMIN_TOKENS)".into(),
            Issuer(p) => p.detail.clone(),
            BatchInvalid(errors) => format!("{} item(s) are invalid (see errors); nothing was applied", errors.len()),
            StoreUnavailable(why) => why.clone(),
            Overloaded => "too many requests in flight; retry shortly".into(),
            SigningUnavailable => "this list's token is about to expire and cannot be re-signed at the moment; retry later (per-credential lookups still answer)".into(),
            BodyTimeout => "the request body did not arrive in time".into(),
        }
    }

    /// The problem+json response. CORS stays open so browser verifiers can read errors too.
    ///
    /// Cold: the compiler lays the error branches that end here out of the request path's
    /// way, so a served answer runs through fewer instruction cache lines (issue #18).
    #[cold]
    pub fn response(&self) -> Response<Full<Bytes>> {
        let status = self.status();
        let mut body = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        if let Problem::DeltaUnavailable { reason, list } = self {
            body["reason"] = reason.slug().into();
            body["list"] = format!("/{}/{list}", crate::routes::STATUS_LISTS).into();
        }
        if let Problem::BatchInvalid(errors) = self {
            body["errors"] = errors
                .iter()
                .map(|(index, p)| {
                    serde_json::json!({
                        "index": index,
                        "type": p.type_uri(),
                        "detail": p.detail,
                    })
                })
                .collect();
        }
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(match self {
                // Retirement is for good: caches and the CDN may keep the answer.
                Problem::ListRetired => RETIRED_CACHE_CONTROL,
                _ => "no-store",
            }),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        match self {
            Problem::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Problem::UnsupportedContentEncoding => {
                h.insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static("identity"),
                );
            }
            Problem::Unauthorized | Problem::AdminDisabled => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"statusd-admin\""),
                );
            }
            Problem::NotReady | Problem::StoreUnavailable(_) | Problem::Overloaded => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Problem::Issuer(p) if p.error.status() == StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The list is the answer: linked, and (unless the version is ahead of this replica,
            // which changes as it catches up) cacheable like the answer it stands for.
            Problem::DeltaUnavailable { reason, list } => {
                let link = format!(
                    "</{}/{list}>; rel=\"alternate\"",
                    crate::routes::STATUS_LISTS
                );
                if let Ok(link) = HeaderValue::try_from(link) {
                    h.insert(header::LINK, link);
                }
                use crate::snapshot::delta::Unavailable::{Ahead, Unknown};
                // Another replica, or this one later, may serve these.
                if !matches!(reason, Ahead | Unknown) {
                    h.insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=60"),
                    );
                }
            }
            // Signing waits for an operator to restore the key file: not a matter of seconds.
            Problem::SigningUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            _ => {}
        }
        resp
    }
}

/// The issuer's item errors on the wire: their problem `type` and HTTP status, alone in a
/// response or as an item's `error` in a batch.
impl ItemError {
    /// The slug of the problem type `urn:statusd:problem:<slug>` (also the `result` label of the
    /// issuer operations counter).
    pub fn slug(self) -> &'static str {
        use ItemError::*;
        match self {
            BadItem => "bad-item",
            UnknownCredential => "unknown-credential",
            UnknownParent => "unknown-parent",
            ParentNotPhysical => "parent-not-physical",
            Cycle => "cycle",
            UnknownPool => "unknown-pool",
            StoreUnavailable => "store-unavailable",
            Contention => "contention",
            NotReplicated => "not-replicated",
            InsufficientStorage => "insufficient-storage",
            Corrupt => "corrupt",
            Terminal => "terminal",
            NotSuspendable => "not-suspendable",
            ParentRevoked => "parent-revoked",
            AlreadyReissued => "already-reissued",
            RegistrationConflict => "registration-conflict",
            DuplicateInBatch => "duplicate-in-batch",
            ListFull => "list-full",
            RegisteredConcurrently => "registered-concurrently",
            ListExists => "list-exists",
            ListLimit => "list-limit",
            ListRetired => "list-retired",
        }
    }

    /// The HTTP status when this is a request's only operation (in a batch: the item's
    /// `status`).
    pub fn status(self) -> StatusCode {
        use ItemError::*;
        match self {
            BadItem => StatusCode::BAD_REQUEST,
            UnknownCredential => StatusCode::NOT_FOUND,
            UnknownParent | ParentNotPhysical | Cycle | UnknownPool => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            StoreUnavailable | Contention | NotReplicated => StatusCode::SERVICE_UNAVAILABLE,
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
            Terminal
            | NotSuspendable
            | ParentRevoked
            | AlreadyReissued
            | RegistrationConflict
            | DuplicateInBatch
            | ListFull
            | RegisteredConcurrently
            | ListExists
            | ListLimit => StatusCode::CONFLICT,
            ListRetired => StatusCode::GONE,
        }
    }
}

impl ItemProblem {
    /// `urn:statusd:problem:<slug>`.
    pub fn type_uri(&self) -> String {
        format!("urn:statusd:problem:{}", self.error.slug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_rfc9457_json() {
        let r = Problem::MethodNotAllowed { allow: "GET, HEAD" }.response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let r = Problem::Overloaded.response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            Problem::Overloaded.type_uri(),
            "urn:statusd:problem:overloaded"
        );
        assert_eq!(Problem::BodyTimeout.status(), 408);
        let full = Problem::Issuer(ItemProblem::from(crate::store::StoreError::Full(
            "No space left on device".into(),
        )))
        .response();
        assert_eq!(full.status(), 507);
        assert!(full.headers().get(header::RETRY_AFTER).is_none());
        let unconfirmed =
            Problem::Issuer(ItemProblem::from(crate::store::StoreError::NotReplicated {
                acked: 0,
                wanted: 1,
            }));
        assert_eq!(unconfirmed.type_uri(), "urn:statusd:problem:not-replicated");
        let unconfirmed = unconfirmed.response();
        assert_eq!(unconfirmed.status(), 503);
        assert_eq!(unconfirmed.headers()[header::RETRY_AFTER], "1");
        let gone = Problem::ListRetired.response();
        assert_eq!(gone.status(), 410);
        assert_eq!(gone.headers()[header::CACHE_CONTROL], RETIRED_CACHE_CONTROL);
        assert_eq!(
            Problem::Issuer(ItemProblem::new(ItemError::ListRetired, "x")).status(),
            410
        );
        let w3c = Problem::UnknownList { w3c: true };
        assert!(w3c.type_uri().ends_with("#STATUS_RETRIEVAL_ERROR"));
    }
}
