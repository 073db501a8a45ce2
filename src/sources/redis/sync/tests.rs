//! The SYNC client against canned servers on loopback and canned readers: both header forms,
//! keep-alives, reads split at every boundary near the end, streams cut short, corrupt RDBs,
//! and the refusals it must translate.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use zeroize::Zeroizing;

use super::*;
use crate::sources::redis::rdb::crc64;

const MARK: &[u8; EOF_MARK_LEN] = b"0123456789abcdef0123456789abcdef01234567";

/// A small RDB: header, a `redis-ver` AUX field, `keys` string keys in db 0, EOF, CRC-64.
fn rdb(keys: usize) -> Vec<u8> {
    let mut body = b"REDIS0010".to_vec();
    body.extend([0xFA, 9]);
    body.extend(b"redis-ver");
    body.extend([6]);
    body.extend(b"7.0.15");
    body.extend([0xFE, 0x00]);
    for i in 0..keys {
        let key = format!("key:{i:05}");
        body.extend([0x00, key.len() as u8]);
        body.extend(key.as_bytes());
        body.extend([5]);
        body.extend(b"value");
    }
    body.push(0xFF);
    let crc = crc64(&body);
    body.extend(crc.to_le_bytes());
    body
}

/// Reads the pieces it was given, one per read call.
struct Pieces(Vec<Vec<u8>>);

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let piece = &mut self.0[0];
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        piece.drain(..n);
        if piece.is_empty() {
            self.0.remove(0);
        }
        Ok(n)
    }
}

fn split(bytes: &[u8], at: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for &to in at {
        pieces.push(bytes[from..to].to_vec());
        from = to;
    }
    pieces.push(bytes[from..].to_vec());
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[test]
fn the_holdback_passes_the_payload_and_drops_the_mark_however_it_is_split() {
    let payload = rdb(3);
    let stream = [&payload[..], MARK].concat();
    for a in 0..=stream.len() {
        for b in [a, a + 1, a + 7, a + 39, a + 40, a + 41, stream.len()] {
            let b = b.min(stream.len());
            let mut holdback = Holdback::new(*MARK);
            let mut out = Vec::new();
            let mut ended = false;
            for piece in split(&stream, &[a, b]) {
                assert!(!ended, "data after the end, split {a}/{b}");
                ended = holdback
                    .push(&piece, &mut |bytes| {
                        out.extend_from_slice(bytes);
                        Ok(())
                    })
                    .unwrap();
            }
            assert!(ended, "split {a}/{b}");
            assert_eq!(out, payload, "split {a}/{b}");
        }
    }
}

#[test]
fn a_mark_lookalike_does_not_end_the_stream() {
    let mut holdback = Holdback::new(*MARK);
    let mut out = Vec::new();
    let mut almost = MARK.to_vec();
    almost[39] = b'8';
    let mut sink = |bytes: &[u8]| {
        out.extend_from_slice(bytes);
        Ok(())
    };
    assert!(!holdback.push(&almost, &mut sink).unwrap());
    assert!(!holdback.push(b"xyz", &mut sink).unwrap());
    assert!(holdback.push(MARK, &mut sink).unwrap());
    assert_eq!(out, [&almost[..], b"xyz"].concat());
}

#[test]
fn both_forms_stream_exactly_the_rdb_with_reads_split_at_every_boundary_near_the_end() {
    let file = rdb(20);
    let len = file.len();
    for form in [Header::Length(len as u64), Header::EofMark(*MARK)] {
        let stream = match form {
            Header::Length(_) => file.clone(),
            Header::EofMark(_) => [&file[..], MARK].concat(),
        };
        // Every split point in the last 60 bytes (mark, trailer, EOF opcode), alone and with
        // byte-by-byte reads after it.
        for at in stream.len().saturating_sub(60)..stream.len() {
            for pieces in [
                split(&stream, &[at]),
                split(&stream, &(at..stream.len()).collect::<Vec<_>>()),
            ] {
                let mut out = Vec::new();
                let received = stream_payload(&mut Pieces(pieces), form.clone(), &mut out)
                    .unwrap_or_else(|e| panic!("{form:?} split at {at}: {e:#}"));
                assert_eq!(out, file, "{form:?} split at {at}");
                assert_eq!(received.summary.bytes, len as u64);
                assert_eq!(received.summary.crc64, Some(crc64(&file[..len - 8])));
                assert_eq!(received.aux.redis_version(), Some("7.0.15"));
            }
        }
    }
}

#[test]
fn the_disk_form_stops_at_its_length_and_leaves_what_follows() {
    let file = rdb(2);
    let stream = [&file[..], b"*1\r\n$4\r\nPING\r\n"].concat();
    let mut reader = Pieces(vec![stream]);
    let mut out = Vec::new();
    stream_payload(&mut reader, Header::Length(file.len() as u64), &mut out).unwrap();
    assert_eq!(out, file);
}

#[test]
fn headers_are_read_in_both_forms() {
    assert_eq!(parse_header("$1234"), Some(Header::Length(1234)));
    assert_eq!(
        parse_header(&format!("$EOF:{}", std::str::from_utf8(MARK).unwrap())),
        Some(Header::EofMark(*MARK))
    );
    assert_eq!(parse_header("$EOF:short"), None);
    assert_eq!(parse_header("+OK"), None);
    assert_eq!(parse_header("$-1"), None);
}

/// What a canned server answers.
#[derive(Clone)]
struct Script {
    /// The reply to AUTH, with its `\r\n`.
    auth: &'static str,
    /// The reply to each REPLCONF, with its `\r\n`.
    replconf: &'static str,
    /// What follows SYNC, written piece by piece; then the server hangs up.
    after_sync: Vec<Vec<u8>>,
}

/// A canned Redis on a loopback port of its own: it answers AUTH, REPLCONF and SYNC as the
/// script says, and returns the commands it received.
fn canned_server(script: Script) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut seen = Vec::new();
        while let Some(command) = read_command(&mut reader) {
            seen.push(command.join(" "));
            match command[0].to_ascii_uppercase().as_str() {
                "AUTH" => writer.write_all(script.auth.as_bytes()).unwrap(),
                "REPLCONF" => writer.write_all(script.replconf.as_bytes()).unwrap(),
                "SYNC" => {
                    for piece in &script.after_sync {
                        if writer
                            .write_all(piece)
                            .and_then(|()| writer.flush())
                            .is_err()
                        {
                            break;
                        }
                    }
                    break;
                }
                other => panic!("canned server got {other}"),
            }
        }
        seen
    });
    (port, handle)
}

