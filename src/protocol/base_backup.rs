//! The BASE_BACKUP command for each server version, and a decoder that turns the server's
//! answer into events, without I/O.
//!
//! PostgreSQL 15+ sends one CopyOut stream whose CopyData start with a type byte (`n` new
//! archive, `d` data, `p` progress, `m` manifest follows). PostgreSQL 13–14 send one CopyOut per
//! tablespace (the base directory last) and then one for the manifest, with tar data that omits
//! the two closing zero blocks. Both are preceded by a result set with the start LSN and one
//! listing the tablespaces, and followed by one with the end LSN.

use anyhow::{Context, bail};
use bytes::Bytes;
use postgres_protocol::message::backend::Message;

use super::connection::row_values;
use crate::pg::{Lsn, PgMajor, TimelineId};

/// `server_version_num` from which the new, parenthesized syntax is the only one.
pub const NEW_SYNTAX_FROM: u32 = 150000;
/// `server_version_num` from which backup manifests exist.
pub const MANIFEST_FROM: u32 = 130000;

/// The most tablespaces a backup may list: a server listing more is not believed (every row is
/// kept until the backup ends).
pub const MAX_TABLESPACES: usize = 10_000;
/// The largest manifest a backup may send: the largest the repository stores
/// (`repo::limits::BACKUP_MANIFEST`, which `backup/` checks is the same).
pub const MAX_MANIFEST_LEN: u64 = 1 << 30;
/// The longest tablespace location: PostgreSQL's MAXPGPATH less its terminating zero.
pub const MAX_LOCATION_LEN: usize = 1023;

/// What to ask the server for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseBackupOptions {
    pub label: String,
    /// Fast (immediate) checkpoint rather than a spread one.
    pub fast_checkpoint: bool,
    /// Include the WAL the backup needs in the base archive.
    pub include_wal: bool,
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl BaseBackupOptions {
    /// The command for a server of `server_version_num`.
    ///
    /// The server is told not to wait for its WAL to be archived (WAIT false / NOWAIT): Tidemark
    /// waits itself, for the WAL to be in its own repository, which is the stronger promise, and
    /// within `--archive-timeout` even when archive_command keeps failing — the server's own wait
    /// has no limit.
    pub fn command(&self, server_version_num: u32) -> anyhow::Result<String> {
        // A closed list, not a floor: a later major's backup is refused, not guessed at.
        PgMajor::from_server_version_num(server_version_num)?;
        let label = quote(&self.label);
        Ok(if server_version_num >= NEW_SYNTAX_FROM {
            let checkpoint = if self.fast_checkpoint {
                "fast"
            } else {
                "spread"
            };
            let wal = if self.include_wal { ", WAL" } else { "" };
            format!(
                "BASE_BACKUP (LABEL {label}, PROGRESS, CHECKPOINT '{checkpoint}', WAIT false{wal}, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP, TARGET 'client')"
            )
        } else {
            let fast = if self.fast_checkpoint { " FAST" } else { "" };
            let wal = if self.include_wal { " WAL" } else { "" };
            // PostgreSQL 12 has no manifest; Tidemark's own CRC-32C of each file remains.
            let manifest = if server_version_num >= MANIFEST_FROM {
                " MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'"
            } else {
                ""
            };
            format!("BASE_BACKUP LABEL {label} PROGRESS{fast}{wal} NOWAIT TABLESPACE_MAP{manifest}")
        })
    }
}

/// A tablespace the backup covers, as the server lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceEntry {
    /// `None` for the base directory (always listed last).
    pub oid: Option<u32>,
    pub location: Option<String>,
    /// Estimated size in KiB (sent with PROGRESS).
    pub size_kib: Option<u64>,
}

/// What the server's answer says, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupEvent {
    Started {
        start_lsn: Lsn,
        timeline: TimelineId,
    },
    Tablespaces(Vec<TablespaceEntry>),
    /// A tar archive begins: `base.tar` or `<oid>.tar`, with the tablespace's location.
    ArchiveStart {
        name: String,
        tablespace: Option<TablespaceEntry>,
    },
    ArchiveData(Bytes),
    ArchiveEnd,
    /// Bytes sent so far (of the total the tablespace sizes announced).
    Progress(u64),
    ManifestData(Bytes),
    Finished {
        end_lsn: Lsn,
        timeline: TimelineId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    StartRow,
    Tablespaces,
    /// Waiting for a CopyOut (legacy) or in the single CopyOut (new).
    Copy,
    EndRow,
    Done,
}

