//! A fast mock provider for the benchmark: HTTP/1.1 keep-alive, answers every request with the
//! same small chat completion at once, so the measurement is the proxy's cost, not the mock's.
//! A request to a path ending in `/messages` gets the same answer in Anthropic's format; a
//! request whose body asks for `"stream":true` gets an SSE stream of 8 content events, a usage
//! chunk and `[DONE]` (written at once, chunked).
//!
//! Usage: `bench_mock <addr>` (default 127.0.0.1:18080).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANTHROPIC_BODY: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"Mixing red and yellow gives orange."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":17,"output_tokens":8}}"#;

const BODY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Mixing red and yellow gives orange."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":17,"completion_tokens":8,"total_tokens":25}}"#;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let response: &'static [u8] = Box::leak(response.into_bytes().into_boxed_slice());
        let anthropic = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANTHROPIC_BODY}",
            ANTHROPIC_BODY.len()
        );
        let anthropic: &'static [u8] = Box::leak(anthropic.into_bytes().into_boxed_slice());
        let sse: &'static [u8] = Box::leak(sse_response().into_bytes().into_boxed_slice());
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, [response, anthropic, sse]));
        }
    });
}

/// 8 content events, the usage chunk and `[DONE]`, as one chunked response.
fn sse_response() -> String {
    let mut events = String::new();
    for word in [
        "Mixing", " red", " and", " yellow", " gives", " orange", ".", "",
    ] {
        events.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    events.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":17,\"completion_tokens\":8,\"total_tokens\":25}}\n\n");
    events.push_str("data: [DONE]\n\n");
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{events}\r\n0\r\n\r\n",
        events.len()
    )
}

async fn serve(mut stream: TcpStream, [response, anthropic, sse]: [&'static [u8]; 3]) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Parse as many complete requests as the buffer holds (head + Content-Length body).
        while let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() < head_end + 4 + len {
                break;
            }
            let messages = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .is_some_and(|p| p.ends_with("/messages"));
            let body = &buf[head_end + 4..head_end + 4 + len];
            let streamed = body.windows(13).any(|w| w == b"\"stream\":true");
            buf.drain(..head_end + 4 + len);
            let answer = match (messages, streamed) {
                (true, _) => anthropic,
                (false, true) => sse,
                (false, false) => response,
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
