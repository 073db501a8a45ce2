//! LZF decompression, as Redis's `lzf_d.c` does it: an RDB string longer than 20 bytes may be
//! stored compressed (`rdbcompression yes`, the default), AUX values included.

use anyhow::bail;

/// Decompresses `input` into exactly `len` bytes, or says why it cannot.
pub fn decompress(input: &[u8], len: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let run = ctrl + 1;
            let Some(literal) = input.get(ip..ip + run) else {
                bail!("LZF literal runs past the compressed data");
            };
            out.extend_from_slice(literal);
            ip += run;
        } else {
            // A back reference: length (ctrl >> 5) + 2, 7 meaning "one more length byte".
            let mut run = ctrl >> 5;
            if run == 7 {
                let Some(&more) = input.get(ip) else {
                    bail!("LZF back reference cut short");
                };
                run += usize::from(more);
                ip += 1;
            }
            let Some(&low) = input.get(ip) else {
                bail!("LZF back reference cut short");
            };
            ip += 1;
            let distance = ((ctrl & 0x1f) << 8) + usize::from(low) + 1;
            let Some(start) = out.len().checked_sub(distance) else {
                bail!("LZF back reference before the start of the data");
            };
            // Byte by byte: the reference may overlap what it writes.
            for i in 0..run + 2 {
                let byte = out[start + i];
                out.push(byte);
            }
        }
        if out.len() > len {
            bail!("LZF data expands past its stated length {len}");
        }
    }
    if out.len() != len {
        bail!(
            "LZF data expands to {} bytes, not its stated {len}",
            out.len()
        );
    }
    Ok(out)
}
