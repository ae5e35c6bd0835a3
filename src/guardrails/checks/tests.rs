//! Each built-in check on cases drawn from Portkey's `plugins/default/default.test.ts`.

use super::*;
use serde_json::json;

fn compiled(id: &str, params: Value) -> Result<Check, Vec<String>> {
    let mut p = Problems::default();
    let map = params.as_object().cloned().unwrap_or_default();
    match compile(
        id,
        &map,
        "config.c.id",
        "config.c.parameters",
        Event::After,
        false,
        &mut p,
    ) {
        Some(c) if p.0.is_empty() => Ok(c),
        _ => Err(p.0),
    }
}

fn env_less<'a>(
    event: Event,
    op: Operation,
    request: &'a Map<String, Value>,
    response: Option<&'a Value>,
    metadata: &'a Map<String, Value>,
) -> Ctx<'a> {
    Ctx {
        event,
        op,
        request: super::Req::Json(request),
        response: response.map(super::Resp::Json),
        metadata,
        provider: "openai",
        stream: false,
        env: None,
        seen: Default::default(),
        posted: Box::leak(Box::default()),
        counted: None,
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs check `id` on a chat response whose text is `text`.
fn on_text(id: &str, params: Value, text: &str) -> CheckOutcome {
    let check = compiled(id, params).unwrap();
    let response = json!({"choices": [{"message": {"role": "assistant", "content": text}}]});
    let request = Map::new();
    let metadata = Map::new();
    let ctx = env_less(
        Event::After,
        Operation::ChatCompletions,
        &request,
        Some(&response),
        &metadata,
    );
    block(check.run(&ctx))
}

/// Runs check `id` before a request.
fn on_request(
    id: &str,
    params: Value,
    request: Value,
    metadata: Value,
    op: Operation,
) -> CheckOutcome {
    let check = compiled(id, params).unwrap();
    let request = request.as_object().cloned().unwrap();
    let metadata = metadata.as_object().cloned().unwrap();
    let ctx = env_less(Event::Before, op, &request, None, &metadata);
    block(check.run(&ctx))
}

const FOX: &str = "The quick brown fox jumps over the lazy dog.";

#[test]
fn regex_match() {
    let o = on_text(
        "default.regexMatch",
        json!({"rule": "quick.*fox", "not": false}),
        FOX,
    );
    assert!(o.verdict);
    assert_eq!(
        o.data.value()["matchDetails"]["matchedText"],
        "quick brown fox"
    );
    assert!(!on_text("default.regexMatch", json!({"rule": "zebra"}), FOX).verdict);
    assert!(
        on_text(
            "default.regexMatch",
            json!({"rule": "zebra", "not": true}),
            FOX
        )
        .verdict
    );
    let o = on_text(
        "default.regexMatch",
        json!({"rule": "(?<adjective1>quick) (?<adjective2>brown) (?<animal>fox)"}),
        FOX,
    );
    assert!(o.verdict);
    assert_eq!(o.data.value()["matchDetails"]["groups"]["animal"], "fox");
    assert_eq!(
        o.data.value()["matchDetails"]["captures"],
        json!(["quick", "brown", "fox"])
    );
    // JavaScript look-ahead compiles (fancy-regex).
    assert!(on_text("default.regexMatch", json!({"rule": "fox(?= jumps)"}), FOX).verdict);
    let long = "a".repeat(150);
    let o = on_text("default.regexMatch", json!({"rule": "a"}), &long);
    assert_eq!(o.data.value()["textExcerpt"].as_str().unwrap().len(), 103);
    // Invalid or missing patterns are refused when the config is parsed.
    assert!(compiled("default.regexMatch", json!({"rule": "("})).is_err());
    let errs = compiled("default.regexMatch", json!({"rule": ""})).unwrap_err();
    assert!(errs[0].starts_with("path: c,parameters,rule"), "{errs:?}");
    // No text: an error (which passes unless failOnError).
    let o = on_text("default.regexMatch", json!({"rule": "test"}), "");
    assert!(!o.verdict && o.error.is_some());
}

#[test]
fn json_schema() {
    let schema = json!({"schema": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}});
    let text = "adding some text before this ```json\n{\"key\": \"value\"}\n```\n and adding some text after {\"key\":\"value\"}";
    assert!(on_text("default.jsonSchema", schema.clone(), text).verdict);
    let strict = json!({"schema": {"type": "object", "properties": {"key": {"type": "number"}}, "required": ["key"]}});
    let o = on_text("default.jsonSchema", strict, "{\"key\": \"value\"}");
    assert!(!o.verdict);
    assert!(!o.data.value()["validationErrors"]
        .as_array()
        .unwrap()
        .is_empty());
    let o = on_text(
        "default.jsonSchema",
        schema.clone(),
        "This is just plain text with no JSON",
    );
    assert!(!o.verdict);
    assert_eq!(
        o.data.value()["explanation"],
        "No valid JSON found in the response."
    );
    let bad = "adding some text before this ```json\n{\"key1\": \"value\"}\n```\n and adding some text after {\"key\":\"value";
    assert!(!on_text("default.jsonSchema", schema.clone(), bad).verdict);
    // Nested objects as the whole text (Portkey's shortest-span search would miss them).
    let nested = json!({"schema": {"type": "object", "properties": {"user": {"type": "object", "required": ["name"]}}, "required": ["user"]}});
    assert!(
        on_text(
            "default.jsonSchema",
            nested,
            "{\"user\": {\"name\": \"a\", \"tags\": {\"x\": 1}}}"
        )
        .verdict
    );
    let mut not = schema;
    not["not"] = json!(true);
    assert!(!on_text("default.jsonSchema", not, "{\"key\": \"v\"}").verdict);
    assert!(compiled("default.jsonSchema", json!({})).is_err());
    assert!(compiled("default.jsonSchema", json!({"schema": {"type": 12}})).is_err());
}