/// Decodes the server's answer to BASE_BACKUP, message by message.
pub struct BaseBackupDecoder {
    new_protocol: bool,
    phase: Phase,
    tablespaces: Vec<TablespaceEntry>,
    /// Legacy: how many per-tablespace CopyOuts have started.
    legacy_archives: usize,
    in_archive: bool,
    in_manifest: bool,
    /// Manifest bytes received so far: the manifest is kept whole until it is stored.
    manifest_len: u64,
    pending_row: Option<Vec<Option<String>>>,
}

fn lsn_and_timeline(row: &[Option<String>]) -> anyhow::Result<(Lsn, TimelineId)> {
    let lsn = row
        .first()
        .cloned()
        .flatten()
        .context("no LSN in the row")?
        .parse::<Lsn>()?;
    let timeline = row
        .get(1)
        .cloned()
        .flatten()
        .context("no timeline in the row")?
        .parse::<u32>()
        .context("timeline is not a number")?;
    Ok((lsn, TimelineId(timeline)))
}

impl BaseBackupDecoder {
    pub fn new(server_version_num: u32) -> BaseBackupDecoder {
        BaseBackupDecoder {
            new_protocol: server_version_num >= NEW_SYNTAX_FROM,
            phase: Phase::StartRow,
            tablespaces: Vec::new(),
            legacy_archives: 0,
            in_archive: false,
            in_manifest: false,
            manifest_len: 0,
            pending_row: None,
        }
    }

    /// Whether the answer is complete (ReadyForQuery seen).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Feeds one message; returns the events it completes.
    pub fn feed(&mut self, message: Message) -> anyhow::Result<Vec<BackupEvent>> {
        let mut events = Vec::new();
        match (self.phase, message) {
            (Phase::StartRow | Phase::Tablespaces | Phase::EndRow, Message::RowDescription(_)) => {}
            (Phase::StartRow | Phase::EndRow, Message::DataRow(row)) => {
                self.pending_row = Some(row_values(&row)?)
            }
            (Phase::StartRow, Message::CommandComplete(_)) => {
                let (start_lsn, timeline) = lsn_and_timeline(
                    &self
                        .pending_row
                        .take()
                        .context("BASE_BACKUP sent no start position")?,
                )?;
                events.push(BackupEvent::Started {
                    start_lsn,
                    timeline,
                });
                self.phase = Phase::Tablespaces;
            }
            (Phase::Tablespaces, Message::DataRow(row)) => {
                if self.tablespaces.len() == MAX_TABLESPACES {
                    bail!(
                        "the server listed more than {MAX_TABLESPACES} tablespaces for BASE_BACKUP; Tidemark backs up at most that many"
                    );
                }
                let values = row_values(&row)?;
                if let Some(location) = values.get(1).cloned().flatten()
                    && location.len() > MAX_LOCATION_LEN
                {
                    bail!(
                        "the server listed a tablespace location of {} bytes for BASE_BACKUP, longer than PostgreSQL's {MAX_LOCATION_LEN}",
                        location.len()
                    );
                }
                let oid = values
                    .first()
                    .cloned()
                    .flatten()
                    .map(|o| o.parse::<u32>())
                    .transpose()
                    .context("tablespace oid")?;
                self.tablespaces.push(TablespaceEntry {
                    oid,
                    location: values.get(1).cloned().flatten(),
                    size_kib: values
                        .get(2)
                        .cloned()
                        .flatten()
                        .and_then(|s| s.parse().ok()),
                });
            }
            (Phase::Tablespaces, Message::CommandComplete(_)) => {
                events.push(BackupEvent::Tablespaces(self.tablespaces.clone()));
                self.phase = Phase::Copy;
            }
            (Phase::Copy, Message::CopyOutResponse(_)) => {
                if !self.new_protocol {
                    // One CopyOut per tablespace in the listed order, then the manifest.
                    if self.legacy_archives < self.tablespaces.len() {
                        let tablespace = self.tablespaces[self.legacy_archives].clone();
                        let name = match tablespace.oid {
                            Some(oid) => format!("{oid}.tar"),
                            None => "base.tar".to_owned(),
                        };
                        self.legacy_archives += 1;
                        self.in_archive = true;
                        events.push(BackupEvent::ArchiveStart {
                            name,
                            tablespace: Some(tablespace),
                        });
                    } else {
                        self.in_manifest = true;
                    }
                }
            }
            (Phase::Copy, Message::CopyData(data)) => {
                let bytes = Bytes::copy_from_slice(data.data());
                if self.new_protocol {
                    self.feed_typed_copy_data(bytes, &mut events)?;
                } else if self.in_manifest {
                    events.push(self.manifest_data(bytes)?);
                } else {
                    events.push(BackupEvent::ArchiveData(bytes));
                }
            }
            (Phase::Copy, Message::CopyDone) => {
                if self.in_archive {
                    events.push(BackupEvent::ArchiveEnd);
                    self.in_archive = false;
                }
                self.in_manifest = false;
                if self.new_protocol || self.legacy_archives == self.tablespaces.len() {
                    // The manifest may still come as one more CopyOut in the legacy protocol.
                    if self.new_protocol {
                        self.phase = Phase::EndRow;
                    }
                }
            }
            (Phase::Copy, Message::RowDescription(_)) if !self.new_protocol => {
                self.phase = Phase::EndRow
            }
            (Phase::EndRow, Message::CommandComplete(_)) => {
                if let Some(row) = self.pending_row.take() {
                    let (end_lsn, timeline) = lsn_and_timeline(&row)?;
                    events.push(BackupEvent::Finished { end_lsn, timeline });
                }
            }
            (Phase::EndRow, Message::ReadyForQuery(_)) => self.phase = Phase::Done,
            (phase, _) => {
                bail!("unexpected message from the server during BASE_BACKUP ({phase:?})")
            }
        }
        Ok(events)
    }

