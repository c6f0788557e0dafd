//! `POST /publish/<channel>` and `POST /publish` (batch): who may publish, how a body becomes
//! envelope data, and the JSON answers.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use tickcast_protocol::envelope::{Data, ErrorCode};
use tickcast_protocol::http::Request;

use crate::hub::{Hub, PublishError};

/// Everything the publish endpoints need from the worker.
pub struct PublishGate<'a> {
    pub hub: &'a Hub,
    /// With a token, publishers must send `Authorization: Bearer <token>`; without one, only
    /// connections accepted on a loopback listener may publish.
    pub token: Option<&'a str>,
    /// The connection came in on a listener bound to a loopback address (so its peer is local).
    pub loopback: bool,
    /// Wall-clock time for the envelope, µs since the Unix epoch.
    pub now_us: u64,
    pub max_batch: usize,
    /// Counts accepted publishes.
    pub stats: &'a crate::metrics::WorkerStats,
}

/// An HTTP answer: status, JSON body, extra headers.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: &'static [(&'static str, &'static str)],
}

fn error(status: u16, code: ErrorCode, message: &str) -> Answer {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Answer { status, body: body.to_string().into_bytes(), headers: &[] }
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PublishGate<'_> {
    /// `Ok` when this request may publish; otherwise the refusal to send.
    pub fn authorize(&self, req: &Request) -> Result<(), Answer> {
        match self.token {
            Some(token) => {
                let presented = req.header("authorization").and_then(|v| v.strip_prefix(b"Bearer "));
                match presented {
                    Some(p) if same_secret(p.trim_ascii(), token.as_bytes()) => Ok(()),
                    Some(_) => Err(error(403, ErrorCode::Forbidden, "wrong publish token")),
                    None => {
                        let mut answer = error(
                            401,
                            ErrorCode::Forbidden,
                            "publishing needs Authorization: Bearer <token>",
                        );
                        answer.headers = &[("WWW-Authenticate", "Bearer")];
                        Err(answer)
                    }
                }
            }
            None if self.loopback => Ok(()),
            None => Err(error(
                403,
                ErrorCode::Forbidden,
                "publishing is allowed from loopback only; start the server with --publish-token to publish remotely",
            )),
        }
    }
}

/// Envelope data for a body: JSON stays JSON, other UTF-8 text becomes a JSON string.
pub fn body_data(body: &[u8]) -> Result<Data<'_>, Answer> {
    if let Ok(raw) = serde_json::from_slice::<&RawValue>(body) {
        return Ok(Data::Json(raw.get().as_bytes()));
    }
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Data::Text(text)),
        Err(_) => Err(error(415, ErrorCode::BadRequest, "the body must be UTF-8 text or JSON")),
    }
}

fn status_of(e: &PublishError) -> u16 {
    match e.code() {
        ErrorCode::InvalidChannel | ErrorCode::BadRequest => 400,
        ErrorCode::Forbidden => 403,
        ErrorCode::PayloadTooLarge => 413,
        _ => 503,
    }
}

/// `POST /publish/<channel>`: answers `{"channel": "...", "seq": N}`.
pub fn publish_one(gate: &PublishGate<'_>, channel: &str, body: &[u8]) -> Answer {
    let data = match body_data(body) {
        Ok(d) => d,
        Err(answer) => return answer,
    };
    match gate.hub.publish(channel, data, gate.now_us) {
        Ok(receipt) => {
            crate::metrics::inc(&gate.stats.publishes);
            let body = serde_json::json!({ "channel": channel, "seq": receipt.seq });
            Answer { status: 200, body: body.to_string().into_bytes(), headers: &[] }
        }
        Err(e) => error(status_of(&e), e.code(), &e.to_string()),
    }
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// `POST /publish` with `[{"channel": "...", "data": <any JSON>}, ...]`: publishes every item
/// (in order, waking each worker once) and answers one result per item, in order:
/// `{"channel": "...", "seq": N}` or `{"channel": "...", "error": {...}}`.
pub fn publish_batch(gate: &PublishGate<'_>, body: &[u8]) -> Answer {
    let items: Vec<Item<'_>> = match serde_json::from_slice(body) {
        Ok(items) => items,
        Err(e) => {
            let message = format!("a batch is a JSON array of {{\"channel\", \"data\"}} objects: {e}");
            return error(400, ErrorCode::BadRequest, &message);
        }
    };
    if items.len() > gate.max_batch {
        let message = format!("at most {} messages per batch", gate.max_batch);
        return error(413, ErrorCode::PayloadTooLarge, &message);
    }
    let batch: Vec<(&str, Data<'_>)> =
        items.iter().map(|i| (i.channel.as_ref(), Data::Json(i.data.get().as_bytes()))).collect();
    let mut results = Vec::with_capacity(batch.len());
    gate.hub.publish_batch(&batch, gate.now_us, &mut results);
    crate::metrics::add(&gate.stats.publishes, results.iter().filter(|r| r.is_ok()).count() as u64);
    let answers: Vec<serde_json::Value> = items
        .iter()
        .zip(&results)
        .map(|(item, result)| match result {
            Ok(r) => serde_json::json!({ "channel": item.channel, "seq": r.seq }),
            Err(e) => serde_json::json!({
                "channel": item.channel,
                "error": { "code": e.code(), "message": e.to_string() },
            }),
        })
        .collect();
    Answer { status: 200, body: serde_json::Value::Array(answers).to_string().into_bytes(), headers: &[] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_json_or_text() {
        assert!(matches!(body_data(br#" {"a":1} "#), Ok(Data::Json(b"{\"a\":1}"))));
        assert!(matches!(body_data(b"hello"), Ok(Data::Text("hello"))));
        assert!(matches!(body_data(b"12"), Ok(Data::Json(b"12"))));
        assert_eq!(body_data(&[0xff, 0xfe]).err().map(|a| a.status), Some(415));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
