//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded to JSON.

use axum::body::Bytes;
use serde_json::Value;

use crate::resources::ResourceType;
use crate::status::ApiError;

/// Decode a protobuf body into the JSON form of the object.
pub fn decode(_body: &Bytes, _rt: &ResourceType) -> Result<Value, ApiError> {
    Err(ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf"))
}
