//! The text a check examines, and where a mutator writes it back (Portkey's
//! `getCurrentContentPart` / `setCurrentContentPart`): for a request, the last message's
//! content (text parts), `prompt` for completions, `input` for embeddings; for a response,
//! `choices[0].message.content`, `choices[0].text`, or the Messages `content` blocks.

use crate::providers::Operation;
use crate::request::RequestView;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The content part: whether there is content at all, and its texts (one per text part;
/// `None` for a part without text).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Part {
    pub present: bool,
    pub texts: Vec<Option<String>>,
}

impl Part {
    /// The texts that are not empty, joined by newlines (Portkey's `getText`).
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for t in self.texts.iter().flatten().filter(|t| !t.is_empty()) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
        out
    }
}

/// [`texts_of`] of a value the caller owns (its strings are moved, not copied).
fn texts_of_owned(content: Value) -> Part {
    match content {
        Value::String(s) => Part {
            present: true,
            texts: vec![Some(s)],
        },
        other => texts_of(&other),
    }
}

fn texts_of(content: &Value) -> Part {
    match content {
        Value::Null => Part::default(),
        Value::String(s) => Part {
            present: true,
            texts: vec![Some(s.clone())],
        },
        Value::Array(items) => Part {
            present: true,
            texts: items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    other => Some(
                        other
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ),
                })
                .collect(),
        },
        other => Part {
            present: true,
            texts: vec![Some(other.to_string())],
        },
    }
}

/// A Responses request's content: `input` when a string, else the last input message's
/// content (as for chat, the turn being asked).
fn responses_input(json: &Map<String, Value>) -> Option<&Value> {
    match json.get("input")? {
        Value::Array(items) => items.last()?.get("content"),
        input => Some(input),
    }
}

fn responses_input_mut(json: &mut Map<String, Value>) -> Option<&mut Value> {
    match json.get_mut("input")? {
        Value::Array(items) => items.last_mut()?.get_mut("content"),
        input => Some(input),
    }
}

/// A Responses answer's content: its last message item's content parts.
fn responses_output(json: &Value) -> Option<&Value> {
    json.get("output")?
        .as_array()?
        .iter()
        .rev()
        .find(|i| i.get("type").and_then(Value::as_str) == Some("message"))?
        .get("content")
}

fn responses_output_mut(json: &mut Value) -> Option<&mut Value> {
    json.get_mut("output")?
        .as_array_mut()?
        .iter_mut()
        .rev()
        .find(|i| i.get("type").and_then(Value::as_str) == Some("message"))?
        .get_mut("content")
}

/// The request's content part.
pub(crate) fn request_part(json: &Map<String, Value>, op: Operation) -> Part {
    match op {
        Operation::ChatCompletions | Operation::Messages => json
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("content"))
            .map(texts_of)
            .unwrap_or_default(),
        Operation::Completions => json.get("prompt").map(texts_of).unwrap_or_default(),
        Operation::Embeddings => json.get("input").map(texts_of).unwrap_or_default(),
        // The query: the documents are the client's corpus, not what it asks.
        Operation::Rerank => json.get("query").map(texts_of).unwrap_or_default(),
        Operation::Responses => responses_input(json).map(texts_of).unwrap_or_default(),
    }
}

/// The last element of a JSON array, as raw text (the others are skipped, not parsed).
struct Last<'a>(Option<&'a RawValue>);

impl<'de> Deserialize<'de> for Last<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Last<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Last<'de>, A::Error> {
                let mut last = None;
                while let Some(v) = seq.next_element::<&'de RawValue>()? {
                    last = Some(v);
                }
                Ok(Last(last))
            }
        }
        d.deserialize_seq(Visit)
    }
}

