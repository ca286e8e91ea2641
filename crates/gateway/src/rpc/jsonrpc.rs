//! JSON-RPC on the wire: the body of `POST /rpc/{chain}` (one request or a
//! batch), the body sent upstream, an upstream's answer, error responses,
//! and the code each gateway refusal answers with.
//!
//! A call's id and params are carried as the JSON text the client sent
//! (borrowed from its body), and an upstream's answer as the bytes it sent:
//! a proxied call is checked, not rebuilt, so no JSON tree is made for it.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use moat_common_types::Error;
/// JSON-RPC error codes, kept beside the error table in common-types.
pub use moat_common_types::error::json_rpc as codes;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// One request object of a JSON-RPC body: the id to answer with (`null`
/// when it has none), and the method and params (`None` when absent or
/// `null`), or why the object is not a request.
#[derive(Debug)]
pub struct Request<'a> {
    pub id: &'a RawValue,
    pub call: Result<(Cow<'a, str>, Option<&'a RawValue>), Error>,
}

/// A JSON-RPC body: one request or a batch.
#[derive(Debug)]
pub enum Body<'a> {
    One(Request<'a>),
    Batch(Vec<Request<'a>>),
}

/// Parses a JSON-RPC body. A body that is not UTF-8 JSON, or a batch that
/// is empty or longer than `max_batch`, is refused whole with its JSON-RPC
/// code; an object that is not a request is refused on its own.
pub fn parse_body(body: &[u8], max_batch: usize) -> Result<Body<'_>, (i64, Error)> {
    let refuse = |code, message: String| (code, Error::invalid_argument(message));
    let text = std::str::from_utf8(body).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not UTF-8: {e}")))?;
    if too_deep(text) {
        return Err(refuse(
            codes::PARSE_ERROR,
            "body is not JSON: recursion limit exceeded".to_owned(),
        ));
    }
    let value: &RawValue =
        serde_json::from_str(text).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not JSON: {e}")))?;
    if !value.get().starts_with('[') {
        return Ok(Body::One(request(value)));
    }
    let items: Vec<&RawValue> =
        serde_json::from_str(value.get()).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not JSON: {e}")))?;
    if items.is_empty() || items.len() > max_batch {
        return Err(refuse(
            codes::INVALID_REQUEST,
            format!("batch of {} calls: expected 1 to {max_batch}", items.len()),
        ));
    }
    Ok(Body::Batch(items.into_iter().map(request).collect()))
}

/// The deepest nesting of arrays and objects a body may have: what a JSON
/// tree parser allows (serde_json's limit). The gateway reads a call
/// without building its tree, but an upstream may build one.
const MAX_NESTING: usize = 127;

/// Whether `text` nests arrays and objects deeper than a JSON tree parser
/// allows (what the HTTP body and a gRPC call's params are held to).
pub fn too_deep(text: &str) -> bool {
    nesting(text) > MAX_NESTING
}

/// How deep arrays and objects nest in `text`, brackets inside strings not
/// counted.
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The members of a request object this gateway reads, as sent: the id
/// (`null` included), the method, and params unless `null`. A member sent
/// twice counts as its last value, as a JSON tree parser reads it.
#[derive(Default)]
struct Wire<'a> {
    id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    params: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Wire<'de>, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Id,
            Method,
            Params,
            #[serde(other)]
            Other,
        }
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Wire<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC request object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
                let mut wire = Wire::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Id => wire.id = Some(map.next_value()?),
                        Key::Method => wire.method = Some(map.next_value()?),
                        Key::Params => wire.params = map.next_value()?,
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(wire)
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A member as its JSON text, `null` included (an `Option` alone reads
/// `null` as absent).
fn raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

fn request(item: &RawValue) -> Request<'_> {
    let no_method = || Error::invalid_argument("request has no \"method\" string");
    if !item.get().starts_with('{') {
        return Request {
            id: RawValue::NULL,
            call: Err(no_method()),
        };
    }
    let wire: Wire<'_> = match serde_json::from_str(item.get()) {
        Ok(wire) => wire,
        Err(e) => {
            return Request {
                id: RawValue::NULL,
                call: Err(Error::invalid_argument(format!(
                    "request is not a JSON-RPC object: {e}"
                ))),
            };
        }
    };
    let method = wire.method.and_then(|m| match serde_json::from_str::<&str>(m.get()) {
        Ok(borrowed) => Some(Cow::Borrowed(borrowed)),
        // A string with escapes is unescaped into a copy.
        Err(_) => serde_json::from_str::<String>(m.get()).ok().map(Cow::Owned),
    });
    let call = match (method, wire.params) {
        (None, _) => Err(no_method()),
        (Some(method), params) => match params.map(|p| json_kind(p.get())) {
            None | Some("an array" | "an object") => Ok((method, params)),
            Some(other) => Err(Error::invalid_argument(format!(
                "\"params\" is {other}: expected an array or an object"
            ))),
        },
    };
    Request {
        id: wire.id.unwrap_or(RawValue::NULL),
        call,
    }
}