#[test]
fn json_keys() {
    let text = "{\"key1\": \"value1\", \"key2\": \"value2\"}";
    let o = on_text(
        "default.jsonKeys",
        json!({"keys": ["key1", "key3"], "operator": "any"}),
        text,
    );
    assert!(o.verdict);
    assert_eq!(
        o.data.value()["explanation"],
        "Successfully found at least one required key. Found keys: [key1]."
    );
    let o = on_text(
        "default.jsonKeys",
        json!({"keys": ["key1", "key2"], "operator": "all"}),
        text,
    );
    assert_eq!(
        o.data.value()["explanation"],
        "Successfully found all required keys. Found keys: [key1, key2]."
    );
    let o = on_text(
        "default.jsonKeys",
        json!({"keys": ["key3", "key4"], "operator": "none"}),
        text,
    );
    assert!(o.verdict);
    assert_eq!(
        o.data.value()["explanation"],
        "Successfully verified no required keys are present. Missing keys: [key3, key4]."
    );
    assert!(
        on_text(
            "default.jsonKeys",
            json!({"keys": ["key1"]}),
            "```json\n{\"key1\": \"value1\", \"key2\": \"value2\"}\n```"
        )
        .verdict
    );
    let multi = "{\"key1\": \"value1\"} {\"key2\": \"value2\", \"key3\": \"value3\"}";
    assert!(
        on_text(
            "default.jsonKeys",
            json!({"keys": ["key2", "key3"], "operator": "all"}),
            multi
        )
        .verdict
    );
    assert!(!on_text("default.jsonKeys", json!({"keys": ["key1"]}), "").verdict);
    assert!(
        !on_text(
            "default.jsonKeys",
            json!({"keys": ["key1"]}),
            "This is just plain text with no JSON"
        )
        .verdict
    );
    assert!(compiled(
        "default.jsonKeys",
        json!({"keys": ["a"], "operator": "some"})
    )
    .is_err());
    assert!(compiled("default.jsonKeys", json!({})).is_err());
}

#[test]
fn contains() {
    let text = "adding some text before this word1 and adding some text after";
    assert!(
        on_text(
            "default.contains",
            json!({"words": ["word1", "word2"], "operator": "any"}),
            text
        )
        .verdict
    );
    let o = on_text(
        "default.contains",
        json!({"words": ["word1", "word2"], "operator": "all"}),
        text,
    );
    assert!(!o.verdict);
    assert_eq!(o.data.value()["missingWords"], json!(["word2"]));
    assert!(
        on_text(
            "default.contains",
            json!({"words": ["word2", "word3"], "operator": "none"}),
            text
        )
        .verdict
    );
    // Case-sensitive.
    let text = "Adding some TEXT before this Word1 and adding some text after";
    assert!(
        !on_text(
            "default.contains",
            json!({"words": ["text", "word1"], "operator": "all"}),
            text
        )
        .verdict
    );
    assert!(compiled("default.contains", json!({"words": []})).is_err());
}

