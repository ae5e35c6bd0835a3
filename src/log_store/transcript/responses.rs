//! A Responses stream's whole answer. Its closing event (`response.completed`,
//! `response.incomplete` or `response.failed`) carries the whole response object, output
//! included, so nothing is joined from the deltas: the last closing event is the answer.

use super::{payload, Reassemble};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// The members of an event read here: every event is scanned for its type, only the closing
/// one's response is made a tree.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
}

#[derive(Default)]
pub(super) struct LastResponse {
    response: Option<Value>,
}

impl Reassemble for LastResponse {
    fn event(&mut self, event: &[u8]) {
        let Some(data) = payload(event) else {
            return;
        };
        let Ok(e) = serde_json::from_slice::<Event<'_>>(&data) else {
            return;
        };
        if !matches!(
            e.kind.as_ref(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            return;
        }
        if let Some(r) = e.response.and_then(|r| serde_json::from_str(r.get()).ok()) {
            self.response = Some(r);
        }
    }

    fn into_answer(self) -> Option<Value> {
        self.response.filter(Value::is_object)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Api, Transcript};
    use serde_json::json;

    #[test]
    fn the_closing_event_carries_the_answer() {
        let response = json!({"id": "resp_1", "object": "response", "status": "completed",
        "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{\"q\":1}"},
        ]});
        let events = [
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}}\n\n".to_string(),
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n".into(),
            format!("event: response.completed\ndata: {}\n\n", json!({"type": "response.completed", "response": response})),
        ];
        let mut t = Transcript::default();
        // Split mid-event: the splitter joins the pieces.
        let all = events.concat();
        let (a, b) = all.split_at(all.len() / 2);
        t.push(a.as_bytes());
        t.push(b.as_bytes());
        assert_eq!(t.answer(true, Api::Responses), Some(response));
    }

    #[test]
    fn a_stream_without_a_closing_event_has_no_answer() {
        let mut t = Transcript::default();
        t.push(b"data: {\"type\":\"response.created\",\"response\":{\"id\":\"r\"}}\n\n");
        t.push(b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n");
        assert_eq!(t.answer(true, Api::Responses), None);
    }
}
