//! Multipart uploads of the S3 backend against a real S3-compatible server, `s3s-fs` (see
//! `testkit::servers::s3s_fs`), with parts of 5 MiB, the smallest S3 takes: large objects round-trip byte
//! for byte, a taken key stays as it was, and a put that fails part way (a failing, short or
//! cancelled body, a part failing on every retry) leaves neither an object nor an unfinished
//! upload. s3s-fs checks neither part checksums nor, atomically, `If-None-Match`, so a small
//! proxy in front of it shows what is sent: each part's CRC-32C, and a create-only completion.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, start_server};
use tidemark::storage::s3::MIN_PART_SIZE;
use tidemark::storage::{
    ByteRange, Cancel, ObjectKey, PutOutcome, S3Settings, S3Storage, Storage, StorageError,
};

const MIB: usize = 1 << 20;
const PART: usize = MIN_PART_SIZE as usize;
/// Four whole parts and a part-sized remainder that is not a whole number of MiB.
const LENGTH: usize = 23 * MIB + 12_345;

fn settings(endpoint: &str) -> S3Settings {
    common::s3::test_settings(endpoint, "prod")
}

fn store(endpoint: &str) -> S3Storage {
    S3Storage::new(settings(endpoint)).unwrap()
}

/// Streams `bytes` into a create-only put of `k`.
fn put_streamed(store: &S3Storage, k: &ObjectKey, bytes: &[u8]) -> PutOutcome {
    store
        .put_if_absent_from(k, &mut &bytes[..], bytes.len() as u64, &Cancel::new())
        .unwrap()
}

/// A fresh server and the repository store on its test bucket.
fn server_and_store() -> (S3Server, S3Storage) {
    let server = start_server();
    let store = store(&server.endpoint);
    (server, store)
}

/// Stores `parts` under `name` with an in-memory put, checks the object reads back whole, and
/// says in how many parts it went up (`None`: one PUT).
fn put_in_memory(
    server: &S3Server,
    store: &S3Storage,
    name: &str,
    parts: &[&[u8]],
) -> Option<usize> {
    let stored = store.put_if_absent(&key(name), parts).unwrap();
    assert_eq!(stored, PutOutcome::Created);
    assert!(store.get(&key(name)).unwrap() == parts.concat());
    parts_of(server, name)
}

fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

/// `length` pseudo-random bytes that differ with `seed`.
fn content(seed: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    fastrand::Rng::with_seed(seed).fill(&mut bytes);
    bytes
}

/// How many parts the object under `key` (of the store's "prod" prefix) was uploaded in, from its
/// ETag, which for a multipart object is `HASH-PARTS`; `None` for an object sent in one PUT.
fn parts_of(server: &S3Server, key: &str) -> Option<usize> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "test",
        ))
        .force_path_style(true)
        .endpoint_url(&server.endpoint)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let head = runtime
        .block_on(
            client
                .head_object()
                .bucket(BUCKET)
                .key(format!("prod/{key}"))
                .send(),
        )
        .unwrap();
    let e_tag = head.e_tag().expect("an ETag").trim_matches('"');
    e_tag
        .split_once('-')
        .map(|(_, parts)| parts.parse().unwrap())
}

/// Asserts that nothing is under `k` nor its parent, and that the server holds no part nor
/// record of an upload.
fn assert_nothing_left(store: &S3Storage, server: &S3Server, k: &ObjectKey) {
    assert_eq!(store.head(k).unwrap(), None);
    let parent = key(k.as_str().rsplit_once('/').unwrap().0);
    assert!(store.list(&parent, &Cancel::never()).unwrap().is_empty());
    assert_eq!(server.unfinished_uploads(), Vec::<String>::new());
}

