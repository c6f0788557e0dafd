//! An incremental decoder of HTTP/1.1 chunked bodies (RFC 9112 §7.1): fed whatever bytes have
//! arrived, it appends the decoded data and says how much input it used, so an endless SSE
//! stream and a complete poll answer use the same code.

/// Longest chunk-size line (size, extensions) accepted.
const SIZE_LINE_MAX: usize = 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailer,
    Done,
}

#[derive(Debug, Default, Clone)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    /// The terminating chunk and trailers have been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible into `out`; returns the bytes of `input` used
    /// (the rest is an incomplete line: feed it again with more).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> anyhow::Result<usize> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = (left as usize).min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    at += n;
                    self.state =
                        if left as usize == n { State::DataEnd } else { State::Data(left - n as u64) };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    anyhow::ensure!(&rest[..2] == b"\r\n", "chunk data not followed by CRLF");
                    at += 2;
                    self.state = State::Size;
                }
                State::Size | State::Trailer => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        anyhow::ensure!(rest.len() <= SIZE_LINE_MAX, "chunk line too long");
                        return Ok(at);
                    };
                    let line = &rest[..end];
                    at += end + 2;
                    if self.state == State::Trailer {
                        if line.is_empty() {
                            self.state = State::Done;
                        }
                        continue;
                    }
                    let size = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size)?.trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| anyhow::anyhow!("bad chunk size {size:?}"))?;
                    self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_in_any_pieces() {
        let wire = b"4\r\nWiki\r\n6;ext\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = Decoder::default();
            let mut out = Vec::new();
            let mut pending = wire[..split].to_vec();
            let used = d.feed(&pending, &mut out).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&wire[split..]);
            let used = d.feed(&pending, &mut out).unwrap();
            assert_eq!(used, pending.len());
            assert!(d.done());
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "split at {split}");
        }
    }

    #[test]
    fn rejects_junk() {
        assert!(Decoder::default().feed(b"zz\r\n", &mut Vec::new()).is_err());
        assert!(Decoder::default().feed(b"1\r\nabc", &mut Vec::new()).is_err());
        assert!(Decoder::default().feed(&[b'1'; 2000], &mut Vec::new()).is_err());
    }
}