#[test]
fn counts() {
    let o = on_text(
        "default.sentenceCount",
        json!({"minSentences": 1, "maxSentences": 3}),
        "This is a sentence. This is another one!",
    );
    assert!(o.verdict);
    assert_eq!(o.data.value()["sentenceCount"], 2);
    assert!(
        !on_text(
            "default.sentenceCount",
            json!({"minSentences": 3, "maxSentences": 4}),
            "One. Two."
        )
        .verdict
    );
    // Empty text counts 0 sentences.
    assert!(
        !on_text(
            "default.sentenceCount",
            json!({"minSentences": 1, "maxSentences": 3}),
            ""
        )
        .verdict
    );
    let seven = "This is a sentence with 7 words.";
    let o = on_text(
        "default.wordCount",
        json!({"minWords": 5, "maxWords": 8}),
        seven,
    );
    assert!(o.verdict);
    assert_eq!(o.data.value()["wordCount"], 7);
    assert!(
        !on_text(
            "default.wordCount",
            json!({"minWords": 10, "maxWords": 15}),
            seven
        )
        .verdict
    );
    let o = on_text(
        "default.wordCount",
        json!({"minWords": 1, "maxWords": 10}),
        "   \n\t   ",
    );
    assert!(!o.verdict && o.error.is_some());
    assert!(compiled("default.wordCount", json!({"minWords": "invalid"})).is_err());
    assert!(
        on_text(
            "default.characterCount",
            json!({"minCharacters": 10, "maxCharacters": 20}),
            "This is a test."
        )
        .verdict
    );
    assert!(
        !on_text(
            "default.characterCount",
            json!({"minCharacters": 10, "maxCharacters": 20}),
            "This is a very long test that exceeds the limit."
        )
        .verdict
    );
    assert!(
        on_text(
            "default.characterCount",
            json!({"minCharacters": 1, "maxCharacters": 10}),
            "   \n\t   "
        )
        .verdict
    );
    // Defaults from the manifest apply when the range is not given.
    assert!(on_text("default.characterCount", json!({}), "This is a test.").verdict);
}

#[test]
fn code_case_suffix_null() {
    assert!(
        on_text(
            "default.containsCode",
            json!({"format": "Python"}),
            "```py\nprint(\"Hello World\")\n```"
        )
        .verdict
    );
    assert!(
        !on_text(
            "default.containsCode",
            json!({"format": "Python"}),
            "```js\nconsole.log(\"Hello\");\n```"
        )
        .verdict
    );
    assert!(
        !on_text(
            "default.containsCode",
            json!({"format": "Python"}),
            "This is just plain text"
        )
        .verdict
    );
    assert!(
        on_text(
            "default.containsCode",
            json!({"format": "Python"}),
            "```py\nprint(\"Hello\")\n```\n```js\nconsole.log(\"Hi\");\n```"
        )
        .verdict
    );
    assert!(compiled("default.containsCode", json!({})).is_err());
    assert!(
        on_text(
            "default.alluppercase",
            json!({}),
            "THIS IS ALL UPPERCASE TEXT!"
        )
        .verdict
    );
    assert!(!on_text("default.alluppercase", json!({}), "This Has Mixed Case.").verdict);
    assert!(on_text("default.alluppercase", json!({}), "123 !@#$%").verdict);
    assert!(!on_text("default.alluppercase", json!({}), "").verdict);
    assert!(
        on_text(
            "default.alllowercase",
            json!({}),
            "this is all lowercase text!"
        )
        .verdict
    );
    assert!(!on_text("default.alllowercase", json!({}), "This Has Mixed Case.").verdict);
    assert!(
        on_text(
            "default.alllowercase",
            json!({"not": true}),
            "This Has Mixed Case."
        )
        .verdict
    );
    assert!(
        on_text(
            "default.endsWith",
            json!({"suffix": "HarryPortkey"}),
            "This is a test ending with HarryPortkey"
        )
        .verdict
    );
    assert!(
        on_text(
            "default.endsWith",
            json!({"suffix": "HarryPortkey"}),
            "This is a test ending with HarryPortkey."
        )
        .verdict
    );
    assert!(
        !on_text(
            "default.endsWith",
            json!({"suffix": "HarryPortkey"}),
            "This is a test ending with something else"
        )
        .verdict
    );
    assert!(compiled("default.endsWith", json!({"suffix": ""})).is_err());
    assert!(on_text("default.notNull", json!({}), "x").verdict);
    assert!(!on_text("default.notNull", json!({}), "  ").verdict);
    assert!(on_text("default.notNull", json!({"not": true}), "").verdict);
}

