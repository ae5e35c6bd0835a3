//! Every other `/v1/*` route is forwarded with the same method, path and query, bodies streamed.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_models_is_forwarded_with_query_and_key() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    mock.script([Reply::json(
        200,
        serde_json::json!({"object": "list", "data": []}),
    )]);
    let resp = client()
        .get(gw.url("/v1/models?limit=2"))
        .header("x-portkey-provider", "openai")
        .header("authorization", "Bearer sk-models")
        .header("x-portkey-trace-id", "t-models")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-portkey-trace-id"], "t-models");
    assert_eq!(resp.headers()["x-portkey-provider"], "openai");
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["object"],
        "list"
    );
    let r = &mock.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/v1/models?limit=2");
    assert_eq!(r.header("authorization"), Some("Bearer sk-models"));
    assert_eq!(r.header("host"), Some(mock.addr.to_string().as_str()));
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("x-portkey-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_stream_through() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    mock.script([Reply::json(
        200,
        serde_json::json!({"id": "file-1", "object": "file"}),
    )]);
    let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let resp = client()
        .post(gw.url("/v1/files"))
        .header("x-portkey-provider", "openai")
        .header(
            "content-type",
            "multipart/form-data; boundary=portgate-test",
        )
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/files");
    assert_eq!(r.body.len(), payload.len());
    assert!(r.body == payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_errors_on_passthrough() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    mock.script([Reply::json(
        404,
        serde_json::json!({"error": {"message": "no such file"}}),
    )]);
    let resp = client()
        .delete(gw.url("/v1/files/file-9"))
        .header("x-portkey-provider", "openai")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "provider status passes through");
    assert_eq!(mock.requests()[0].method, "DELETE");
    // No provider: the same 400 as on the LLM routes, nothing forwarded.
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_connect_failure_is_a_json_502() {
    let mut s = test_settings();
    s.providers.insert(
        "openai".into(),
        portgate::settings::ProviderRow {
            base_url: format!("http://127.0.0.1:{}/v1", free_port()),
            auth_header: "authorization".into(),
            stream_usage: true,
        },
    );
    let gw = TestGateway::start(s);
    let resp = client()
        .get(gw.url("/v1/models"))
        .header("x-portkey-provider", "openai")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
}