    fn feed_typed_copy_data(
        &mut self,
        bytes: Bytes,
        events: &mut Vec<BackupEvent>,
    ) -> anyhow::Result<()> {
        let Some((&kind, rest)) = bytes.split_first() else {
            bail!("empty CopyData in BASE_BACKUP");
        };
        match kind {
            b'n' => {
                let mut parts = rest.split(|&b| b == 0);
                let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let location =
                    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                if self.in_archive {
                    events.push(BackupEvent::ArchiveEnd);
                }
                self.in_archive = true;
                let tablespace = if location.is_empty() {
                    self.tablespaces.iter().find(|t| t.oid.is_none()).cloned()
                } else {
                    self.tablespaces
                        .iter()
                        .find(|t| t.location.as_deref() == Some(&location))
                        .cloned()
                };
                events.push(BackupEvent::ArchiveStart { name, tablespace });
            }
            b'd' if self.in_manifest => events.push(self.manifest_data(bytes.slice(1..))?),
            b'd' => events.push(BackupEvent::ArchiveData(bytes.slice(1..))),
            b'p' => {
                let done = rest.get(..8).context("short progress message")?;
                events.push(BackupEvent::Progress(u64::from_be_bytes(
                    done.try_into().expect("8 bytes"),
                )));
            }
            b'm' => {
                if self.in_archive {
                    events.push(BackupEvent::ArchiveEnd);
                    self.in_archive = false;
                }
                self.in_manifest = true;
            }
            other => bail!("unknown BASE_BACKUP message type {:?}", other as char),
        }
        Ok(())
    }