/// What kind of JSON value `text` (valid JSON) is, as messages name it.
pub(super) fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// The body sent upstream for one call: the client's id and params as it
/// sent them, `[]` for absent params.
pub(super) fn request_body(id: &RawValue, method: &str, params: Option<&RawValue>) -> Bytes {
    let params = params.map_or("[]", RawValue::get);
    let mut out = Vec::with_capacity(48 + id.get().len() + method.len() + params.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","method":"#);
    serde_json::to_writer(&mut out, method).expect("writing to a Vec");
    out.extend_from_slice(br#","params":"#);
    out.extend_from_slice(params.as_bytes());
    out.push(b'}');
    out.into()
}

/// An upstream's JSON-RPC response object, kept as the bytes it sent.
#[derive(Debug, Clone)]
pub struct Answer {
    bytes: Bytes,
    /// Where the response's `id`, `result` and `error` members are in
    /// `bytes`, as sent (`null` included), when present: read once, when
    /// the answer is parsed.
    id: Option<Range<usize>>,
    result: Option<Range<usize>>,
    error: Option<Range<usize>>,
}

/// The members of a response this gateway reads, as sent (`null`
/// included), when present.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(borrow, default, deserialize_with = "raw")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw")]
    error: Option<&'a RawValue>,
}

impl Answer {
    /// `bytes` as a response object, or `None` when they are not a JSON
    /// object.
    pub fn parse(bytes: Bytes) -> Option<Answer> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') || std::str::from_utf8(&bytes).is_err() {
            return None;
        }
        let members: Members<'_> = serde_json::from_slice(&bytes).ok()?;
        let base = bytes.as_ptr() as usize;
        let range = |raw: Option<&RawValue>| {
            raw.map(|raw| {
                let start = raw.get().as_ptr() as usize - base;
                start..start + raw.get().len()
            })
        };
        let (id, result, error) = (range(members.id), range(members.result), range(members.error));
        Some(Answer {
            bytes,
            id,
            result,
            error,
        })
    }

    /// The answer `{"jsonrpc":"2.0","id":id,"result":result}`, `result`
    /// being JSON text (one answer's [`Answer::result_text`]).
    pub fn result(id: &RawValue, result: &str) -> Answer {
        let mut out = Vec::with_capacity(40 + id.get().len() + result.len());
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        let start = out.len();
        out.extend_from_slice(id.get().as_bytes());
        let end = out.len();
        out.extend_from_slice(br#","result":"#);
        let result_start = out.len();
        out.extend_from_slice(result.as_bytes());
        let result_end = out.len();
        out.push(b'}');
        Answer {
            bytes: out.into(),
            id: Some(start..end),
            result: Some(result_start..result_end),
            error: None,
        }
    }

    /// Whether the upstream answered with a JSON-RPC error.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// The response as a JSON tree, for the callers that read into it;
    /// `None` when serde_json's tree parser refuses what the answer's JSON
    /// grammar allows (a lone surrogate escape, deep nesting).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_slice(&self.bytes).ok()
    }

    /// A member's JSON text. `bytes` is UTF-8 (checked by `parse`, or
    /// built from `&str`s), and a member's range lies between two of its
    /// ASCII delimiters.
    fn text(&self, range: &Option<Range<usize>>) -> Option<&str> {
        range
            .as_ref()
            .and_then(|range| std::str::from_utf8(&self.bytes[range.clone()]).ok())
    }

    /// The `result` and `error` members' JSON text as sent (`null`
    /// included), when present.
    pub fn members(&self) -> (Option<&str>, Option<&str>) {
        (self.text(&self.result), self.text(&self.error))
    }

    /// The `result` member's JSON text, unless it is absent or `null`.
    pub fn result_text(&self) -> Option<&str> {
        self.text(&self.result).filter(|r| *r != "null")
    }

    /// The response bytes answering with `id`, the client's own: passed on
    /// unchanged when the upstream echoed it as sent.
    pub fn with_id(self, id: &RawValue) -> Bytes {
        if self
            .id
            .as_ref()
            .is_some_and(|range| &self.bytes[range.clone()] == id.get().as_bytes())
        {
            return self.bytes;
        }
        let mut out = Vec::with_capacity(self.bytes.len() + id.get().len() + 8);
        match &self.id {
            Some(range) => {
                out.extend_from_slice(&self.bytes[..range.start]);
                out.extend_from_slice(id.get().as_bytes());
                out.extend_from_slice(&self.bytes[range.end..]);
            }
            None => {
                // No id: one goes in as the first member.
                let open = self.bytes.iter().position(|&b| b == b'{').unwrap_or(0);
                let rest = &self.bytes[open + 1..];
                out.extend_from_slice(&self.bytes[..=open]);
                out.extend_from_slice(br#""id":"#);
                out.extend_from_slice(id.get().as_bytes());
                if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
                    out.push(b',');
                }
                out.extend_from_slice(rest);
            }
        }
        out.into()
    }
}