/// One command, RESP array or inline; `None` at the end of the stream.
fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let line = line.trim_end();
    let Some(count) = line.strip_prefix('*') else {
        return Some(line.split_whitespace().map(str::to_owned).collect());
    };
    let mut args = Vec::new();
    for _ in 0..count.parse::<usize>().unwrap() {
        let mut len = String::new();
        reader.read_line(&mut len).unwrap();
        let len: usize = len.trim_end()[1..].parse().unwrap();
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).unwrap();
        arg.truncate(len);
        args.push(String::from_utf8(arg).unwrap());
    }
    Some(args)
}

fn endpoint(port: u16, url_user: &str) -> RedisEndpoint {
    RedisEndpoint::resolve_with_env(
        &format!("redis://{url_user}127.0.0.1:{port}/"),
        None,
        None,
        Duration::from_secs(5),
        None::<Zeroizing<String>>,
    )
    .unwrap()
}

fn run(script: Script, url_user: &str) -> (anyhow::Result<Received>, Vec<u8>, Vec<String>) {
    let (port, server) = canned_server(script);
    let mut out = Vec::new();
    let result = receive(&endpoint(port, url_user), &mut out);
    (result, out, server.join().unwrap())
}

fn header_len(len: usize) -> Vec<u8> {
    format!("${len}\r\n").into_bytes()
}

fn header_eof() -> Vec<u8> {
    [b"$EOF:", &MARK[..], b"\r\n"].concat()
}

#[test]
fn keep_alives_before_the_header_are_skipped_in_both_forms() {
    let file = rdb(50);
    for header in [header_len(file.len()), header_eof()] {
        let diskless = header.starts_with(b"$EOF");
        let mut after_sync = vec![b"\n".to_vec(), b"\n\n".to_vec(), header];
        after_sync.push(file[..100].to_vec());
        after_sync.push(file[100..].to_vec());
        if diskless {
            after_sync.push(MARK.to_vec());
        }
        let script = Script {
            auth: "+OK\r\n",
            replconf: "+OK\r\n",
            after_sync,
        };
        let (result, out, seen) = run(script, "backup:pw@");
        let received = result.unwrap();
        assert_eq!(out, file);
        assert_eq!(
            received.form,
            if diskless {
                TransferForm::Diskless
            } else {
                TransferForm::Disk
            }
        );
        assert_eq!(
            seen,
            [
                "AUTH backup pw",
                "REPLCONF capa eof",
                "REPLCONF rdb-only 1",
                "SYNC"
            ]
        );
    }
}