#[test]
fn request_checks() {
    let req =
        json!({"model": "gemini-1.5-flash-001", "messages": [{"role": "user", "content": "hi"}]});
    let chat = Operation::ChatCompletions;
    assert!(
        on_request(
            "default.modelWhitelist",
            json!({"models": ["gemini-1.5-flash-001"]}),
            req.clone(),
            json!({}),
            chat
        )
        .verdict
    );
    assert!(
        !on_request(
            "default.modelWhitelist",
            json!({"models": ["gpt-4o"]}),
            req.clone(),
            json!({}),
            chat
        )
        .verdict
    );
    let o = on_request(
        "default.modelWhitelist",
        json!({"models": ["gpt-4o"]}),
        json!({"messages": []}),
        json!({}),
        chat,
    );
    assert!(o.error.is_some());
    assert!(compiled("default.modelwhitelist", json!({})).is_err());
    let rules = json!({"rules": {"defaults": ["gpt-4o"], "metadata": {"team": {"research": ["gemini-1.5-flash-001"]}}}});
    assert!(
        on_request(
            "default.modelRules",
            rules.clone(),
            req.clone(),
            json!({"team": "research"}),
            chat
        )
        .verdict
    );
    assert!(
        !on_request(
            "default.modelRules",
            rules,
            req.clone(),
            json!({"team": "sales"}),
            chat
        )
        .verdict
    );
    let types = json!({"allowedTypes": ["chatComplete", "complete", "embed"]});
    assert!(
        on_request(
            "default.allowedRequestTypes",
            types.clone(),
            req.clone(),
            json!({}),
            chat
        )
        .verdict
    );
    assert!(
        !on_request(
            "default.allowedRequestTypes",
            types,
            req.clone(),
            json!({}),
            Operation::Messages
        )
        .verdict
    );
    let o = on_request(
        "default.allowedRequestTypes",
        json!({"allowedTypes": "chatComplete, complete, embed"}),
        req.clone(),
        json!({}),
        Operation::Embeddings,
    );
    assert!(o.verdict);
    assert_eq!(
        o.data.value()["allowedTypes"],
        json!(["chatComplete", "complete", "embed"])
    );
    let o = on_request(
        "default.allowedRequestTypes",
        json!({}),
        req.clone(),
        json!({"supported_endpoints": "complete,chatComplete"}),
        chat,
    );
    assert!(o.verdict);
    assert_eq!(o.data.value()["source"], "metadata");
    let o = on_request(
        "default.allowedRequestTypes",
        json!({}),
        req.clone(),
        json!({}),
        chat,
    );
    assert_eq!(o.data.value()["allowedTypes"], json!(["all"]));
    let keys = json!({"metadataKeys": ["user", "env"], "operator": "all"});
    assert!(
        on_request(
            "default.requiredMetadataKeys",
            keys.clone(),
            req.clone(),
            json!({"user": "u", "env": "p"}),
            chat
        )
        .verdict
    );
    let o = on_request(
        "default.requiredMetadataKeys",
        keys,
        req.clone(),
        json!({"user": "u"}),
        chat,
    );
    assert!(!o.verdict);
    assert_eq!(o.data.value()["missing_metadata_keys"], json!(["env"]));
    assert!(
        on_request(
            "default.requiredMetadataKeys",
            json!({"metadataKeys": ["x"], "operator": "none"}),
            req,
            json!({}),
            chat
        )
        .verdict
    );
}