/// A message, as far as its content.
#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// The first byte of a JSON text that is not whitespace.
fn opens(raw: &[u8]) -> Option<u8> {
    raw.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// [`request_part`] read from the client's body without parsing it whole: only the value
/// holding the part (the last message's `content`, `prompt` or `input`) is parsed, at the
/// place the gateway's scan recorded. `None` when the view has no such record (it was built
/// from a parsed object) or a value is one the borrowing parse refuses (a repeated key, an
/// escape it cannot decode): the caller then reads the parsed document.
pub(crate) fn request_part_raw(view: &RequestView, op: Operation) -> Option<Part> {
    let at = &view.content_at;
    if !at.scanned {
        return None;
    }
    let value = |raw: &[u8]| {
        serde_json::from_slice::<Value>(raw)
            .ok()
            .map(texts_of_owned)
    };
    match op {
        Operation::ChatCompletions | Operation::Messages => {
            let Some(messages) = view.raw(&at.messages) else {
                return Some(Part::default());
            };
            // `get("messages").as_array()`: anything but an array holds no content.
            if opens(messages) != Some(b'[') {
                return Some(Part::default());
            }
            let Last(last) = serde_json::from_slice(messages).ok()?;
            let Some(last) = last else {
                return Some(Part::default());
            };
            // `.get("content")` of a message that is not an object is nothing.
            if opens(last.get().as_bytes()) != Some(b'{') {
                return Some(Part::default());
            }
            let message: RawMessage<'_> = serde_json::from_str(last.get()).ok()?;
            match message.content {
                Some(c) => value(c.get().as_bytes()),
                None => Some(Part::default()),
            }
        }
        Operation::Completions | Operation::Embeddings => {
            let range = if op == Operation::Completions {
                &at.prompt
            } else {
                &at.input
            };
            match view.raw(range) {
                Some(raw) => value(raw),
                None => Some(Part::default()),
            }
        }
        // Not located when the body is read: the caller parses the request.
        Operation::Rerank => None,
        // `input` is a string or a list of items: the caller parses the request.
        Operation::Responses => None,
    }
}

/// The response's content part (as the client receives it).
pub(crate) fn response_part(json: &Value, op: Operation) -> Part {
    let first = || json.get("choices").and_then(|c| c.get(0));
    match op {
        Operation::ChatCompletions => first()
            .and_then(|c| c.get("message"))
            .and_then(|m| m.get("content"))
            .map(texts_of)
            .unwrap_or_default(),
        Operation::Completions => first()
            .and_then(|c| c.get("text"))
            .map(texts_of)
            .unwrap_or_default(),
        Operation::Messages => json.get("content").map(texts_of).unwrap_or_default(),
        Operation::Embeddings | Operation::Rerank => Part::default(),
        Operation::Responses => responses_output(json).map(texts_of).unwrap_or_default(),
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(serde::Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    text: Option<Value>,
}

#[derive(serde::Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<Value>,
}

/// [`response_part`] read from an answer's bytes for hooks that only read its text: just
/// the content is parsed (no document of the whole answer is built). `None` when the answer
/// does not have the expected shape (the caller then parses it whole).
pub(crate) fn answer_part(body: &[u8], op: Operation) -> Option<Part> {
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let first = || answer.choices.and_then(|c| c.into_iter().next());
    let content = match op {
        Operation::ChatCompletions => first().and_then(|c| c.message?.content),
        Operation::Completions => first().and_then(|c| c.text),
        Operation::Messages => answer.content,
        Operation::Embeddings | Operation::Rerank => None,
        // Its content sits in `output`: the caller parses the answer whole.
        Operation::Responses => return None,
    };
    Some(content.map(texts_of_owned).unwrap_or_default())
}

/// Replaces texts in a content value: part `i` gets `texts[i]` when given and not empty.
fn replace(content: &mut Value, texts: &[Option<String>]) {
    let pick = |i: usize| {
        texts
            .get(i)
            .and_then(|t| t.clone())
            .filter(|t| !t.is_empty())
    };
    match content {
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let Some(t) = pick(i) else { continue };
                match item {
                    Value::Object(o) => {
                        o.insert("text".into(), Value::String(t));
                    }
                    other => *other = Value::String(t),
                }
            }
        }
        other => {
            if let Some(t) = pick(0) {
                *other = Value::String(t);
            }
        }
    }
}

/// A copy of the request with its content part's texts replaced.
pub(crate) fn set_request_texts(
    json: &Map<String, Value>,
    op: Operation,
    texts: &[Option<String>],
) -> Map<String, Value> {
    let mut out = json.clone();
    let slot = match op {
        Operation::ChatCompletions | Operation::Messages => out
            .get_mut("messages")
            .and_then(Value::as_array_mut)
            .and_then(|m| m.last_mut())
            .and_then(|m| m.get_mut("content")),
        Operation::Completions => out.get_mut("prompt"),
        Operation::Embeddings => out.get_mut("input"),
        Operation::Rerank => out.get_mut("query"),
        Operation::Responses => responses_input_mut(&mut out),
    };
    if let Some(content) = slot {
        replace(content, texts);
    }
    out
}

/// A copy of the response with its content part's texts replaced.
pub(crate) fn set_response_texts(json: &Value, op: Operation, texts: &[Option<String>]) -> Value {
    let mut out = json.clone();
    let slot = match op {
        Operation::ChatCompletions => out
            .get_mut("choices")
            .and_then(|c| c.get_mut(0))
            .and_then(|c| c.get_mut("message"))
            .and_then(|m| m.get_mut("content")),
        Operation::Completions => out
            .get_mut("choices")
            .and_then(|c| c.get_mut(0))
            .and_then(|c| c.get_mut("text")),
        Operation::Messages => out.get_mut("content"),
        Operation::Embeddings | Operation::Rerank => None,
        Operation::Responses => responses_output_mut(&mut out),
    };
    if let Some(content) = slot {
        replace(content, texts);
    }
    out
}