/// Waits until the server has stored a part of an upload: from then on the put is under way.
fn wait_for_a_stored_part(server: &S3Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.stored_parts() == 0 {
        assert!(Instant::now() < deadline, "no part was stored within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A body that yields `bytes`, but on reaching `at` waits until the server has stored a part,
/// then does what `then` says.
struct PartWayBody<'a> {
    bytes: &'a [u8],
    position: usize,
    at: usize,
    then: PartWay,
    server: &'a S3Server,
    reached: bool,
}

enum PartWay {
    /// Fails, as a source whose connection broke.
    Fail,
    /// Ends there, short of the length announced.
    End,
    /// Cancels the token and goes on.
    Cancel(Cancel),
}

impl Read for PartWayBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position == self.at && !self.reached {
            self.reached = true;
            wait_for_a_stored_part(self.server);
            match &self.then {
                PartWay::Fail => {}
                PartWay::End => self.bytes = &self.bytes[..self.at],
                PartWay::Cancel(cancel) => cancel.cancel(),
            }
        }
        if self.reached && matches!(self.then, PartWay::Fail) {
            return Err(StorageError::Transient {
                doing: "read the source".into(),
                reason: "connection reset by peer".into(),
            }
            .into_io());
        }
        let end = if self.position < self.at {
            self.at
        } else {
            self.bytes.len()
        };
        let n = buf.len().min(end - self.position);
        buf[..n].copy_from_slice(&self.bytes[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

#[test]
fn a_large_object_goes_up_in_parts_and_reads_back_byte_for_byte() {
    let (server, store) = server_and_store();
    let k = key("big/base.tar");
    let bytes = content(1, LENGTH);
    assert_eq!(put_streamed(&store, &k, &bytes), PutOutcome::Created);
    assert_eq!(parts_of(&server, "big/base.tar"), Some(5));
    assert_eq!(store.head(&k).unwrap().unwrap().size, LENGTH as u64);
    assert!(store.get(&k).unwrap() == bytes, "the whole object differs");
    // Ranges across each boundary between parts, one over a whole part, and the tail.
    for boundary in [PART, 2 * PART, 3 * PART, 4 * PART] {
        let range = store.get_range(&k, boundary as u64 - 100, 200).unwrap();
        assert!(
            range == bytes[boundary - 100..boundary + 100],
            "bytes differ around offset {boundary}"
        );
    }
    let over_a_part = store
        .get_range(&k, PART as u64 - 1, PART as u64 + 2)
        .unwrap();
    assert!(over_a_part == bytes[PART - 1..2 * PART + 1]);
    let mut tail = Vec::new();
    store
        .get_reader(
            &k,
            ByteRange::starting_at(4 * PART as u64 + 7),
            &Cancel::never(),
        )
        .unwrap()
        .read_to_end(&mut tail)
        .unwrap();
    assert!(tail == bytes[4 * PART + 7..]);
    assert_eq!(server.unfinished_uploads(), Vec::<String>::new());

    // An object already in memory takes the same path.
    let in_memory = content(2, 2 * PART + 1);
    let (first, rest) = in_memory.split_at(3 * MIB);
    assert_eq!(
        put_in_memory(&server, &store, "big/chunk", &[first, rest]),
        Some(3)
    );
}

#[test]
fn objects_up_to_the_part_size_go_up_in_one_put() {
    let (server, store) = server_and_store();
    let bytes = content(3, PART);
    put_streamed(&store, &key("a/whole"), &bytes);
    assert_eq!(parts_of(&server, "a/whole"), None);
    assert_eq!(
        put_in_memory(&server, &store, "a/in-memory", &[&bytes]),
        None
    );
    let one_more = content(4, PART + 1);
    assert_eq!(
        put_in_memory(&server, &store, "a/more", &[&one_more]),
        Some(2)
    );
}

#[test]
fn a_second_multipart_put_finds_the_key_taken_and_leaves_no_upload() {
    let (server, store) = server_and_store();
    let k = key("wal/segment");
    let first = content(5, LENGTH);
    let second = content(6, LENGTH);
    let put = |bytes: &[u8]| put_streamed(&store, &k, bytes);
    assert_eq!(put(&first), PutOutcome::Created);
    // The second upload is sent whole and refused on completion (412), which leaves it open on
    // the server until it is aborted.
    assert_eq!(put(&second), PutOutcome::AlreadyExists);
    assert!(store.get(&k).unwrap() == first, "the first object stays");
    assert_eq!(parts_of(&server, "wal/segment"), Some(5));
    assert_eq!(server.unfinished_uploads(), Vec::<String>::new());
    // The same from memory.
    assert_eq!(
        store.put_if_absent(&k, &[&second]).unwrap(),
        PutOutcome::AlreadyExists
    );
    assert!(store.get(&k).unwrap() == first);
    assert_eq!(server.unfinished_uploads(), Vec::<String>::new());
}

/// A put of LENGTH bytes into a fresh server whose body stops part way, once a part is stored.
struct PartWayPut {
    server: S3Server,
    store: S3Storage,
    k: ObjectKey,
    bytes: Vec<u8>,
}

/// How a part-way put ended: its error, how far the body was read, and whether it got to `at`.
struct PartWayEnd {
    err: StorageError,
    position: usize,
    reached: bool,
}

impl PartWayPut {
    fn new(seed: u64, name: &str) -> PartWayPut {
        let server = start_server();
        let store = store(&server.endpoint);
        PartWayPut {
            k: key(name),
            bytes: content(seed, LENGTH),
            server,
            store,
        }
    }

    /// Puts the bytes through a body that does `then` at `at`; the put must fail.
    fn put(&self, at: usize, then: PartWay, cancel: &Cancel) -> PartWayEnd {
        let mut body = PartWayBody {
            bytes: &self.bytes,
            position: 0,
            at,
            then,
            server: &self.server,
            reached: false,
        };
        let err = self
            .store
            .put_if_absent_from(&self.k, &mut body, LENGTH as u64, cancel)
            .unwrap_err();
        PartWayEnd {
            err,
            position: body.position,
            reached: body.reached,
        }
    }

    fn assert_nothing_left(&self) {
        assert_nothing_left(&self.store, &self.server, &self.k);
    }
}

#[test]
fn a_body_that_fails_after_a_part_was_stored_leaves_no_object_and_no_upload() {
    let put = PartWayPut::new(7, "f/object");
    let PartWayEnd { err, reached, .. } = put.put(12 * MIB, PartWay::Fail, &Cancel::new());
    assert!(reached, "the body failed part way");
    assert!(err.is_retryable(), "the body's own error comes back: {err}");
    assert!(
        err.to_string().contains("connection reset by peer"),
        "{err}"
    );
    put.assert_nothing_left();
}

#[test]
fn a_short_body_after_a_part_was_stored_leaves_no_object_and_no_upload() {
    let put = PartWayPut::new(8, "s/object");
    let err = put.put(12 * MIB + 1, PartWay::End, &Cancel::new()).err;
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().ends_with(&format!(
            "the body ended after {} of the {LENGTH} bytes announced",
            12 * MIB + 1
        )),
        "{err}"
    );
    put.assert_nothing_left();
}

#[test]
fn cancelling_after_a_part_was_stored_leaves_no_object_and_no_upload() {
    let put = PartWayPut::new(9, "c/object");
    let cancel = Cancel::new();
    let PartWayEnd { err, position, .. } =
        put.put(12 * MIB, PartWay::Cancel(cancel.clone()), &cancel);
    assert!(err.is_cancelled(), "{err}");
    assert!(
        position < LENGTH,
        "the put stopped reading the body when cancelled"
    );
    put.assert_nothing_left();
    // Nothing is in the way of the next put.
    assert_eq!(
        put_streamed(&put.store, &put.k, &put.bytes),
        PutOutcome::Created
    );
    assert!(put.store.get(&put.k).unwrap() == put.bytes);
}

/// Everything logged in this test process from now on (the S3 client logs from its own
/// threads, so the capture is process-wide; only one test here installs it).
fn capture_log() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared(Arc::clone(&buffer));
    tracing_subscriber::fmt()
        .with_writer(move || shared.clone())
        .with_ansi(false)
        .init();
    buffer
}

#[test]
fn a_part_that_fails_on_every_retry_aborts_the_upload() {
    let log = capture_log();
    let server = start_server();
    let proxy = start_proxy(&server.endpoint, Some(2));
    let store = store(&proxy.endpoint);
    let k = key("r/object");
    let bytes = content(10, LENGTH);
    let err = store
        .put_if_absent_from(&k, &mut &bytes[..], LENGTH as u64, &Cancel::new())
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("send part 2: HTTP 503") && message.contains("SlowDown"),
        "{message}"
    );
    let seen = proxy.seen();
    let attempts = seen
        .iter()
        .filter(|r| r.is_upload_part() && r.query("partNumber") == Some("2"))
        .count();
    assert_eq!(attempts, 5, "the SDK tried part 2 five times in all");
    // Each retry was logged as it happened.
    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    for attempt in 2..=5 {
        assert!(
            log.contains(&format!(
                "S3 UploadPart failed; trying again, attempt {attempt} of 5"
            )),
            "{log}"
        );
    }
    // The abort comes after every part sent has been answered, so no part lands after it.
    let abort = seen
        .iter()
        .position(|r| r.method() == "DELETE" && r.query("uploadId").is_some())
        .expect("the upload was aborted");
    let last_part = seen.iter().rposition(|r| r.is_upload_part()).unwrap();
    assert!(
        abort > last_part,
        "abort at request {abort}, a part at {last_part}"
    );
    assert!(!seen.iter().any(|r| r.is_complete()), "never completed");
    assert_nothing_left(&store, &server, &k);
}

#[test]
fn parts_carry_their_crc32c_and_completion_is_create_only() {
    let server = start_server();
    let proxy = start_proxy(&server.endpoint, None);
    let store = S3Storage::new(S3Settings {
        storage_class: Some("STANDARD_IA".to_owned()),
        sse: Some("AES256".to_owned()),
        ..settings(&proxy.endpoint)
    })
    .unwrap();
    let k = key("x/object");
    let length = 2 * PART + 7;
    let bytes = content(11, length);
    store
        .put_if_absent_from(&k, &mut &bytes[..], length as u64, &Cancel::new())
        .unwrap();
    assert!(store.get(&k).unwrap() == bytes);
    let seen = proxy.seen();

    let created: Vec<_> = seen
        .iter()
        .filter(|r| r.method() == "POST" && r.query("uploads").is_some())
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0].header("x-amz-checksum-algorithm"),
        Some("CRC32C")
    );
    assert_eq!(
        created[0].header("x-amz-storage-class"),
        Some("STANDARD_IA")
    );
    assert_eq!(
        created[0].header("x-amz-server-side-encryption"),
        Some("AES256")
    );

    let expected: Vec<String> = bytes
        .chunks(PART)
        .map(|part| base64(&crc32c::crc32c(part).to_be_bytes()))
        .collect();
    for (index, checksum) in expected.iter().enumerate() {
        let number = (index + 1).to_string();
        let sent: Vec<_> = seen
            .iter()
            .filter(|r| r.is_upload_part() && r.query("partNumber") == Some(number.as_str()))
            .collect();
        assert_eq!(sent.len(), 1, "part {number}");
        assert_eq!(
            sent[0].header("x-amz-checksum-crc32c"),
            Some(checksum.as_str()),
            "part {number}"
        );
    }

    let completed: Vec<_> = seen.iter().filter(|r| r.is_complete()).collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].header("if-none-match"), Some("*"));
    let body = String::from_utf8(completed[0].body.clone()).unwrap();
    let mut from = 0;
    for (index, checksum) in expected.iter().enumerate() {
        let part = format!("<ChecksumCRC32C>{checksum}</ChecksumCRC32C>");
        let number = format!("<PartNumber>{}</PartNumber>", index + 1);
        let at = body[from..].find(&number).map(|at| from + at);
        let at = at.unwrap_or_else(|| panic!("{number} in order in {body}"));
        let end = body[at..].find("</Part>").unwrap() + at;
        let start = body[..at].rfind("<Part>").unwrap();
        assert!(body[start..end].contains(&part), "{part} in {body}");
        from = end;
    }
}

