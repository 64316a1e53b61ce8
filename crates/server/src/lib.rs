//! HTTP API, auth, roles, envelopes, exports, metrics and web UI.
