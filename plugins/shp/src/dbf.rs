//! A `.dbf` source that reads invalid dates as empty.
//!
//! Real files hold dates like `00000000` for "no date", which GDAL reads as
//! NULL but the DBF reader refuses. This reader hands the DBF reader each
//! record with such date fields blanked (blank is NULL). It is used only for
//! files that have date fields.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

/// A `.dbf`, as it is or with its invalid dates blanked.
pub enum Dbf {
    Plain(BufReader<File>),
    Lenient(Box<Lenient>),
}

pub struct Lenient {
    inner: BufReader<File>,
    /// Where the inner reader is, to avoid seeks (which empty its buffer).
    inner_pos: u64,
    pos: u64,
    header_len: u64,
    record_len: u64,
    /// The byte ranges of the date fields within a record.
    dates: Vec<(usize, usize)>,
    /// The record last read, patched: its index and bytes.
    record: Option<(u64, Vec<u8>)>,
}

impl Dbf {
    /// Opens `path`, lenient when its field descriptors include a date.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let mut inner = BufReader::new(File::open(path)?);
        let mut header = [0u8; 32];
        inner.read_exact(&mut header)?;
        let header_len = usize::from(u16::from_le_bytes([header[8], header[9]]));
        // Field descriptors follow, 32 bytes each, up to a 0x0D byte: the
        // type is at byte 11, the length at byte 16.
        let mut descriptors = vec![0u8; header_len.saturating_sub(32)];
        inner.read_exact(&mut descriptors)?;
        inner.seek(SeekFrom::Start(0))?;
        let mut dates = Vec::new();
        let mut offset = 1; // the deletion flag
        for descriptor in descriptors.chunks_exact(32) {
            if descriptor[0] == 0x0D {
                break;
            }
            let length = usize::from(descriptor[16]);
            if descriptor[11] == b'D' {
                dates.push((offset, offset + length));
            }
            offset += length;
        }
        if dates.is_empty() {
            return Ok(Dbf::Plain(inner));
        }
        Ok(Dbf::Lenient(Box::new(Lenient {
            inner,
            inner_pos: 0,
            pos: 0,
            header_len: u64::from(u16::from_le_bytes([header[8], header[9]])),
            record_len: u64::from(u16::from_le_bytes([header[10], header[11]])).max(1),
            dates,
            record: None,
        })))
    }
}

/// Whether 8 bytes are a date the DBF reader takes (or blank, which is NULL).
fn valid_date(bytes: &[u8]) -> bool {
    if bytes.iter().all(|b| *b == b' ') {
        return true;
    }
    if bytes.len() != 8 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
    };
    (1..=12).contains(&number(4..6)) && (1..=31).contains(&number(6..8))
}

impl Lenient {
    fn inner_read_at(&mut self, at: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.inner_pos != at {
            self.inner.seek(SeekFrom::Start(at))?;
            self.inner_pos = at;
        }
        let mut filled = 0;
        while filled < buf.len() {
            let read = self.inner.read(&mut buf[filled..])?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        self.inner_pos += filled as u64;
        Ok(filled)
    }
}

impl Read for Lenient {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.header_len {
            let wanted = buf.len().min((self.header_len - self.pos) as usize);
            let read = self.inner_read_at(self.pos, &mut buf[..wanted])?;
            self.pos += read as u64;
            return Ok(read);
        }
        let index = (self.pos - self.header_len) / self.record_len;
        if self.record.as_ref().is_none_or(|(i, _)| *i != index) {
            let mut bytes = vec![0u8; self.record_len as usize];
            let read = self.inner_read_at(self.header_len + index * self.record_len, &mut bytes)?;
            bytes.truncate(read);
            if read == self.record_len as usize {
                for &(start, end) in &self.dates {
                    if end <= bytes.len() && !valid_date(&bytes[start..end]) {
                        bytes[start..end].fill(b' ');
                    }
                }
            }
            self.record = Some((index, bytes));
        }
        let Some((_, record)) = &self.record else {
            return Ok(0);
        };
        let offset = ((self.pos - self.header_len) % self.record_len) as usize;
        if offset >= record.len() {
            return Ok(0);
        }
        let n = buf.len().min(record.len() - offset);
        buf[..n].copy_from_slice(&record[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Lenient {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(at) => at,
            SeekFrom::Current(delta) => self.pos.saturating_add_signed(delta),
            SeekFrom::End(delta) => {
                let end = self.inner.seek(SeekFrom::End(0))?;
                self.inner_pos = end;
                end.saturating_add_signed(delta)
            }
        };
        Ok(self.pos)
    }
}

impl Read for Dbf {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Dbf::Plain(inner) => inner.read(buf),
            Dbf::Lenient(inner) => inner.read(buf),
        }
    }
}

impl Seek for Dbf {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match self {
            Dbf::Plain(inner) => inner.seek(to),
            Dbf::Lenient(inner) => inner.seek(to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_date;

    #[test]
    fn dates_the_reader_refuses_are_invalid() {
        assert!(valid_date(b"20240131"));
        assert!(valid_date(b"        "));
        assert!(!valid_date(b"00000000"));
        assert!(!valid_date(b"20241301"));
        assert!(!valid_date(b"2024-1-1"));
    }
}