/// Standard base64, written out here rather than shared with the code under test.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for group in bytes.chunks(3) {
        let mut word = [0u8; 3];
        word[..group.len()].copy_from_slice(group);
        let bits = u32::from_be_bytes([0, word[0], word[1], word[2]]);
        for digit in 0..4 {
            if digit <= group.len() {
                text.push(char::from(
                    ALPHABET[(bits >> (18 - 6 * digit) & 63) as usize],
                ));
            } else {
                text.push('=');
            }
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------
// A recording, fault-injecting HTTP/1.1 proxy.

/// A loopback proxy in front of the server that records every request it passes (head, and
/// body when small) and answers `503 SlowDown` itself to every UploadPart of one part number,
/// as an overloaded S3 does. It serves one request per connection (it adds `connection: close`
/// both ways), which is all the framing it has to know.
struct Proxy {
    endpoint: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl Proxy {
    fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug)]
struct SeenRequest {
    /// The request line and header lines, without line ends.
    lines: Vec<String>,
    /// The body when under 64 KiB (the completion request's XML); empty otherwise.
    body: Vec<u8>,
}

impl SeenRequest {
    fn method(&self) -> &str {
        self.lines[0].split(' ').next().unwrap_or("")
    }

    /// The value of `name` in the query string; `Some("")` for a bare `?uploads`.
    fn query(&self, name: &str) -> Option<&str> {
        let target = self.lines[0].split(' ').nth(1)?;
        let (_, query) = target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.lines[1..].iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }

    fn is_upload_part(&self) -> bool {
        self.method() == "PUT" && self.query("partNumber").is_some()
    }

    fn is_complete(&self) -> bool {
        self.method() == "POST" && self.query("uploadId").is_some()
    }
}

fn start_proxy(upstream: &str, failing_part: Option<u32>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    // The thread lives as long as the test process; each test has its own proxy.
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, recorder) = (upstream.clone(), Arc::clone(&recorder));
            std::thread::spawn(move || {
                let _ = serve_one(client, &upstream, failing_part, &recorder);
            });
        }
    });
    Proxy { endpoint, seen }
}