    /// The event of a piece of the manifest, refused once the manifest grows past the largest
    /// the repository stores.
    fn manifest_data(&mut self, bytes: Bytes) -> anyhow::Result<BackupEvent> {
        self.manifest_len += bytes.len() as u64;
        if self.manifest_len > MAX_MANIFEST_LEN {
            bail!(
                "the server's backup manifest is larger than {MAX_MANIFEST_LEN} bytes, the most Tidemark stores"
            );
        }
        Ok(BackupEvent::ManifestData(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    /// Encodes one backend message as the server sends it: tag, length, body.
    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn row_description(columns: &[&str]) -> Vec<u8> {
        let mut body = BytesMut::new();
        body.put_i16(columns.len() as i16);
        for name in columns {
            body.put_slice(name.as_bytes());
            body.put_u8(0);
            body.put_i32(0); // table oid
            body.put_i16(0); // column
            body.put_i32(25); // type: text
            body.put_i16(-1);
            body.put_i32(-1);
            body.put_i16(0);
        }
        message(b'T', &body)
    }

    fn data_row(values: &[Option<&str>]) -> Vec<u8> {
        let mut body = BytesMut::new();
        body.put_i16(values.len() as i16);
        for value in values {
            match value {
                Some(v) => {
                    body.put_i32(v.len() as i32);
                    body.put_slice(v.as_bytes());
                }
                None => body.put_i32(-1),
            }
        }
        message(b'D', &body)
    }

    fn command_complete(tag: &str) -> Vec<u8> {
        message(b'C', format!("{tag}\0").as_bytes())
    }

    fn copy_out() -> Vec<u8> {
        message(b'H', &[0, 0, 0])
    }

    fn copy_data(bytes: &[u8]) -> Vec<u8> {
        message(b'd', bytes)
    }

    fn decode(server_version_num: u32, stream: Vec<Vec<u8>>) -> Vec<BackupEvent> {
        let mut buffer = BytesMut::from(&stream.concat()[..]);
        let mut decoder = BaseBackupDecoder::new(server_version_num);
        let mut events = Vec::new();
        while let Some(message) = Message::parse(&mut buffer).unwrap() {
            events.extend(decoder.feed(message).unwrap());
        }
        assert!(decoder.is_done(), "the stream ended before ReadyForQuery");
        events
    }

    fn start_and_tablespaces() -> Vec<Vec<u8>> {
        vec![
            row_description(&["recptr", "tli"]),
            data_row(&[Some("0/B000028"), Some("1")]),
            command_complete("SELECT"),
            row_description(&["spcoid", "spclocation", "size"]),
            data_row(&[Some("16385"), Some("/srv/ts1"), Some("8")]),
            data_row(&[None, None, Some("30000")]),
            command_complete("SELECT"),
        ]
    }

    fn end() -> Vec<Vec<u8>> {
        vec![
            row_description(&["recptr", "tli"]),
            data_row(&[Some("0/B000138"), Some("1")]),
            command_complete("SELECT"),
            command_complete("BASE_BACKUP"),
            message(b'Z', b"I"),
        ]
    }

    fn expected_events() -> Vec<BackupEvent> {
        let ts = TablespaceEntry {
            oid: Some(16385),
            location: Some("/srv/ts1".into()),
            size_kib: Some(8),
        };
        let base = TablespaceEntry {
            oid: None,
            location: None,
            size_kib: Some(30000),
        };
        vec![
            BackupEvent::Started {
                start_lsn: Lsn(0xB000028),
                timeline: TimelineId(1),
            },
            BackupEvent::Tablespaces(vec![ts.clone(), base.clone()]),
            BackupEvent::ArchiveStart {
                name: "16385.tar".into(),
                tablespace: Some(ts),
            },
            BackupEvent::ArchiveData(Bytes::from_static(b"tablespace tar")),
            BackupEvent::ArchiveEnd,
            BackupEvent::ArchiveStart {
                name: "base.tar".into(),
                tablespace: Some(base),
            },
            BackupEvent::ArchiveData(Bytes::from_static(b"base tar 1")),
            BackupEvent::ArchiveData(Bytes::from_static(b"base tar 2")),
            BackupEvent::ArchiveEnd,
            BackupEvent::ManifestData(Bytes::from_static(b"{manifest}")),
            BackupEvent::Finished {
                end_lsn: Lsn(0xB000138),
                timeline: TimelineId(1),
            },
        ]
    }

    #[test]
    fn decodes_the_single_copy_stream_of_postgresql_15() {
        let mut stream = start_and_tablespaces();
        stream.extend([
            copy_out(),
            copy_data(b"n16385.tar\0/srv/ts1\0"),
            copy_data(b"dtablespace tar"),
            copy_data(b"nbase.tar\0\0"),
            copy_data(b"dbase tar 1"),
            copy_data(&[b'p', 0, 0, 0, 0, 0, 0, 0x10, 0]),
            copy_data(b"dbase tar 2"),
            copy_data(b"m"),
            copy_data(b"d{manifest}"),
            message(b'c', b""),
        ]);
        stream.extend(end());
        let mut expected = expected_events();
        expected.insert(7, BackupEvent::Progress(0x1000));
        assert_eq!(decode(150018, stream), expected);
    }

    #[test]
    fn decodes_one_copy_per_tablespace_then_the_manifest_of_postgresql_13_and_14() {
        let mut stream = start_and_tablespaces();
        stream.extend([
            copy_out(),
            copy_data(b"tablespace tar"),
            message(b'c', b""),
            copy_out(),
            copy_data(b"base tar 1"),
            copy_data(b"base tar 2"),
            message(b'c', b""),
            copy_out(),
            copy_data(b"{manifest}"),
            message(b'c', b""),
        ]);
        stream.extend(end());
        assert_eq!(decode(140010, stream), expected_events());
    }

    /// Feeds `stream` until the decoder refuses a message; the refusal. Messages are made as
    /// they are fed, so a stream of a GiB is never held whole.
    fn first_refusal(server_version_num: u32, stream: impl IntoIterator<Item = Vec<u8>>) -> String {
        let mut decoder = BaseBackupDecoder::new(server_version_num);
        for bytes in stream {
            let mut buffer = BytesMut::from(&bytes[..]);
            let message = Message::parse(&mut buffer)
                .unwrap()
                .expect("one whole message");
            if let Err(e) = decoder.feed(message) {
                return e.to_string();
            }
        }
        panic!("every message was accepted");
    }

    #[test]
    fn a_manifest_larger_than_the_repository_stores_is_refused() {
        let piece = [&b"d"[..], &vec![b' '; 1 << 20]].concat();
        let pieces = (MAX_MANIFEST_LEN >> 20) as usize + 1;
        let mut start = start_and_tablespaces();
        start.extend([copy_out(), copy_data(b"m")]);
        let stream = start
            .into_iter()
            .chain(std::iter::repeat_with(|| copy_data(&piece)).take(pieces));
        assert_eq!(
            first_refusal(150018, stream),
            "the server's backup manifest is larger than 1073741824 bytes, the most Tidemark stores"
        );
        let mut legacy_start = start_and_tablespaces();
        legacy_start.extend([
            copy_out(),
            message(b'c', b""),
            copy_out(),
            message(b'c', b""),
        ]);
        legacy_start.push(copy_out());
        let legacy = legacy_start
            .into_iter()
            .chain(std::iter::repeat_with(|| copy_data(&piece[1..])).take(pieces));
        assert!(first_refusal(140010, legacy).contains("manifest is larger"));
    }

    #[test]
    fn a_tablespace_list_longer_than_any_server_sends_is_refused() {
        let mut stream = start_and_tablespaces();
        stream.truncate(4);
        stream.extend(std::iter::repeat_n(
            data_row(&[Some("16385"), Some("/srv/ts1"), Some("8")]),
            MAX_TABLESPACES + 1,
        ));
        assert_eq!(
            first_refusal(150018, stream),
            "the server listed more than 10000 tablespaces for BASE_BACKUP; Tidemark backs up at most that many"
        );
        let mut long = start_and_tablespaces();
        long.truncate(4);
        long.push(data_row(&[Some("16385"), Some(&"/".repeat(1024)), None]));
        assert!(first_refusal(150018, long).contains("location of 1024 bytes"));
    }

    #[test]
    fn commands_follow_the_server_version() {
        let options = BaseBackupOptions {
            label: "it's tidemark".into(),
            fast_checkpoint: true,
            include_wal: false,
        };
        assert_eq!(
            options.command(150018).unwrap(),
            "BASE_BACKUP (LABEL 'it''s tidemark', PROGRESS, CHECKPOINT 'fast', WAIT false, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP, TARGET 'client')"
        );
        assert_eq!(
            options.command(140005).unwrap(),
            "BASE_BACKUP LABEL 'it''s tidemark' PROGRESS FAST NOWAIT TABLESPACE_MAP MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'"
        );
        assert_eq!(
            options.command(120010).unwrap(),
            "BASE_BACKUP LABEL 'it''s tidemark' PROGRESS FAST NOWAIT TABLESPACE_MAP"
        );
        assert_eq!(
            options.command(180004).unwrap(),
            options.command(150018).unwrap(),
            "18 takes 15's command"
        );
        for unsupported in [110022, 190000] {
            assert_eq!(
                options.command(unsupported).unwrap_err().to_string(),
                format!(
                    "PostgreSQL {} is not supported: Tidemark supports PostgreSQL 12 to 18",
                    unsupported / 10000
                )
            );
        }
    }
}