#[test]
fn an_error_reply_to_replconf_is_only_a_warning() {
    let file = rdb(5);
    let script = Script {
        auth: "+OK\r\n",
        replconf: "-ERR Unrecognized REPLCONF option: rdb-only\r\n",
        after_sync: vec![header_eof(), file.clone(), MARK.to_vec()],
    };
    let (result, out, seen) = run(script, "");
    result.unwrap();
    assert_eq!(out, file);
    assert_eq!(seen, ["REPLCONF capa eof", "REPLCONF rdb-only 1", "SYNC"]);
}

#[test]
fn a_stream_closed_midway_says_how_much_arrived() {
    let file = rdb(50);
    for diskless in [false, true] {
        let header = if diskless {
            header_eof()
        } else {
            header_len(file.len())
        };
        let script = Script {
            auth: "+OK\r\n",
            replconf: "+OK\r\n",
            after_sync: vec![header, file[..300].to_vec()],
        };
        let (result, _, _) = run(script, "");
        let error = result.unwrap_err();
        let closed = error
            .downcast_ref::<StreamClosed>()
            .expect("a StreamClosed");
        // Diskless: the last 40 bytes are still held back, but they were received.
        assert_eq!(closed.received, 300);
        assert_eq!(closed.expected, (!diskless).then_some(file.len() as u64));
        let text = error.to_string();
        assert!(
            text.contains("the server closed the replication stream after 300"),
            "{text}"
        );
    }
}

#[test]
fn a_flipped_crc_byte_or_a_wrong_magic_is_refused() {
    let file = rdb(10);
    let mut bad_crc = file.clone();
    let last = bad_crc.len() - 3;
    bad_crc[last] ^= 0x40;
    let mut bad_magic = file.clone();
    bad_magic[0] = b'X';
    for (bad, says) in [
        (bad_crc, "CRC-64"),
        (bad_magic, "does not start with an RDB header"),
    ] {
        for header in [header_len(file.len()), header_eof()] {
            let script = Script {
                auth: "+OK\r\n",
                replconf: "+OK\r\n",
                after_sync: vec![header, bad.clone(), MARK.to_vec()],
            };
            let (result, _, _) = run(script, "");
            let text = format!("{:#}", result.unwrap_err());
            assert!(text.contains(says), "{text}");
        }
    }
}

#[test]
fn refusals_of_sync_are_translated() {
    for (reply, says) in [
        (
            "-NOPERM this user has no permissions to run the 'sync' command\r\n",
            "a snapshot's user needs +sync +replconf +info (grant them with: ACL SETUSER backup +sync +replconf +info)",
        ),
        (
            "-ERR unknown command 'SYNC', with args beginning with: \r\n",
            "this service blocks replication",
        ),
        (
            "-ERR something else\r\n",
            "refused SYNC: ERR something else",
        ),
    ] {
        let script = Script {
            auth: "+OK\r\n",
            replconf: "+OK\r\n",
            after_sync: vec![b"\n".to_vec(), reply.as_bytes().to_vec()],
        };
        let (result, _, _) = run(script, "backup:pw@");
        let text = format!("{:#}", result.unwrap_err());
        assert!(text.contains(says), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}

#[test]
fn an_acl_refusal_of_replconf_is_an_error_with_the_advice() {
    let script = Script {
        auth: "+OK\r\n",
        replconf: "-NOPERM this user has no permissions to run the 'replconf' command\r\n",
        after_sync: vec![],
    };
    let (result, _, seen) = run(script, "backup:pw@");
    let text = format!("{:#}", result.unwrap_err());
    assert!(
        text.contains("refused REPLCONF to ACL user backup"),
        "{text}"
    );
    assert!(
        text.contains("ACL SETUSER backup +sync +replconf +info"),
        "{text}"
    );
    assert_eq!(seen, ["AUTH backup pw", "REPLCONF capa eof"]);
}

#[test]
fn a_refused_password_on_the_replication_connection_says_where_it_came_from() {
    let script = Script {
        auth: "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        replconf: "+OK\r\n",
        after_sync: vec![],
    };
    let (result, out, seen) = run(script, "backup:pw@");
    let text = format!("{:#}", result.unwrap_err());
    assert!(
        text.contains("refused the password (from the URL)"),
        "{text}"
    );
    assert!(!text.contains("pw@") && !text.contains(":pw"), "{text}");
    assert!(out.is_empty());
    assert_eq!(seen, ["AUTH backup pw"]);
}