/// A response holding `text` as its content, for checks on a stream's accumulated text.
pub(crate) fn synthetic_response(op: Operation, text: &str) -> Value {
    match op {
        Operation::Messages => serde_json::json!({"content": [{"type": "text", "text": text}]}),
        Operation::Completions => serde_json::json!({"choices": [{"index": 0, "text": text}]}),
        Operation::Responses => {
            serde_json::json!({"output": [{"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}]})
        }
        _ => {
            serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
        }
    }
}

/// At most 100 characters of the text, then `...` (Portkey's `textExcerpt`).
pub(crate) fn excerpt(text: &str) -> String {
    excerpt_parts(text).concat()
}

/// The excerpt as two parts to write one after the other (no copy of the text).
pub(crate) fn excerpt_parts(text: &str) -> [&str; 2] {
    match text.char_indices().nth(100) {
        Some((i, _)) => [text.get(..i).unwrap_or(""), "..."],
        None => [text, ""],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_text_is_the_last_message_parts_joined() {
        let j = json!({"messages": [{"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]}]});
        let part = request_part(j.as_object().unwrap(), Operation::ChatCompletions);
        assert_eq!(part.text(), "a\nb");
        let j = json!({"prompt": "p"});
        assert_eq!(
            request_part(j.as_object().unwrap(), Operation::Completions).text(),
            "p"
        );
        let j = json!({"input": ["x", "y"]});
        assert_eq!(
            request_part(j.as_object().unwrap(), Operation::Embeddings).text(),
            "x\ny"
        );
    }

    #[test]
    fn response_text_and_rewrite() {
        let r = json!({"choices": [{"message": {"content": "hello"}}]});
        assert_eq!(
            response_part(&r, Operation::ChatCompletions).text(),
            "hello"
        );
        let out = set_response_texts(&r, Operation::ChatCompletions, &[Some("bye".into())]);
        assert_eq!(out["choices"][0]["message"]["content"], "bye");
        let m = json!({"content": [{"type": "text", "text": "t1"}]});
        assert_eq!(response_part(&m, Operation::Messages).text(), "t1");
        assert_eq!(excerpt(&"é".repeat(120)).chars().count(), 103);
    }

    #[test]
    fn an_answers_content_reads_as_the_whole_answer_does() {
        let answers = [
            json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi \"there\""}}], "usage": {"total_tokens": 3}}),
            json!({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, "b", {"x": 1}]}}, {"message": {"content": "second"}}]}),
            json!({"choices": [{"message": {"content": null, "tool_calls": []}}]}),
            json!({"choices": [{"message": {}}]}),
            json!({"choices": []}),
            json!({"choices": null}),
            json!({"choices": [{"index": 0, "text": "completion"}]}),
            json!({"content": [{"type": "text", "text": "t1"}, {"type": "text", "text": "t2"}]}),
            json!({"content": 5}),
            json!({}),
        ];
        for a in &answers {
            let body = serde_json::to_vec(a).unwrap();
            for op in [
                Operation::ChatCompletions,
                Operation::Completions,
                Operation::Messages,
            ] {
                assert_eq!(
                    answer_part(&body, op).unwrap(),
                    response_part(a, op),
                    "{a} {op:?}"
                );
            }
        }
        // Shapes it does not read are left to the whole parse.
        for odd in [json!([1]), json!({"choices": "x"}), json!({"choices": [1]})] {
            let body = serde_json::to_vec(&odd).unwrap();
            assert!(
                answer_part(&body, Operation::ChatCompletions).is_none(),
                "{odd}"
            );
        }
    }

    #[test]
    fn the_raw_part_is_the_documents_part_or_none() {
        use crate::request::RequestView;
        let ops = [
            Operation::ChatCompletions,
            Operation::Messages,
            Operation::Completions,
            Operation::Embeddings,
        ];
        let same = [
            r#"{"model":"m"}"#,
            r#"{"messages":null,"prompt":null,"input":null}"#,
            r#"{"messages":"text","prompt":5,"input":{"a":1}}"#,
            r#"{"messages":[]}"#,
            r#"{"messages":[{"content":"a"}, 7]}"#,
            r#"{"messages":[{"content":"a"}, {"role":"user"}]}"#,
            r#"{"messages":[{"content":null}]}"#,
            r#"{"messages":[{"content":"first"},{"content":[{"type":"text","text":"x\ny"},"s",{"type":"image"}]}]}"#,
            r#"{"messages":[{"role":"user","content":{"odd":true}}],"prompt":["p1","p2"],"input":"in"}"#,
            r#" { "messages" : [ { "content" : " spaced \u00e9 " } ] } "#,
        ];
        for body in same {
            let view = RequestView::parse(bytes::Bytes::from(body)).unwrap();
            let doc = view.params().unwrap();
            for op in ops {
                assert_eq!(
                    request_part_raw(&view, op),
                    Some(request_part(doc, op)),
                    "{body} {op:?}"
                );
            }
        }
        // A repeated key (the document keeps the last) and an escape the parse refuses: left to
        // the document, whose parse answers 400 for the second.
        for body in [
            r#"{"messages":[{"content":"a","content":"b"}]}"#,
            r#"{"messages":[{"content":"\ud800"}]}"#,
        ] {
            let view = RequestView::parse(bytes::Bytes::from(body)).unwrap();
            assert_eq!(
                request_part_raw(&view, Operation::ChatCompletions),
                None,
                "{body}"
            );
        }
        // A view of an already parsed object has no record of where the members were.
        let (legacy, _) = RequestView::parse_legacy(bytes::Bytes::from(
            r#"{"params":{"messages":[{"content":"a"}]}}"#,
        ))
        .unwrap();
        assert_eq!(request_part_raw(&legacy, Operation::ChatCompletions), None);
    }
}
