//! OpenAI requests into Gemini's: chat (`generateContent`) and embeddings.

use super::*;

/// `contents` under construction: consecutive messages of one role are merged into one content,
/// because Gemini wants the answers to one turn's function calls in a single content.
#[derive(Default)]
pub(super) struct Contents {
    pub(super) list: Vec<Value>,
    pub(super) last_role: Option<&'static str>,
}

impl Contents {
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        if self.last_role == Some(role) {
            if let Some(Value::Array(prev)) = self.list.last_mut().and_then(|c| c.get_mut("parts"))
            {
                prev.extend(parts);
                return;
            }
        }
        self.list.push(json!({"role": role, "parts": parts}));
        self.last_role = Some(role);
    }
}

/// An OpenAI chat request as a Gemini `GenerateContentRequest`. Unknown OpenAI fields are
/// dropped.
pub(super) fn chat_request(body: &Map<String, Value>) -> Result<Value, GatewayError> {
    let messages = match body.get("messages") {
        Some(Value::Array(m)) => m.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(invalid("messages must be an array")),
    };
    let mut contents = Contents::default();
    let mut system: Vec<Value> = Vec::new();
    // tool_call_id → function name: Gemini answers a call by name, OpenAI by id.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(invalid(format!("messages[{i}] must be an object")));
        };
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.extend(content_parts(content)),
            "assistant" | "model" => {
                let mut parts = content_parts(content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = call.get("function").unwrap_or(&Value::Null);
                    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_names.insert(id.to_string(), name.to_string());
                    }
                    parts.push(json!({"functionCall": {"name": name, "args": call_args(f)}}));
                }
                contents.push("model", parts);
            }
            "tool" | "function" => {
                let by_id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .and_then(|id| call_names.get(id));
                let name = by_id
                    .map(String::as_str)
                    .or_else(|| m.get("name").and_then(Value::as_str))
                    .unwrap_or_default();
                let part =
                    json!({"functionResponse": {"name": name, "response": tool_response(content)}});
                contents.push("user", vec![part]);
            }
            _ => contents.push("user", content_parts(content)),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents.list));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let config = generation_config(body);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    let declarations = function_declarations(body);
    if !declarations.is_empty() {
        out.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
    }
    if let Some(tc) = tool_config(body.get("tool_choice")) {
        out.insert("toolConfig".into(), tc);
    }
    Ok(Value::Object(out))
}

/// A tool call's `arguments` (a JSON string) as the object Gemini's `args` must be; anything
/// that is not a JSON object becomes `{}`.
pub(super) fn call_args(f: &Value) -> Value {
    match f.get("arguments") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({}),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

/// A tool result as Gemini's `functionResponse.response`, which must be an object: a result
/// that is itself a JSON object is passed as is, anything else as `{"content": <text>}`.
pub(super) fn tool_response(content: &Value) -> Value {
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(_) => content_parts(content)
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    }
}

/// OpenAI message content (a string or an array of parts) as Gemini parts. Empty text is
/// skipped (Gemini refuses empty text parts); unknown part types are dropped.
pub(super) fn content_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({ "text": s })],
        Value::Array(items) => items.iter().filter_map(part).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn part(item: &Value) -> Option<Value> {
    match item.get("type").and_then(Value::as_str) {
        Some("text") | Some("input_text") => {
            let text = item.get("text").and_then(Value::as_str)?;
            (!text.is_empty()).then(|| json!({ "text": text }))
        }
        Some("image_url") => {
            let url = match item.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(obj) => obj.get("url").and_then(Value::as_str)?,
                None => return None,
            };
            Some(media_part(url))
        }
        Some("input_audio") => {
            let audio = item.get("input_audio")?;
            let data = audio.get("data").and_then(Value::as_str)?;
            let format = audio.get("format").and_then(Value::as_str).unwrap_or("wav");
            Some(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}))
        }
        _ => None,
    }
}

/// A data URL → `inlineData` (its base64 as is); any other URL → `fileData` with a MIME type
/// guessed from the extension (Gemini requires one).
pub(super) fn media_part(url: &str) -> Value {
    if let Some(d) = DataUrl::parse(url) {
        let mime = if d.mime.is_empty() {
            "image/jpeg"
        } else {
            d.mime
        };
        return json!({"inlineData": {"mimeType": mime, "data": d.payload}});
    }
    json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}})
}

