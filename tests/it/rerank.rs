//! `POST /v1/rerank` and `GET /v1/health`, as Portkey's 2.0 gateway serves them: Cohere's
//! rerank API natively, Jina's, Voyage's and Together's forwarded, every answer in one shape,
//! metered and priced, with configs (fallback), retries and the cache as for embeddings.

use crate::support::*;
use serde_json::{json, Value};

fn rerank_body() -> Value {
    json!({"model": "rerank-v3.5", "query": "capital of France?",
           "documents": ["Paris is the capital.", {"text": "Berlin is in Germany."}],
           "top_n": 1, "return_documents": true})
}

fn cohere_answer() -> Value {
    json!({"id": "cohere-1", "results": [{"index": 0, "relevance_score": 0.97}],
           "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}})
}

/// The mock's origin, as `https://api.cohere.com` would be.
fn origin(mock: &MockProvider) -> String {
    mock.base_url().trim_end_matches("/v1").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_reranks_natively_in_the_common_shape_and_is_priced() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(200, cohere_answer()));
    let gw = TestGateway::start(test_settings());
    let host = origin(&mock);
    let headers = [
        ("x-portkey-provider", "cohere"),
        ("authorization", "Bearer co-key"),
        ("x-portkey-custom-host", host.as_str()),
    ];
    let resp = client()
        .post(gw.url("/v1/rerank"))
        .header(headers[0].0, headers[0].1)
        .header(headers[1].0, headers[1].1)
        .header(headers[2].0, headers[2].1)
        .json(&rerank_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-portkey-provider"), "cohere");
    // Byte for byte, in Portkey's field order.
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"object":"list","id":"cohere-1","results":[{"index":0,"relevance_score":0.97}],"model":"rerank-v3.5","usage":{"search_units":1},"provider":"cohere"}"#
    );
    // What Cohere received: its v2 request, documents as strings.
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2/rerank");
    assert_eq!(r.header("authorization"), Some("Bearer co-key"));
    assert_eq!(
        r.json(),
        json!({"model": "rerank-v3.5", "query": "capital of France?", "top_n": 1,
               "documents": ["Paris is the capital.", "Berlin is in Germany."]})
    );
    // One search at the catalog's 0.2 cents.
    let m = scrape(&gw).await;
    assert_eq!(
        sample(
            &m,
            "portgate_cost_usd_total",
            &[("provider", "cohere"), ("model", "rerank-v3.5")]
        ),
        Some(0.002)
    );
    assert_eq!(
        sample(
            &m,
            "portgate_requests_total",
            &[("route", "rerank"), ("status_class", "2xx")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_rerank_apis_answer_in_the_common_shape() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(test_settings());
    let base = mock.base_url();
    // Voyage: `top_k` for `top_n`, answers in `data` with the document as a string.
    mock.script([Reply::json(
        200,
        json!({"object": "list", "data": [{"index": 0, "relevance_score": 0.8, "document": "Paris is the capital."}],
               "model": "rerank-2", "usage": {"total_tokens": 26}}),
    )]);
    let voyage = [
        ("x-portkey-provider", "voyage"),
        ("authorization", "Bearer pa-key"),
        ("x-portkey-custom-host", base.as_str()),
    ];
    let (status, _, v) = chat(&gw, "/v1/rerank", &voyage, rerank_body()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"object": "list", "results": [{"index": 0, "relevance_score": 0.8,
               "document": {"text": "Paris is the capital."}}], "model": "rerank-2",
               "usage": {"search_units": 26}, "provider": "voyage"})
    );
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/rerank");
    assert_eq!(r.json()["top_k"], 1);
    assert!(r.json().get("top_n").is_none());
    // Jina: the request as the client sent it.
    mock.script([Reply::json(
        200,
        json!({"model": "jina-reranker-v2-base-multilingual",
               "results": [{"index": 1, "relevance_score": 0.4, "document": {"text": "Berlin is in Germany."}}],
               "usage": {"total_tokens": 30, "prompt_tokens": 30}}),
    )]);
    let jina = [
        ("x-portkey-provider", "jina"),
        ("authorization", "Bearer jina-key"),
        ("x-portkey-custom-host", base.as_str()),
    ];
    let (status, _, v) = chat(&gw, "/v1/rerank", &jina, rerank_body()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["results"][0]["document"],
        json!({"text": "Berlin is in Germany."})
    );
    assert_eq!(v["usage"], json!({"search_units": 30}));
    assert_eq!(mock.requests()[1].json(), rerank_body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerank_falls_back_is_cached_and_refused_where_there_is_none() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    // Mistral has no rerank API: refused with Portkey's message, nothing sent.
    let (status, _, v) = chat(
        &gw,
        "/v1/rerank",
        &[
            ("x-portkey-provider", "mistral-ai"),
            ("authorization", "Bearer k"),
        ],
        rerank_body(),
    )
    .await;
    assert_eq!(
        (status, v),
        (
            500,
            json!({"status": "failure", "message": "rerank is not supported by mistral-ai"})
        )
    );
    assert_eq!(b.request_count(), 0);
    // A missing field is the client's error, before anything is sent.
    let (status, _, _) = chat(
        &gw,
        "/v1/rerank",
        &[
            ("x-portkey-provider", "jina"),
            ("authorization", "Bearer k"),
        ],
        json!({"model": "m", "documents": []}),
    )
    .await;
    assert_eq!(status, 400);

    // A fallback from a failing Cohere to Jina, then the cache answers the same request.
    a.always(Reply::json(503, json!({"message": "overloaded"})));
    let jina = MockProvider::start().await;
    jina.always(Reply::json(
        200,
        json!({"model": "jina-reranker-v2", "results": [{"index": 0, "relevance_score": 0.9}],
               "usage": {"total_tokens": 12}}),
    ));
    let config = json!({
        "strategy": {"mode": "fallback"},
        "cache": {"mode": "simple"},
        "targets": [
            {"provider": "cohere", "api_key": "co", "custom_host": origin(&a)},
            {"provider": "jina", "api_key": "ji", "custom_host": jina.base_url()}
        ]
    })
    .to_string();
    let with_config = [("x-portkey-config", config.as_str())];
    let send = || chat(&gw, "/v1/rerank", &with_config, rerank_body());
    let (status, h, v) = send().await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(header(&h, "x-portkey-provider"), "jina");
    assert_eq!(v["provider"], "jina");
    assert_eq!(header(&h, "x-portkey-cache-status"), "MISS");
    assert_eq!(a.requests()[0].path, "/v2/rerank");
    let (status, h, again) = send().await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-cache-status"), "HIT");
    assert_eq!(again, v);
    assert_eq!(jina.request_count(), 1, "the hit was not sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_like_portkeys_2_0_gateway() {
    let mut s = test_settings();
    // Health is answered before any gateway key is asked for.
    s.gateway_keys = vec!["sha256:".to_string() + &"0".repeat(64)];
    let gw = TestGateway::start(s);
    let resp = client().get(gw.url("/v1/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "content-type"), "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"status": "success", "message": "Server is healthy",
               "version": env!("CARGO_PKG_VERSION")})
    );
    // Any other route still asks for the key.
    let resp = client()
        .post(gw.url("/v1/rerank"))
        .json(&rerank_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
