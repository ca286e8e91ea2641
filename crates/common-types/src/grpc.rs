//! gRPC glue: [`Error`] to `tonic::Status` and back, and W3C trace context
//! in gRPC metadata. The code mapping itself lives in [`crate::error`].

use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use crate::error::{Error, ErrorCode};

pub fn to_status(error: &Error) -> tonic::Status {
    tonic::Status::new(tonic::Code::from(error.code.grpc_code()), error.message.clone())
}

pub fn from_status(status: &tonic::Status) -> Error {
    Error::new(ErrorCode::from_grpc_code(status.code() as i32), status.message())
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        to_status(&error)
    }
}

/// Writes the current span's trace context into outgoing metadata.
pub fn inject_trace(metadata: &mut MetadataMap) {
    crate::telemetry::inject(|key, value| {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    });
}

/// Parents `span` on the trace context of incoming metadata.
pub fn extract_trace(span: &tracing::Span, metadata: &MetadataMap) {
    crate::telemetry::extract(span, |key| {
        metadata.get(key).and_then(|v| v.to_str().ok()).map(str::to_owned)
    });
}

/// The server span of one gRPC call, named after its method
/// (`moat.gateway.v1.StateService/SaveState`) and parented on the caller's
/// trace context: for `tonic`'s `Server::builder().trace_fn`.
pub fn server_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let method = request.uri().path().trim_start_matches('/');
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
    );
    crate::telemetry::extract(&span, |key| {
        request
            .headers()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_and_message() {
        for code in ErrorCode::ALL {
            let error = Error::new(code, "expected version 3, current is 4");
            let status = to_status(&error);
            assert_eq!(status.code() as i32, code.grpc_code());
            assert_eq!(from_status(&status), error);
        }
    }
}
