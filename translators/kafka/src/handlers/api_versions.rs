//! ApiVersions (key 18): advertises the table in `api_versions.rs` (on the internal listener,
//! only the part of it served there).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use crate::api_versions::{served_internally, SUPPORTED};

/// The answer on a client listener, or on the internal listener when `internal`.
pub fn handle_for(internal: bool) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = SUPPORTED
        .iter()
        .filter(|(key, _, _)| !internal || served_internally(*key))
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    response
}

/// What Kafka answers to an ApiVersions request of a version it does not know: a v0 response
/// with UNSUPPORTED_VERSION and the supported table, so the client can retry with a known version.
pub fn unsupported(internal: bool) -> ApiVersionsResponse {
    let mut response = handle_for(internal);
    response.error_code = ResponseError::UnsupportedVersion.code();
    response
}
