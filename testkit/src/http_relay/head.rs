//! The heads of HTTP/1.1 messages as the relay handles them: read off a socket up to the blank
//! line, their first line and header values looked up, and their `Connection` header replaced
//! by `Connection: close` with every other byte kept (the SDK signs headers, though not that one).

use std::io::{self, Read};

/// A head larger than this is not an S3 client's or server's: the exchange is dropped.
const MAX_HEAD: usize = 64 << 10;

/// A message head (its first line and header lines, through the blank line that ends them)
/// and the bytes read past it, which start the body.
pub(super) struct ReadHead {
    pub(super) head: Vec<u8>,
    pub(super) past: Vec<u8>,
}

/// Reads from `from`, after the bytes `read` already taken from it, until a whole head has
/// arrived. `Ok(None)` if it ended before a first byte (a client that closes an idle
/// connection); an error if it ended part-way, the head was too large, or a read failed or
/// timed out.
pub(super) fn read_head(from: &mut impl Read, mut read: Vec<u8>) -> io::Result<Option<ReadHead>> {
    let mut buffer = [0u8; 8 << 10];
    loop {
        if let Some(end) = find_blank_line(&read) {
            let past = read.split_off(end);
            return Ok(Some(ReadHead { head: read, past }));
        }
        if read.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        match from.read(&mut buffer)? {
            0 if read.is_empty() => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => read.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Where the head in `bytes` ends: just past its `\r\n\r\n`.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The head's lines without their `\r\n`: the first line, then one per header.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// The first line's space-separated words: a request's method and target, or a response's
/// version and status code.
fn first_words(head: &[u8]) -> (String, String) {
    let first = lines(head).next().unwrap_or_default();
    let text = String::from_utf8_lossy(first);
    let mut words = text.split(' ');
    let one = words.next().unwrap_or_default().to_owned();
    let two = words.next().unwrap_or_default().to_owned();
    (one, two)
}

/// A request head's method and target (`GET`, `/archive/key?x-id=GetObject`).
pub(super) fn method_and_target(head: &[u8]) -> (String, String) {
    first_words(head)
}

/// A response head's status code, 0 if it has none that parses.
pub(super) fn status(head: &[u8]) -> u16 {
    first_words(head).1.parse().unwrap_or(0)
}

/// The value of the head's first header named `name` (any case), trimmed.
pub(super) fn header(head: &[u8], name: &str) -> Option<String> {
    lines(head).skip(1).find_map(|line| {
        let (line_name, value) = split_header(line)?;
        line_name
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| String::from_utf8_lossy(value).trim().to_owned())
    })
}

/// A header line's name and value, split at its first colon.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some((&line[..colon], &line[colon + 1..]))
}

/// `head` with every `Connection` header dropped and `Connection: close` added last, so that
/// the connection carries this one message each way; every other line is kept byte for byte.
pub(super) fn with_connection_close(head: &[u8]) -> Vec<u8> {
    let mut rewritten = Vec::with_capacity(head.len() + 19);
    for (index, line) in lines(head).enumerate() {
        let is_connection = index > 0
            && split_header(line)
                .is_some_and(|(name, _)| name.trim_ascii().eq_ignore_ascii_case(b"connection"));
        if !is_connection {
            rewritten.extend_from_slice(line);
            rewritten.extend_from_slice(b"\r\n");
        }
    }
    rewritten.extend_from_slice(b"Connection: close\r\n\r\n");
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_whole_and_the_body_bytes_after_it_are_kept() {
        let message = b"PUT /archive/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        for chunk in 1..message.len() {
            let mut from = Chunked(message.chunks(chunk).collect());
            let read = read_head(&mut from, Vec::new()).unwrap().unwrap();
            assert_eq!(
                read.head,
                &message[..message.len() - 3],
                "chunks of {chunk}"
            );
            let mut rest = read.past;
            from.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"abc", "chunks of {chunk}");
        }
    }

    #[test]
    fn a_head_after_an_interim_one_starts_with_the_bytes_read_past_that() {
        let mut from = Chunked(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2",
            b"00 OK\r\n\r\nbody",
        ]);
        let interim = read_head(&mut from, Vec::new()).unwrap().unwrap();
        assert_eq!(status(&interim.head), 100);
        let last = read_head(&mut from, interim.past).unwrap().unwrap();
        assert_eq!(last.head, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(last.past, b"body");
    }

    #[test]
    fn a_stream_that_ends_before_a_head_is_none_or_an_error() {
        assert!(
            read_head(&mut Chunked(vec![]), Vec::new())
                .unwrap()
                .is_none()
        );
        let cut = read_head(&mut Chunked(vec![b"GET / HTTP/1.1\r\n"]), Vec::new());
        assert_eq!(cut.err().unwrap().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_connection_header_is_replaced_and_nothing_else_changes() {
        let head = b"GET /a HTTP/1.1\r\nHost: h\r\nconnection: keep-alive\r\nX-Amz-Date: 1\r\n\r\n";
        assert_eq!(
            with_connection_close(head),
            b"GET /a HTTP/1.1\r\nHost: h\r\nX-Amz-Date: 1\r\nConnection: close\r\n\r\n"
        );
        let without = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            with_connection_close(without),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn first_lines_and_headers_are_read() {
        let request = b"GET /archive/k?x-id=GetObject HTTP/1.1\r\nHost: h\r\n\r\n";
        let (method, target) = method_and_target(request);
        assert_eq!(
            (method.as_str(), target.as_str()),
            ("GET", "/archive/k?x-id=GetObject")
        );
        let response = b"HTTP/1.1 206 Partial Content\r\ncontent-length:  12 \r\n\r\n";
        assert_eq!(status(response), 206);
        assert_eq!(header(response, "Content-Length").as_deref(), Some("12"));
        assert_eq!(header(response, "ETag"), None);
    }

    /// A reader that yields its chunks one read at a time.
    struct Chunked<'a>(Vec<&'a [u8]>);

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let n = self.0[0].len().min(out.len());
            out[..n].copy_from_slice(&self.0[0][..n]);
            self.0[0] = &self.0[0][n..];
            if self.0[0].is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }
}