/// A JSON-RPC error response for `id`.
pub fn error_response(id: &RawValue, code: i64, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(64 + id.get().len() + message.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","error":{"code":"#);
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(br#","message":"#);
    serde_json::to_writer(&mut out, message).expect("writing to a Vec");
    out.extend_from_slice(b"}}");
    out.into()
}

/// The JSON-RPC code answering a gateway refusal.
pub fn json_rpc_code(error: &Error) -> i64 {
    error.code.json_rpc_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn requests_are_read_as_sent_and_refused_by_what_is_wrong() {
        let body = br#"[
            {"jsonrpc":"2.0","id":7,"method":"eth_call","params":[{"to":"0x01"},"latest"]},
            {"id":"a","method":"eth_blockNumber"},
            {"id":null,"method":"eth_\u0062lockNumber","params":null},
            {"id":3,"method":"eth_call","params":"x"},
            {"id":4,"params":[]},
            5
        ]"#;
        let Ok(Body::Batch(requests)) = parse_body(body, 10) else {
            panic!("a batch")
        };
        let calls: Vec<_> = requests
            .iter()
            .map(|r| {
                (
                    r.id.get(),
                    r.call
                        .as_ref()
                        .map(|(m, p)| (m.as_ref(), p.map(RawValue::get)))
                        .map_err(|e| e.message.as_str()),
                )
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                ("7", Ok(("eth_call", Some(r#"[{"to":"0x01"},"latest"]"#)))),
                (r#""a""#, Ok(("eth_blockNumber", None))),
                ("null", Ok(("eth_blockNumber", None))),
                ("3", Err("\"params\" is a string: expected an array or an object")),
                ("4", Err("request has no \"method\" string")),
                ("null", Err("request has no \"method\" string")),
            ]
        );
        assert!(matches!(parse_body(br#"{"id":1,"method":"m"}"#, 10), Ok(Body::One(_))));
        // A member sent twice counts as its last value, as a tree parser reads it.
        let Ok(Body::One(twice)) = parse_body(br#"{"id":1,"method":"a","id":2,"method":"b","params":null}"#, 10) else {
            panic!("one request")
        };
        assert_eq!(
            (
                twice.id.get(),
                twice.call.map(|(m, p)| (m.into_owned(), p.map(RawValue::get)))
            ),
            ("2", Ok(("b".to_owned(), None)))
        );
        let refused = |body: &[u8]| parse_body(body, 2).err().map(|(code, e)| (code, e.message));
        assert_eq!(
            refused(b"[]"),
            Some((codes::INVALID_REQUEST, "batch of 0 calls: expected 1 to 2".into()))
        );
        assert_eq!(
            refused(b"[1,2,3]").map(|r| r.1),
            Some("batch of 3 calls: expected 1 to 2".into())
        );
        assert!(
            refused(b"{\"id\":")
                .is_some_and(|(code, m)| code == codes::PARSE_ERROR && m.starts_with("body is not JSON"))
        );
        assert!(
            refused(&[0xff]).is_some_and(|(code, m)| code == codes::PARSE_ERROR && m.starts_with("body is not UTF-8"))
        );
    }

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting(r#"{"a":[1,{"b":"[[[{"}],"c":"\\\"]]"}"#), 3);
        assert_eq!(nesting("1"), 0);
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(nesting(&deep(200)), 200);
        assert!(parse_body(deep(MAX_NESTING).as_bytes(), 10).is_ok());
        let refused = parse_body(deep(MAX_NESTING + 1).as_bytes(), 10).err().unwrap();
        assert_eq!(refused.1.message, "body is not JSON: recursion limit exceeded");
        // The limit is the one serde_json's tree parser has.
        assert!(serde_json::from_str::<Value>(&deep(MAX_NESTING)).is_ok());
        assert!(serde_json::from_str::<Value>(&deep(MAX_NESTING + 1)).is_err());
    }

    #[test]
    fn the_upstream_body_is_the_call_as_json_rpc() {
        let id: Box<RawValue> = RawValue::from_string(r#"{"n":1}"#.into()).unwrap();
        let params: Box<RawValue> = RawValue::from_string(r#"["0x1", true]"#.into()).unwrap();
        assert_eq!(
            value(&request_body(&id, "eth_getBlockByNumber", Some(&params))),
            json!({"jsonrpc":"2.0","id":{"n":1},"method":"eth_getBlockByNumber","params":["0x1",true]})
        );
        assert_eq!(
            value(&request_body(RawValue::NULL, "eth_chainId", None)),
            json!({"jsonrpc":"2.0","id":null,"method":"eth_chainId","params":[]})
        );
    }

    #[test]
    fn an_answer_goes_back_with_the_clients_own_id() {
        let id: Box<RawValue> = RawValue::from_string(r#""req-1""#.into()).unwrap();
        let echoed = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"req-1","result":"0x10"}"#);
        let answer = Answer::parse(echoed.clone()).unwrap();
        assert!(!answer.is_error());
        assert_eq!(answer.result_text(), Some(r#""0x10""#));
        // Echoed as sent: the very bytes.
        assert_eq!(answer.with_id(&id).as_ptr(), echoed.as_ptr());
        // Another id (a node that renumbers): replaced.
        let renumbered = Answer::parse(Bytes::from_static(
            br#" {"id" : 99, "jsonrpc":"2.0","error":{"code":-32000,"message":"m"}}"#,
        ))
        .unwrap();
        assert!(renumbered.is_error());
        assert_eq!(
            value(&renumbered.with_id(&id)),
            json!({"jsonrpc":"2.0","id":"req-1","error":{"code":-32000,"message":"m"}})
        );
        // No id at all: added.
        let bare = Answer::parse(Bytes::from_static(br#"{"jsonrpc":"2.0","result":null}"#)).unwrap();
        assert_eq!(bare.result_text(), None);
        assert_eq!(bare.members(), (Some("null"), None));
        assert_eq!(
            value(&bare.with_id(&id)),
            json!({"jsonrpc":"2.0","id":"req-1","result":null})
        );
        // Lone surrogates are JSON text a tree parser refuses: passed on,
        // read as text, never a panic.
        let lone = Answer::parse(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"\ud800","error":{"code":-32000,"message":"\udc00 known"}}"#,
        ))
        .unwrap();
        assert!(lone.is_error() && lone.value().is_none());
        assert_eq!(lone.members().1, Some(r#"{"code":-32000,"message":"\udc00 known"}"#));
        assert_eq!(
            &lone.with_id(&id)[..],
            br#"{"jsonrpc":"2.0","id":"req-1","error":{"code":-32000,"message":"\udc00 known"}}"#
        );
        // An empty object gets the id alone.
        assert_eq!(
            value(&Answer::parse(Bytes::from_static(b"{ }")).unwrap().with_id(&id)),
            json!({"id":"req-1"})
        );
        // Not an object, or not UTF-8: no answer.
        assert!(Answer::parse(Bytes::from_static(b"{\"result\":\"\xff\"}")).is_none());
        assert!(Answer::parse(Bytes::from_static(b"[1]")).is_none());
        assert!(Answer::parse(Bytes::from_static(b"<html>")).is_none());
        let cached = Answer::result(&id, "\"0x1\"");
        assert_eq!(cached.members(), (Some("\"0x1\""), None));
        assert_eq!(
            value(&cached.clone().with_id(&id)),
            json!({"jsonrpc":"2.0","id":"req-1","result":"0x1"})
        );
        assert_eq!(
            value(&error_response(&id, -32602, "bad \"x\"")),
            json!({"jsonrpc":"2.0","id":"req-1","error":{"code":-32602,"message":"bad \"x\""}})
        );
    }
}
