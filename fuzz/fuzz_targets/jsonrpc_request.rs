//! The gateway's JSON-RPC body parser (`POST /rpc/{chain}`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_gateway::rpc::{Body, Request, parse_body};
use serde_json::Value;

const MAX_BATCH: usize = 100;

fn check(request: &Request, source: Option<&Value>) {
    match &request.call {
        Ok((_, params)) => assert!(
            params.is_none_or(|p| p.get().starts_with(['[', '{'])),
            "params {params:?}"
        ),
        Err(error) => assert!(!error.message.is_empty(), "an error without a message"),
    }
    // A well-formed request object is always accepted, with its own id.
    if let Some(Value::Object(o)) = source {
        let params_ok = o
            .get("params")
            .is_none_or(|p| p.is_null() || p.is_array() || p.is_object());
        if o.get("method").is_some_and(Value::is_string) && params_ok {
            assert!(request.call.is_ok(), "{o:?} refused: {:?}", request.call);
        }
        // Its own id, as sent.
        let id: Value = serde_json::from_str(request.id.get()).expect("the id of a JSON object is JSON");
        assert_eq!(&id, o.get("id").unwrap_or(&Value::Null));
    }
}

fuzz_target!(|data: &[u8]| {
    let json: Option<Value> = serde_json::from_slice(data).ok();
    match parse_body(data, MAX_BATCH) {
        Ok(Body::One(request)) => check(&request, json.as_ref()),
        Ok(Body::Batch(requests)) => {
            assert!((1..=MAX_BATCH).contains(&requests.len()));
            let items = json.as_ref().and_then(Value::as_array);
            for (i, request) in requests.iter().enumerate() {
                check(request, items.and_then(|a| a.get(i)));
            }
        }
        Err((code, error)) => {
            assert!(code == -32700 || code == -32600, "code {code}");
            assert!(!error.message.is_empty());
            // What serde_json reads as JSON is never a parse error.
            if code == -32700 {
                assert!(json.is_none(), "valid JSON refused: {}", error.message);
            }
        }
    }
});
