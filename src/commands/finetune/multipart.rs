//! The `multipart/form-data` body of a file upload (`POST /files`): the `purpose` field, then
//! the file. Hand-written because it is two parts and no dependency of the gateway has an
//! encoder.
//!
//! The file is read whole into the body: one buffer the size of the file plus a few hundred
//! bytes, read straight into place (no second copy). Fine-tuning files are at most a few
//! hundred megabytes, and the dispatcher sends a body it holds (`Bytes`), which is also what
//! lets it resend on a fresh connection when a pooled one turns out closed.

use bytes::Bytes;
use std::io::Read;
use std::path::Path;

/// An encoded upload: the body and its `Content-Type` (which names the boundary).
pub(crate) struct Multipart {
    pub content_type: String,
    pub body: Bytes,
}

/// A boundary that cannot occur in the file by chance: 32 random hex digits (a v4 UUID).
fn boundary() -> String {
    format!("portgate-{}", uuid::Uuid::new_v4().simple())
}

/// A file name as a quoted-string of `Content-Disposition`: quotes and line breaks
/// percent-encoded, as browsers do, so a name cannot end the header or add one.
fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// The head of the form (the `purpose` part and the header of the file part) and its tail.
fn frame(boundary: &str, purpose: &str, filename: &str) -> (String, String) {
    let head = format!(
        "--{boundary}\r\n\
         Content-Disposition: form-data; name=\"purpose\"\r\n\r\n\
         {purpose}\r\n\
         --{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        quoted(filename)
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    (head, tail)
}

/// Encodes bytes already in memory (the unit tests, and any caller that has them).
#[cfg(test)]
pub(crate) fn encode(purpose: &str, filename: &str, file: &[u8]) -> Multipart {
    let boundary = boundary();
    let (head, tail) = frame(&boundary, purpose, filename);
    let mut body = Vec::with_capacity(head.len() + file.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(tail.as_bytes());
    Multipart {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body: Bytes::from(body),
    }
}

/// Reads the file at `path` into an upload named by its file name.
pub(crate) fn read_file(purpose: &str, path: &Path) -> std::io::Result<Multipart> {
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file.jsonl".into());
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    let boundary = boundary();
    let (head, tail) = frame(&boundary, purpose, &filename);
    let mut body = Vec::with_capacity(head.len() + size + tail.len());
    body.extend_from_slice(head.as_bytes());
    file.read_to_end(&mut body)?;
    body.extend_from_slice(tail.as_bytes());
    Ok(Multipart {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn two_parts_with_crlf_and_the_exact_bytes() {
        let file = b"{\"messages\":[]}\n\x00\xff";
        let m = encode("fine-tune", "train.jsonl", file);
        let boundary = m
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        assert_eq!(boundary.len(), "portgate-".len() + 32);
        let mut expected = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"train.jsonl\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        expected.extend_from_slice(file);
        expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(&m.body[..], &expected[..]);
        // A fresh boundary per upload.
        assert_ne!(encode("fine-tune", "a", b"").content_type, m.content_type);
    }

    #[test]
    fn a_file_name_cannot_break_the_header() {
        let m = encode("fine-tune", "a\"b\r\nX-Evil: 1.jsonl", b"");
        let text = String::from_utf8_lossy(&m.body);
        assert!(
            text.contains("filename=\"a%22b%0D%0AX-Evil: 1.jsonl\"\r\n"),
            "{text}"
        );
    }

    #[test]
    fn reads_a_file_into_place() {
        let dir = std::env::temp_dir().join(format!("portgate-mp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("valid.jsonl");
        std::fs::write(&path, b"line\n").unwrap();
        let m = read_file("fine-tune", &path).unwrap();
        let text = String::from_utf8_lossy(&m.body);
        assert!(text.contains("filename=\"valid.jsonl\"\r\n"), "{text}");
        assert!(text.contains("\r\n\r\nline\n\r\n--portgate-"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(read_file("fine-tune", &path).is_err());
    }
}
