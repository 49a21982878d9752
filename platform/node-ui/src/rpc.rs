//! The requests a paired page makes, inside sealed frames.
//!
//! A request is JSON `{"id": <u64>, "method": "status"}`; the answer is
//! `{"id": <same>, "status": {…}}` or `{"id": <same or null>, "error": "…"}`.
//! A request that authenticates but makes no sense gets an error answer, not a
//! closed session: it came from the paired page, so it is a bug, not an attack.

use serde::{Deserialize, Serialize};

use crate::status::{Status, StatusSource};

#[derive(Debug, Deserialize)]
struct Request {
    id: u64,
    method: String,
}

/// An answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The request's id; `None` if the request was not even that readable.
    pub id: Option<u64>,
    /// The node's status, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// What was wrong with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Answer {
    fn error(id: Option<u64>, error: String) -> Self {
        Self {
            id,
            status: None,
            error: Some(error),
        }
    }
}

/// Answers one opened request.
pub fn answer(request: &[u8], source: &dyn StatusSource) -> Answer {
    let request: Request = match serde_json::from_slice(request) {
        Ok(r) => r,
        Err(e) => return Answer::error(None, format!("bad request: {e}")),
    };
    match request.method.as_str() {
        "status" => Answer {
            id: Some(request.id),
            status: Some(source.status()),
            error: None,
        },
        other => Answer::error(Some(request.id), format!("unknown method {other:?}")),
    }
}

/// [`answer`] as the JSON bytes to seal.
pub fn answer_json(request: &[u8], source: &dyn StatusSource) -> Vec<u8> {
    let answer = answer(request, source);
    serde_json::to_vec(&answer).unwrap_or_else(|e| {
        // Status holds only strings and integers: serialising cannot fail,
        // but a node's shell must not panic on a remote request either.
        format!(r#"{{"id":null,"error":"cannot encode the answer: {e}"}}"#).into_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> impl StatusSource {
        || Status {
            identity: "02ab".into(),
            ..Status::default()
        }
    }

    #[test]
    fn status_is_answered_with_the_request_id() {
        let a = answer(br#"{"id": 7, "method": "status"}"#, &source());
        assert_eq!(a.id, Some(7));
        assert_eq!(a.status.unwrap().identity, "02ab");
        assert_eq!(a.error, None);
    }

    #[test]
    fn unknown_and_garbled_requests_get_errors() {
        let a = answer(br#"{"id": 8, "method": "shutdown"}"#, &source());
        assert_eq!(a.id, Some(8));
        assert!(a.status.is_none());
        assert!(a.error.unwrap().contains("shutdown"));
        let b = answer(b"\xff not json", &source());
        assert_eq!(b.id, None);
        assert!(b.error.unwrap().starts_with("bad request"));
    }

    #[test]
    fn answers_round_trip_through_json() {
        let bytes = answer_json(br#"{"id": 1, "method": "status"}"#, &source());
        let back: Answer = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, answer(br#"{"id": 1, "method": "status"}"#, &source()));
    }
}
