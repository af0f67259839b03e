//! statusd: a credential status service for the IETF OAuth Token Status List (JWT and CWT
//! Status List Tokens) and the W3C Bitstring Status List v1.0.
//!
//! # Module map
//!
//! | module        | owns                                                                    |
//! |---------------|-------------------------------------------------------------------------|
//! | [`status`]    | the status model (roaring bit-planes) and every codec: bit packing, the  |
//! |               | sparse ZLIB/GZIP writer, IETF JSON/CBOR, W3C `encodedList`, roaring form |
//! | [`token`]     | keys (ES256, Ed25519), JWS/JWT, COSE_Sign1/CWT, `vc+jwt`, JWKS           |
//! | [`cert`]      | the signing key's X.509 chain: leaf checks, validation up to a trust anchor |
//! | [`anchor`]    | a token's own chain (`x5c` / `x5chain`) → validated to the caller's anchors → key |
//! | [`keyfile`]   | the signing key file: read at start, checked before every signing pass   |
//! | [`pkcs11`]    | signing keys in a PKCS#11 token (HSM): URI, PIN file, session, reconnect |
//! | [`clock`]     | this replica's clock against Redis's `TIME`; signing pauses beyond a bound |
//! | [`store`]     | the source of truth: embedded (redb) and Redis, lists and the issuer registry |
//! | [`snapshot`]  | the immutable published [`snapshot::Snapshot`], its pure builder, the    |
//! |               | readiness latch ([`snapshot::SyncState`]) and the copy kept on disk      |
//! | [`refresh`]   | store → rebuild changed lists off the async threads → publish            |
//! | [`retire`]    | lists whose credentials all expired: retired (410), data deleted later   |
//! | [`runtime`]   | background work beside the listeners: shutdown signal, lowered priority  |
//! | [`consistency`] | sample the published snapshot against the store, count mismatches      |
//! | [`problem`]   | every HTTP error of both planes as one closed enum → RFC 9457 problem+json |
//! | [`routes`]    | the public URL scheme: paths and media types, built by the builder and   |
//! |               | the issuer, parsed by the router                                         |
//! | [`wire`]      | HTTP plumbing both planes share: head checks, limits, body reader,       |
//! |               | strict JSON                                                              |
//! | [`http`]      | the public plane: service and load shedding, routing over the parsed     |
//! |               | path, responses (the 304 logic once), batch lookups, negotiation         |
//! | [`admin`]     | the admin plane: metrics, liveness, readiness, the issuer API (`/v1`)    |
//! |               | and its command-line client, bulk import included (`admin::import`)      |
//! | [`issuer`]    | credential registration, index allocation, holds, revocation, reissue, audit |
//! | [`server`]    | listeners: accept loop, limits, first-request deadline and displacement  |
//! |               | of silent connections (`server::guard`), HTTP/1.1 + HTTP/2, graceful drain |
//! | [`tls`]       | listener TLS (reloadable, mutual TLS on the admin plane), https clients  |
//! | [`metrics`]   | every metric, declared once, label handles resolved at start-up          |
//! | [`config`]    | flags and `STATUSD_*` variables parsed once into a typed [`config::Config`] |
//! | [`app`]       | wiring: store, key, demo data, refresher, listeners, shutdown            |
//! | [`inspect`]   | decode and verify any published artefact (`statusd inspect`)             |
//! | [`cli`]       | the command line                                                         |
//! | [`progress`]  | progress bars of the long command-line jobs (stderr, terminals only)     |
//! | [`w3c_proof`] | Data Integrity proofs on the W3C views (ecdsa-rdfc-2019, eddsa-rdfc-2022), |
//! |               | RDFC-1.0 with bundled contexts, the issuer's controller document         |
//! | [`verifier`]  | the relying party's check: credential → cached list fetch → verify → entry |
//!
//! # Flows
//!
//! **Request** (public plane): hyper → [`http::Public`] → one `ArcSwap` load of the current
//! snapshot → one parse of the path ([`routes::Target`]) → route `match` → clone prebuilt `Bytes` and headers (or, for a lookup,
//! read the bitmaps and write ~70 bytes of JSON). No I/O, no locks, no signing.
//!
//! **Refresh**: the store signals a change (or a 1 s tick) → [`refresh::Refresher`] compares
//! list versions with the published snapshot → rebuilds the changed lists (and those whose
//! tokens reached half their lifetime) on the blocking pool → publishes one new snapshot that
//! shares every unchanged list by `Arc`. Re-encodings (changed lists, re-signing) run in the
//! background and are attached to the published snapshot as soon as they finish, without
//! asking the store again. It signs only while the signing key is usable (the key
//! file still holds it, or the PKCS#11 token still signs with it: [`keyfile`], [`pkcs11`]) and
//! its certificate still vouches for it ([`cert`]) and its clock is close to the store's
//! ([`clock`]); otherwise lookups keep following the store
//! while the last signed tokens age: shorter `Cache-Control`, then 503 before their `exp`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod anchor;
pub mod app;
pub mod cert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consistency;
pub mod demo;
pub mod http;
pub mod inspect;
pub mod issuer;
pub mod keyfile;
pub mod metrics;
pub mod pkcs11;
pub mod problem;
pub mod progress;
pub mod refresh;
pub mod retire;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod tls;
pub mod token;
pub mod verifier;
pub mod w3c_proof;
pub mod wire;
