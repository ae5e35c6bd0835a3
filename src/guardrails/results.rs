//! What guardrails answer with: Portkey's 446 body (`hooks_failed` with both hook lists),
//! and `hook_results` spliced into an answer, in the field order Portkey writes them.

use super::engine::HookResult;
use bytes::Bytes;

/// Portkey's message for a denial.
pub(crate) const DENY_MESSAGE: &str = "The guardrail checks defined in the config failed. You can find more information in the `hook_results` object.";

/// The `hook_results` object, in Portkey's field order.
pub(crate) struct HookResults<'a> {
    pub before_request_hooks: &'a [HookResult],
    pub after_request_hooks: &'a [HookResult],
}

impl HookResults<'_> {
    /// Appends `{"before_request_hooks":[...],"after_request_hooks":[...]}`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let list = |out: &mut Vec<u8>, hooks: &[HookResult]| {
            out.push(b'[');
            for (i, h) in hooks.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                h.write(out);
            }
            out.push(b']');
        };
        out.extend_from_slice(b"{\"before_request_hooks\":");
        list(out, self.before_request_hooks);
        out.extend_from_slice(b",\"after_request_hooks\":");
        list(out, self.after_request_hooks);
        out.push(b'}');
    }

    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        self.write(&mut out);
        out
    }
}

pub(crate) fn hook_results<'a>(
    before: &'a [HookResult],
    after: &'a [HookResult],
) -> HookResults<'a> {
    HookResults {
        before_request_hooks: before,
        after_request_hooks: after,
    }
}

/// The 446 body: Portkey's error object and both hook lists (byte for byte in its order).
pub(crate) fn deny_body(before: &[HookResult], after: &[HookResult]) -> Bytes {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"error\":{\"message\":");
    super::write::string(&mut out, DENY_MESSAGE);
    out.extend_from_slice(
        b",\"type\":\"hooks_failed\",\"param\":null,\"code\":null},\"hook_results\":",
    );
    hook_results(before, after).write(&mut out);
    out.push(b'}');
    Bytes::from(out)
}

/// Adds `"hook_results":{...}` as the last member of a JSON object, without re-serialising it.
pub(crate) fn splice_results(body: &[u8], results: &HookResults<'_>) -> Option<Bytes> {
    let close = body.iter().rposition(|b| *b == b'}')?;
    let (head, _) = body.split_at(close);
    let empty = head
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let mut out = Vec::with_capacity(body.len() + 4096);
    out.extend_from_slice(head);
    if !empty {
        out.extend_from_slice(b",");
    }
    out.extend_from_slice(b"\"hook_results\":");
    results.write(&mut out);
    out.extend_from_slice(b"}");
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn results_are_spliced_as_the_last_member() {
        let v = serde_json::json!({"before_request_hooks": [], "after_request_hooks": []});
        let r = hook_results(&[], &[]);
        let out = splice_results(br#"{"id":"x","choices":[]} "#, &r).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["id"], "x");
        assert_eq!(parsed["hook_results"], v);
        let out = splice_results(b"{ }", &r).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap()["hook_results"],
            v
        );
        let deny: Value = serde_json::from_slice(&deny_body(&[], &[])).unwrap();
        assert_eq!(deny["error"]["type"], "hooks_failed");
        let raw = String::from_utf8(deny_body(&[], &[]).to_vec()).unwrap();
        assert!(
            raw.starts_with(r#"{"error":{"message":"The guardrail"#),
            "{raw}"
        );
        assert!(raw.ends_with(r#""type":"hooks_failed","param":null,"code":null},"hook_results":{"before_request_hooks":[],"after_request_hooks":[]}}"#), "{raw}");
    }
}
