//! A fast mock provider for the benchmark: HTTP/1.1 keep-alive, answers every request with the
//! same small chat completion at once, so the measurement is the proxy's cost, not the mock's.
//! A request to a path ending in `/messages` gets the same answer in Anthropic's format; a
//! request whose body asks for `"stream":true` gets an SSE stream of 8 content events, a usage
//! chunk and `[DONE]` (written at once, chunked). The model name selects two more streams: one
//! containing `bench-200` gets 200 content events (a long answer), one containing `bench-hold`
//! gets the response head and one event, then nothing until the client closes (an idle open
//! stream, for memory per open stream).
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
        let leak = |s: String| -> &'static [u8] { Box::leak(s.into_bytes().into_boxed_slice()) };
        let answers = Answers {
            chat: response,
            anthropic,
            sse: leak(sse_response(8)),
            sse_long: leak(sse_response(200)),
            hold: leak(hold_head()),
        };
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, answers));
        }
    });
}

/// The prepared answers, one per kind of request.
#[derive(Clone, Copy)]
struct Answers {
    chat: &'static [u8],
    anthropic: &'static [u8],
    sse: &'static [u8],
    sse_long: &'static [u8],
    hold: &'static [u8],
}

fn chunk(word: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
    )
}

/// The head of a chunked SSE response and its first event, with no end: the stream stays open.
fn hold_head() -> String {
    let event = chunk("Mixing");
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
        event.len()
    )
}

/// `n` content events, the usage chunk and `[DONE]`, as one chunked response with one chunk per
/// event, as providers frame them (written at once: the mock never waits between events).
fn sse_response(n: usize) -> String {
    let words = [
        "Mixing", " red", " and", " yellow", " gives", " orange", ".", "",
    ];
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    let mut push = |event: &str| out.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
    for word in words.iter().cycle().take(n) {
        push(&chunk(word));
    }
    push("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":17,\"completion_tokens\":8,\"total_tokens\":25}}\n\n");
    push("data: [DONE]\n\n");
    out.push_str("0\r\n\r\n");
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn serve(mut stream: TcpStream, answers: Answers) {
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
            let streamed = contains(body, b"\"stream\":true");
            let answer = if messages {
                answers.anthropic
            } else if streamed && contains(body, b"bench-hold") {
                answers.hold
            } else if streamed && contains(body, b"bench-200") {
                answers.sse_long
            } else if streamed {
                answers.sse
            } else {
                answers.chat
            };
            buf.drain(..head_end + 4 + len);
            if stream.write_all(answer).await.is_err() {
                return;
            }
            if std::ptr::eq(answer, answers.hold) {
                // An idle open stream: wait for the client to close.
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
