//! JSON-RPC on the wire: the body of `POST /rpc/{chain}` (one request or a
//! batch), error responses, and the code each gateway refusal answers with.

use moat_common_types::Error;
/// JSON-RPC error codes, kept beside the error table in common-types.
pub use moat_common_types::error::json_rpc as codes;
use serde_json::{Value, json};

/// One request object of a JSON-RPC body: the id to answer with, and the
/// method and params, or why the object is not a request.
#[derive(Debug)]
pub struct Request {
    pub id: Value,
    pub call: Result<(String, Value), Error>,
}

/// A JSON-RPC body: one request or a batch.
#[derive(Debug)]
pub enum Body {
    One(Request),
    Batch(Vec<Request>),
}

/// Parses a JSON-RPC body. A body that is not UTF-8 JSON, or a batch that
/// is empty or longer than `max_batch`, is refused whole with its JSON-RPC
/// code; an object that is not a request is refused on its own.
pub fn parse_body(body: &[u8], max_batch: usize) -> Result<Body, (i64, Error)> {
    let refuse = |code, message: String| (code, Error::invalid_argument(message));
    let text = std::str::from_utf8(body).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not JSON: {e}")))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() || items.len() > max_batch {
                return Err(refuse(
                    codes::INVALID_REQUEST,
                    format!("batch of {} calls: expected 1 to {max_batch}", items.len()),
                ));
            }
            Ok(Body::Batch(items.into_iter().map(request).collect()))
        }
        item => Ok(Body::One(request(item))),
    }
}

fn request(mut item: Value) -> Request {
    let id = item.get_mut("id").map_or(Value::Null, Value::take);
    let method = item.get("method").and_then(Value::as_str).map(str::to_owned);
    let call = match (method, item.get_mut("params")) {
        (None, _) => Err(Error::invalid_argument("request has no \"method\" string")),
        (Some(method), None | Some(Value::Null)) => Ok((method, json!([]))),
        (Some(method), Some(params @ (Value::Array(_) | Value::Object(_)))) => Ok((method, params.take())),
        (Some(_), Some(other)) => Err(Error::invalid_argument(format!(
            "\"params\" is {}: expected an array or an object",
            json_kind(other)
        ))),
    };
    Request { id, call }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON-RPC error response for `id`.
pub fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The JSON-RPC code answering a gateway refusal.
pub fn json_rpc_code(error: &Error) -> i64 {
    error.code.json_rpc_code()
}
