//! The text a check examines, and where a mutator writes it back (Portkey's
//! `getCurrentContentPart` / `setCurrentContentPart`): for a request, the last message's
//! content (text parts), `prompt` for completions, `input` for embeddings; for a response,
//! `choices[0].message.content`, `choices[0].text`, or the Messages `content` blocks.

use crate::providers::Operation;
use serde_json::{Map, Value};

/// The content part: whether there is content at all, and its texts (one per text part;
/// `None` for a part without text).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Part {
    pub present: bool,
    pub texts: Vec<Option<String>>,
}

impl Part {
    /// The texts that are not empty, joined by newlines (Portkey's `getText`).
    pub fn text(&self) -> String {
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

/// The request's content part.
pub fn request_part(json: &Map<String, Value>, op: Operation) -> Part {
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
    }
}

/// The response's content part (as the client receives it).
pub fn response_part(json: &Value, op: Operation) -> Part {
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
        Operation::Embeddings => Part::default(),
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

/// For hooks that only read an answer's text: a small document holding the answer's content
/// part where [`response_part`] looks for it, read without building the rest of the answer.
/// `None` when the answer does not have the expected shape (the caller then parses it whole).
pub fn answer_content(body: &[u8], op: Operation) -> Option<Value> {
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let first = || answer.choices.and_then(|c| c.into_iter().next());
    Some(match op {
        Operation::ChatCompletions => match first().and_then(|c| c.message?.content) {
            Some(c) => serde_json::json!({"choices": [{"message": {"content": c}}]}),
            None => Value::Object(Map::new()),
        },
        Operation::Completions => match first().and_then(|c| c.text) {
            Some(t) => serde_json::json!({"choices": [{"text": t}]}),
            None => Value::Object(Map::new()),
        },
        Operation::Messages => match answer.content {
            Some(c) => serde_json::json!({ "content": c }),
            None => Value::Object(Map::new()),
        },
        Operation::Embeddings => Value::Object(Map::new()),
    })
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
pub fn set_request_texts(
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
    };
    if let Some(content) = slot {
        replace(content, texts);
    }
    out
}

/// A copy of the response with its content part's texts replaced.
pub fn set_response_texts(json: &Value, op: Operation, texts: &[Option<String>]) -> Value {
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
        Operation::Embeddings => None,
    };
    if let Some(content) = slot {
        replace(content, texts);
    }
    out
}

/// A response holding `text` as its content, for checks on a stream's accumulated text.
pub fn synthetic_response(op: Operation, text: &str) -> Value {
    match op {
        Operation::Messages => serde_json::json!({"content": [{"type": "text", "text": text}]}),
        Operation::Completions => serde_json::json!({"choices": [{"index": 0, "text": text}]}),
        _ => {
            serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
        }
    }
}

/// At most 100 characters of the text, then `...` (Portkey's `textExcerpt`).
pub fn excerpt(text: &str) -> String {
    excerpt_parts(text).concat()
}

/// The excerpt as two parts to write one after the other (no copy of the text).
pub fn excerpt_parts(text: &str) -> [&str; 2] {
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
                let small = answer_content(&body, op).unwrap();
                assert_eq!(
                    response_part(&small, op),
                    response_part(a, op),
                    "{a} {op:?}"
                );
            }
        }
        // Shapes it does not read are left to the whole parse.
        for odd in [json!([1]), json!({"choices": "x"}), json!({"choices": [1]})] {
            let body = serde_json::to_vec(&odd).unwrap();
            assert!(
                answer_content(&body, Operation::ChatCompletions).is_none(),
                "{odd}"
            );
        }
    }
}
