//! A scripted mock provider: a real HTTP/1.1 server on an ephemeral loopback port that records
//! every request it receives and answers from a script (JSON, SSE with delays, 429 with
//! Retry-After, 5xx, slow answers, resets before or in the middle of a body).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("mock received a JSON body")
    }
}

/// What the mock answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response with `Content-Length`.
    Json {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// `text/event-stream`, chunked, one chunk per event, `delay` before each event.
    Sse {
        events: Vec<String>,
        delay: Duration,
    },
    /// A 200 with any content type and bytes (AWS's binary event stream), sent chunked in
    /// pieces of `piece` bytes, `delay` apart.
    Bytes {
        content_type: String,
        body: Vec<u8>,
        piece: usize,
        delay: Duration,
    },
    /// `text/event-stream`, chunked, one chunk per event, all written at once (a burst), then
    /// the end of the body `end_after` later (at once, in the same write, when zero).
    SseBurst {
        events: Vec<String>,
        end_after: Duration,
    },
    /// Like `Sse`, then the connection is reset instead of ending the stream.
    SseThenReset {
        events: Vec<String>,
        delay: Duration,
    },
    /// Waits before answering.
    Slow { delay: Duration, then: Box<Reply> },
    /// Reads the request and resets the connection without answering.
    Reset,
    /// Declares a `Content-Length`, sends only part of the body, then resets.
    CutBody { declared: usize, sent: String },
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Json {
            status,
            body: body.to_string(),
            headers: vec![],
        }
    }

    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Json {
                status,
                body,
                mut headers,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Json {
                    status,
                    body,
                    headers,
                }
            }
            other => other,
        }
    }

    /// The OpenAI chat completion the mock answers by default, naming the model it was asked for.
    pub fn chat(model: &str, content: &str) -> Reply {
        Reply::json(200, chat_body(model, content))
    }
}

pub fn chat_body(model: &str, content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    })
}

/// OpenAI-style stream events for `words`, ending with `[DONE]`.
pub fn chat_events(model: &str, words: &[&str]) -> Vec<String> {
    let mut events: Vec<String> = words
        .iter()
        .map(|w| {
            let chunk = serde_json::json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]
            });
            format!("data: {chunk}")
        })
        .collect();
    events.push("data: [DONE]".into());
    events
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Reply>,
    fallback: Option<Reply>,
    /// Replies for requests naming a model, before the script (one model's outage).
    by_model: Vec<(String, Reply)>,
    requests: Vec<Recorded>,
    /// Events written before a client went away, per aborted stream.
    aborted_after: Vec<usize>,
    connections: usize,
}

/// A running mock provider; stops when dropped.
pub struct MockProvider {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockProvider {
    /// Starts a mock that answers every request with `Reply::chat` unless scripted otherwise.
    pub async fn start() -> MockProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                s.lock().unwrap().connections += 1;
                // Head and body are separate writes: without this, Nagle holds the body until
                // the gateway's delayed ACK (40 ms a response).
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, s).await;
                });
            }
        });
        MockProvider { addr, shared, task }
    }

    /// The base URL as a provider row would name it.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies, used in order; after the queue, the fallback (or the default chat reply).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().unwrap().script.extend(replies);
    }

    /// The reply to every request for `model`, whatever the script says.
    pub fn for_model(&self, model: &str, reply: Reply) {
        self.shared
            .lock()
            .unwrap()
            .by_model
            .push((model.to_string(), reply));
    }

    /// Forgets every `for_model` reply (the model recovers).
    pub fn clear_model_rules(&self) {
        self.shared.lock().unwrap().by_model.clear();
    }

    /// Requests received for `model`.
    pub fn model_count(&self, model: &str) -> usize {
        let s = self.shared.lock().unwrap();
        let model = Some(model.to_string());
        s.requests.iter().filter(|r| model_of(r) == model).count()
    }

    /// The reply used once the script is exhausted.
    pub fn always(&self, reply: Reply) {
        self.shared.lock().unwrap().fallback = Some(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().unwrap().requests.len()
    }

    pub fn aborted_streams(&self) -> Vec<usize> {
        self.shared.lock().unwrap().aborted_after.clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }
}