fn serve_one(
    mut client: TcpStream,
    upstream: &str,
    failing_part: Option<u32>,
    seen: &Mutex<Vec<SeenRequest>>,
) -> io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let lines = read_head(&mut from_client)?;
    if lines.is_empty() {
        return Ok(());
    }
    let mut request = SeenRequest {
        lines,
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .map_or(0, |n| n.parse().unwrap());
    let mut body = vec![0; length];
    from_client.read_exact(&mut body)?;
    let fail = request.is_upload_part()
        && failing_part.is_some_and(|n| request.query("partNumber") == Some(&n.to_string()));
    if length < 64 * 1024 {
        request.body = body.clone();
    }
    let head = closing_head(&request.lines);
    seen.lock().unwrap().push(request);
    if fail {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        write!(
            client,
            "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return Ok(());
    }
    let mut to_upstream = TcpStream::connect(upstream)?;
    to_upstream.write_all(head.as_bytes())?;
    to_upstream.write_all(&body)?;
    let mut from_upstream = BufReader::new(to_upstream);
    let answer = read_head(&mut from_upstream)?;
    client.write_all(closing_head(&answer).as_bytes())?;
    // The server closes the connection after its answer, as asked.
    io::copy(&mut from_upstream, &mut client)?;
    Ok(())
}

/// The lines of a request's or response's head, up to the empty line, without line ends.
fn read_head(reader: &mut impl BufRead) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(lines);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line.to_owned());
    }
}

/// A head that says `connection: close` instead of whatever it said about the connection.
fn closing_head(lines: &[String]) -> String {
    let mut head = String::new();
    for line in lines {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(name, _)| name.eq_ignore_ascii_case("connection"));
        if !is_connection {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("connection: close\r\n\r\n");
    head
}
