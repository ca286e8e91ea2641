//! One error-code type for every service boundary, mapped to gRPC and HTTP
//! status in exactly one place.

use std::fmt;

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    Unavailable,
    DeadlineExceeded,
    Cancelled,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::PermissionDenied,
        ErrorCode::Unauthenticated,
        ErrorCode::ResourceExhausted,
        ErrorCode::FailedPrecondition,
        ErrorCode::Aborted,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Cancelled,
        ErrorCode::Internal,
    ];

    /// The numeric gRPC status code (`google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorCode::Cancelled => 1,
            ErrorCode::InvalidArgument => 3,
            ErrorCode::DeadlineExceeded => 4,
            ErrorCode::NotFound => 5,
            ErrorCode::AlreadyExists => 6,
            ErrorCode::PermissionDenied => 7,
            ErrorCode::ResourceExhausted => 8,
            ErrorCode::FailedPrecondition => 9,
            ErrorCode::Aborted => 10,
            ErrorCode::Internal => 13,
            ErrorCode::Unavailable => 14,
            ErrorCode::Unauthenticated => 16,
        }
    }

    /// The HTTP status answering the same failure.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists | ErrorCode::Aborted => 409,
            ErrorCode::FailedPrecondition => 412,
            ErrorCode::ResourceExhausted => 429,
            // 499 is the de-facto "client closed request" code (nginx).
            ErrorCode::Cancelled => 499,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
        }
    }

    /// The JSON-RPC error code answering the same refusal at `POST /rpc/{chain}`.
    pub fn json_rpc_code(self) -> i64 {
        match self {
            ErrorCode::PermissionDenied => json_rpc::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidArgument => json_rpc::INVALID_PARAMS,
            ErrorCode::ResourceExhausted => json_rpc::LIMIT_EXCEEDED,
            ErrorCode::FailedPrecondition => json_rpc::INVALID_REQUEST,
            _ => json_rpc::INTERNAL,
        }
    }

    /// The inverse of [`ErrorCode::grpc_code`], for statuses coming back from
    /// another moat service. Codes moat never produces map to `Internal`.
    pub fn from_grpc_code(code: i32) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.grpc_code() == code)
            .unwrap_or(ErrorCode::Internal)
    }

    /// Stable snake_case name used in logs, metrics labels and JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::Aborted => "aborted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether repeating the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::ResourceExhausted
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that crosses a service boundary: a code and a message written for
/// the client. Internal causes go to the log, not into `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Unavailable, message)
    }
}

/// JSON-RPC error codes the gateway answers with itself (JSON-RPC 2.0's
/// reserved codes, and EIP-1474's limit code).
pub mod json_rpc {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_ALLOWED: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const LIMIT_EXCEEDED: i64 = -32005;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rpc_codes_are_json_rpc_errors() {
        for code in ErrorCode::ALL {
            let c = code.json_rpc_code();
            assert!(
                (-32768..=-32000).contains(&c),
                "{code}: {c} is outside JSON-RPC's error range"
            );
        }
        assert_eq!(ErrorCode::PermissionDenied.json_rpc_code(), -32601);
        assert_eq!(ErrorCode::ResourceExhausted.json_rpc_code(), -32005);
    }

    #[test]
    fn grpc_codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.grpc_code()), "duplicate grpc code for {code}");
            assert_eq!(ErrorCode::from_grpc_code(code.grpc_code()), code);
        }
        assert_eq!(ErrorCode::from_grpc_code(12), ErrorCode::Internal);
    }

    #[test]
    fn http_status_matches_the_usual_meaning() {
        let cases = [
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::Unauthenticated, 401),
            (ErrorCode::PermissionDenied, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::ResourceExhausted, 429),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::DeadlineExceeded, 504),
        ];
        for (code, status) in cases {
            assert_eq!(code.http_status(), status, "{code}");
        }
        for code in ErrorCode::ALL {
            assert!(
                (400..600).contains(&code.http_status()),
                "{code} is not an error status"
            );
        }
    }
}