fn next_reply(shared: &Mutex<Shared>, req: &Recorded) -> Reply {
    let mut s = shared.lock().unwrap();
    let model = model_of(req);
    if let Some((_, r)) = s.by_model.iter().find(|(m, _)| Some(m) == model.as_ref()) {
        return r.clone();
    }
    if let Some(r) = s.script.pop_front() {
        return r;
    }
    if let Some(r) = &s.fallback {
        return r.clone();
    }
    Reply::chat(model.as_deref().unwrap_or("mock-model"), "hello from mock")
}

fn model_of(req: &Recorded) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| v["model"].as_str().map(str::to_string))
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        let reply = next_reply(&shared, &req);
        shared.lock().unwrap().requests.push(req);
        if !answer(&mut stream, reply, &shared).await? {
            return Ok(());
        }
    }
}

/// Writes one reply; returns whether the connection can serve another request.
async fn answer(
    stream: &mut TcpStream,
    reply: Reply,
    shared: &Mutex<Shared>,
) -> std::io::Result<bool> {
    match reply {
        Reply::Json {
            status,
            body,
            headers,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                reason(status),
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            Ok(true)
        }
        Reply::Sse { events, delay } => stream_events(stream, &events, delay, shared, false).await,
        Reply::SseThenReset { events, delay } => {
            stream_events(stream, &events, delay, shared, true).await
        }
        Reply::Bytes {
            content_type,
            body,
            piece,
            delay,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            for part in body.chunks(piece.max(1)) {
                tokio::time::sleep(delay).await;
                stream
                    .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                    .await?;
                stream.write_all(part).await?;
                stream.write_all(b"\r\n").await?;
                stream.flush().await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            Ok(true)
        }
        Reply::SseBurst { events, end_after } => {
            let mut all = String::from(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            );
            for event in &events {
                let data = format!("{event}\n\n");
                all.push_str(&format!("{:x}\r\n{data}\r\n", data.len()));
            }
            if end_after.is_zero() {
                all.push_str("0\r\n\r\n");
                stream.write_all(all.as_bytes()).await?;
            } else {
                stream.write_all(all.as_bytes()).await?;
                stream.flush().await?;
                tokio::time::sleep(end_after).await;
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Ok(true)
        }
        Reply::Slow { delay, then } => {
            tokio::time::sleep(delay).await;
            Box::pin(answer(stream, *then, shared)).await
        }
        Reply::Reset => {
            reset(stream);
            Ok(false)
        }
        Reply::CutBody { declared, sent } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n{sent}"
            );
            stream.write_all(head.as_bytes()).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(stream);
            Ok(false)
        }
    }
}

async fn stream_events(
    stream: &mut TcpStream,
    events: &[String],
    delay: Duration,
    shared: &Mutex<Shared>,
    then_reset: bool,
) -> std::io::Result<bool> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await?;
    for (i, event) in events.iter().enumerate() {
        tokio::time::sleep(delay).await;
        let data = format!("{event}\n\n");
        let chunk = format!("{:x}\r\n{data}\r\n", data.len());
        let written = stream.write_all(chunk.as_bytes()).await;
        let flushed = match written {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        if flushed.is_err() {
            shared.lock().unwrap().aborted_after.push(i);
            return Ok(false);
        }
    }
    if then_reset {
        tokio::time::sleep(Duration::from_millis(20)).await;
        reset(stream);
        return Ok(false);
    }
    stream.write_all(b"0\r\n\r\n").await?;
    Ok(true)
}

#[allow(deprecated)]
fn reset(stream: &TcpStream) {
    // SO_LINGER 0 makes close() send RST instead of FIN.
    let _ = stream.set_linger(Some(Duration::ZERO));
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Reads one request (head and body, Content-Length or chunked). `None` when the peer closed.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Recorded>> {
    let (head_len, method, path, headers) = loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (
                n,
                req.method.unwrap_or("").to_string(),
                req.path.unwrap_or("").to_string(),
                headers,
            );
        }
        if !fill(stream, buf).await? {
            return Ok(None);
        }
    };
    buf.drain(..head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < len {
            if !fill(stream, buf).await? {
                return Ok(None);
            }
        }
        buf.drain(..len).collect()
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf).await?
    } else {
        Vec::new()
    };
    Ok(Some(Recorded {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    }))
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if !fill(stream, buf).await? {
                return Ok(body);
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            if !fill(stream, buf).await? {
                return Ok(body);
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16384];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}
