//! The diskless form's end: the server follows the RDB with the same 40 characters it put in
//! the header (`rdbSaveRioWithEOFMark`), so the last 40 bytes received are held back until more
//! arrive, and the stream has ended when they equal the mark (as `getRDB` in redis-cli checks
//! after every read). Nothing of the mark reaches the writer.

/// `RDB_EOF_MARK_SIZE`.
pub const EOF_MARK_LEN: usize = 40;

pub struct Holdback {
    mark: [u8; EOF_MARK_LEN],
    held: Vec<u8>,
}

impl Holdback {
    pub fn new(mark: [u8; EOF_MARK_LEN]) -> Holdback {
        Holdback {
            mark,
            held: Vec::with_capacity(EOF_MARK_LEN),
        }
    }

    /// How many bytes are held back.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the next bytes read; passes to `emit` every byte that is certainly payload, in
    /// order; `true` once the stream ends with the mark (which is dropped).
    pub fn push(
        &mut self,
        data: &[u8],
        emit: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let total = self.held.len() + data.len();
        if total < EOF_MARK_LEN {
            self.held.extend_from_slice(data);
            return Ok(false);
        }
        let mut tail = [0u8; EOF_MARK_LEN];
        if data.len() >= EOF_MARK_LEN {
            tail.copy_from_slice(&data[data.len() - EOF_MARK_LEN..]);
        } else {
            let from_held = EOF_MARK_LEN - data.len();
            tail[..from_held].copy_from_slice(&self.held[self.held.len() - from_held..]);
            tail[from_held..].copy_from_slice(data);
        }
        let payload = total - EOF_MARK_LEN;
        let from_held = payload.min(self.held.len());
        if from_held > 0 {
            emit(&self.held[..from_held])?;
        }
        let from_data = payload - from_held;
        if from_data > 0 {
            emit(&data[..from_data])?;
        }
        self.held.clear();
        if tail == self.mark {
            return Ok(true);
        }
        self.held.extend_from_slice(&tail);
        Ok(false)
    }
}