#[test]
fn mutators() {
    let req = json!({"model": "m", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]});
    let chat = Operation::ChatCompletions;
    let o = on_request(
        "default.addPrefix",
        json!({"prefix": "P: "}),
        req.clone(),
        json!({}),
        chat,
    );
    let Some(Transform::Request(j)) = o.transform else {
        panic!()
    };
    assert_eq!(j["messages"][1]["content"], "P: hi");
    let o = on_request(
        "default.addPrefix",
        json!({"prefix": "P", "applyToRole": "system", "addToExisting": false}),
        req.clone(),
        json!({}),
        chat,
    );
    let Some(Transform::Request(j)) = o.transform else {
        panic!()
    };
    assert_eq!(j["messages"][0]["content"], "P");
    assert_eq!(j["messages"].as_array().unwrap().len(), 3);
    let o = on_request(
        "default.addPrefix",
        json!({"prefix": "P: "}),
        json!({"model": "m", "prompt": "go"}),
        json!({}),
        Operation::Completions,
    );
    let Some(Transform::Request(j)) = o.transform else {
        panic!()
    };
    assert_eq!(j["prompt"], "P: go");
    let o = on_request(
        "default.regexReplace",
        json!({"rule": "/HI/i", "redactText": "[X]"}),
        req.clone(),
        json!({}),
        chat,
    );
    let Some(Transform::Request(j)) = o.transform else {
        panic!()
    };
    assert_eq!(j["messages"][1]["content"], "[X]");
    assert!(o.verdict);
    let o = on_request(
        "default.regexReplace",
        json!({"rule": "hi", "failOnDetection": true}),
        req.clone(),
        json!({}),
        chat,
    );
    assert!(!o.verdict);
    let o = on_request(
        "default.regexReplace",
        json!({"rule": "zzz"}),
        req,
        json!({}),
        chat,
    );
    assert!(o.verdict && o.transform.is_none());
    let o = on_text("portgate.pii", json!({}), "mail me: a.b@example.org");
    assert!(!o.verdict);
    assert_eq!(o.data.value()["detected"]["email"], 1);
    assert!(
        !o.data.to_string().contains("a.b@example.org"),
        "values never in data"
    );
    let o = on_text(
        "portgate.pii",
        json!({"redact": true, "categories": ["email"]}),
        "mail me: a.b@example.org",
    );
    assert!(o.verdict);
    let Some(Transform::Response(r)) = o.transform else {
        panic!()
    };
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "mail me: [REDACTED_EMAIL]"
    );
    assert!(compiled("portgate.pii", json!({"categories": ["dna"]})).is_err());
}

#[test]
fn unknown_and_unsupported_ids_are_refused() {
    let errs = compiled("default.nope", json!({})).unwrap_err();
    assert!(
        errs[0].contains("path: c,id") && errs[0].contains("unknown check"),
        "{errs:?}"
    );
    assert!(compiled("default.jwt", json!({"jwksUri": "x", "headerKey": "y"})).is_err());
    assert!(compiled("default.webhook", json!({})).is_err());
    assert!(compiled("default.webhook", json!({"webhookURL": "not a url"})).is_err());
    assert!(compiled(
        "default.webhook",
        json!({"webhookURL": "https://h.example/x", "headers": "{bad"})
    )
    .is_err());
    assert!(compiled("default.log", json!({"logURL": "https://h.example/x"})).is_ok());
}

/// A webhook's `headers` may carry its own credentials, never framing, `host` or the
/// gateway's own headers.
#[test]
fn webhook_headers_cannot_break_or_redirect_the_request() {
    let hook = |headers: Value| {
        compiled(
            "default.webhook",
            json!({"webhookURL": "https://h.example/x", "headers": headers}),
        )
    };
    assert!(hook(json!({"Authorization": "Bearer t", "x-tenant": "a"})).is_ok());
    for name in [
        "Host",
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "x-portkey-config",
        "x-portgate-hop",
    ] {
        let errs = hook(json!({ name: "v" })).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("cannot be set")),
            "{name}: {errs:?}"
        );
    }
}

#[test]
fn stream_modes() {
    let m = |id: &str, p: Value| compiled(id, p).unwrap().stream_mode();
    assert_eq!(
        m("default.regexMatch", json!({"rule": "x", "not": true})),
        StreamMode::Incremental
    );
    assert_eq!(
        m("default.regexMatch", json!({"rule": "x"})),
        StreamMode::AtEnd
    );
    assert_eq!(
        m("default.jsonSchema", json!({"schema": {}})),
        StreamMode::AtEnd
    );
    assert_eq!(
        m("default.jsonKeys", json!({"keys": ["a"]})),
        StreamMode::AtEnd
    );
    assert_eq!(
        m(
            "default.webhook",
            json!({"webhookURL": "https://h.example"})
        ),
        StreamMode::Never
    );
    assert_eq!(m("portgate.pii", json!({})), StreamMode::Incremental);
}

/// A webhook or log URL is shown in results and errors without its query (where a token
/// often rides) or fragment; it is still called with its query. One with user:password is
/// refused.
#[test]
fn endpoint_urls_are_shown_without_secrets() {
    let e = super::remote::Endpoint::parse("https://h.example/hook?token=s3cr3t#f", true).unwrap();
    assert_eq!(e.shown, "https://h.example/hook");
    assert_eq!(e.path, "/hook?token=s3cr3t");
    assert!(super::remote::Endpoint::parse("https://u:p@h.example/hook", true).is_err());
}
