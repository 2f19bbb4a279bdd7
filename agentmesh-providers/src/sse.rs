//! Server-sent events (the WHATWG `text/event-stream` format) read from a blocking reader:
//! what both providers stream.

use std::io::{self, BufRead, Read};

/// The longest line accepted: a streamed chunk is small; a line this long is not a stream.
const MAX_LINE: usize = 4 << 20;

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Reads events one at a time. Lines end with `\n` or `\r\n`; comments (`:`) and fields
/// other than `event` and `data` (`id`, `retry`) are skipped.
pub(crate) struct SseReader<R> {
    inner: R,
    line: Vec<u8>,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R) -> SseReader<R> {
        SseReader {
            inner,
            line: Vec::new(),
        }
    }

    /// The next event, or `None` at the end of the stream. An event cut off by the end of
    /// the stream is dropped, as the format says.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut event = None;
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let n = Read::take(&mut self.inner, MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.line)?;
            if n == 0 {
                return Ok(None);
            }
            if self.line.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "event-stream line longer than 4 MiB",
                ));
            }
            if self.line.last() != Some(&b'\n') {
                return Ok(None); // cut off mid-line
            }
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                match data.take() {
                    Some(data) => return Ok(Some(SseEvent { event, data })),
                    None => {
                        event = None;
                        continue;
                    }
                }
            }
            let line = std::str::from_utf8(&self.line).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, "event-stream line is not UTF-8")
            })?;
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "" => {} // a comment (keep-alive)
                "event" => event = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<SseEvent> {
        let mut r = SseReader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn events_comments_and_multiline_data() {
        let evs = all(concat!(
            ": keep-alive\n\n",
            "event: message_start\r\ndata: {\"a\":1}\r\n\r\n",
            "data: one\ndata:two\nid: 7\nretry: 10\n\n",
            "data: [DONE]\n\n",
            "data: cut off"
        ));
        assert_eq!(
            evs,
            [
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        assert!(all("").is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        let mut r = SseReader::new(&b"data: \xff\xfe\n\n"[..]);
        assert!(r.next_event().is_err());
    }
}