pub(super) fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "txt" => "text/plain",
        _ => "image/jpeg",
    }
}

/// Sampling and output fields → `generationConfig`. `null` values are skipped.
pub(super) fn generation_config(body: &Map<String, Value>) -> Map<String, Value> {
    let mut c = Map::new();
    let get = |k: &str| body.get(k).filter(|v| !v.is_null());
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = get(from) {
            c.insert(to.into(), v.clone());
        }
    }
    if let Some(v) = get("max_completion_tokens").or_else(|| get("max_tokens")) {
        c.insert("maxOutputTokens".into(), v.clone());
    }
    match get("stop") {
        Some(Value::String(s)) => {
            c.insert("stopSequences".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            c.insert("stopSequences".into(), v.clone());
        }
        _ => {}
    }
    if let Some(rf) = get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                c.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                c.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = rf.get("json_schema").and_then(|s| s.get("schema")) {
                    c.insert("responseSchema".into(), clean_schema(schema));
                }
            }
            _ => {}
        }
    }
    c
}

/// A JSON Schema without the keywords Gemini's `Schema` rejects, at every level where a schema
/// can sit. Property *names* are never touched (a property may be called `additionalProperties`).
pub(super) fn clean_schema(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if UNSUPPORTED_SCHEMA_KEYS.contains(&k.as_str()) {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("properties" | "$defs" | "definitions", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(name, s)| (name.clone(), clean_schema(s)))
                    .collect(),
            ),
            ("items" | "not", s) => match s {
                Value::Array(list) => Value::Array(list.iter().map(clean_schema).collect()),
                s => clean_schema(s),
            },
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(list)) => {
                Value::Array(list.iter().map(clean_schema).collect())
            }
            (_, v) => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// Function tools → `functionDeclarations`; other tool types are dropped. An object schema
/// with no properties is left out: Gemini refuses `properties` that is empty for an object.
pub(super) fn function_declarations(body: &Map<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        let Some(f) = tool.get("function").filter(|_| kind == "function") else {
            continue;
        };
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if let Some(desc) = f.get("description").and_then(Value::as_str) {
            d.insert("description".into(), json!(desc));
        }
        if let Some(params) = f.get("parameters").filter(|p| p.is_object()) {
            let empty = params
                .get("properties")
                .and_then(Value::as_object)
                .map_or(true, Map::is_empty);
            if !empty {
                d.insert("parameters".into(), clean_schema(params));
            }
        }
        out.push(Value::Object(d));
    }
    out
}

/// `tool_choice` → `toolConfig.functionCallingConfig`.
pub(super) fn tool_config(choice: Option<&Value>) -> Option<Value> {
    let config = match choice? {
        Value::String(s) => match s.as_str() {
            "none" => json!({"mode": "NONE"}),
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            _ => return None,
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => return None,
    };
    Some(json!({ "functionCallingConfig": config }))
}

/// Embeddings: one string → `embedContent`; an array of strings → `batchEmbedContents`.
/// `dimensions` becomes `outputDimensionality`. Token arrays are refused (Gemini takes text).
pub(super) fn embed_request(
    body: &Map<String, Value>,
    model: &str,
) -> Result<(String, Value), GatewayError> {
    let dims = body.get("dimensions").filter(|v| v.is_number());
    let request = |text: &str, with_model: bool| {
        let mut r = Map::new();
        if with_model {
            r.insert("model".into(), json!(format!("models/{model}")));
        }
        r.insert("content".into(), json!({"parts": [{"text": text}]}));
        if let Some(d) = dims {
            r.insert("outputDimensionality".into(), d.clone());
        }
        Value::Object(r)
    };
    match body.get("input") {
        Some(Value::String(s)) => Ok((
            format!("{VERSION}/models/{model}:embedContent"),
            request(s, false),
        )),
        Some(Value::Array(items)) => {
            let mut requests = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(s) = item else {
                    return Err(invalid(
                        "google embeddings take input as a string or an array of strings",
                    ));
                };
                requests.push(request(s, true));
            }
            Ok((
                format!("{VERSION}/models/{model}:batchEmbedContents"),
                json!({ "requests": requests }),
            ))
        }
        _ => Err(invalid("input must be a string or an array of strings")),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------
