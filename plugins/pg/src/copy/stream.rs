//! Masking in the stream: the rows of `COPY ... TO STDOUT` (text or binary
//! format) from the source, with the hashed and faked fields replaced, into
//! `COPY ... FROM STDIN` of the target. Unmasked values of those fields are only
//! in this process's memory on the way, never on disk or in the target.
//!
//! A value's hash is SHA-256 of the salt, `|` and the value's text (as
//! PostgreSQL writes it), so the same value with the same salt gives the same
//! mask in every table and every run.

use bytes::{Bytes, BytesMut};
use flow_engine::flow_db::tokio_postgres::{CopyInSink, CopyOutStream};
use flow_engine::{RunContext, StepError};
use futures_util::{SinkExt as _, StreamExt as _};
use sha2::{Digest as _, Sha256};

/// What becomes of one field, from its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Masked {
    /// Hex digits, at most this many.
    Hex(usize),
    /// A whole number from the hash's leading bits (`digits` hex digits).
    Number(usize),
    Uuid,
    Email,
    Name,
    Phone,
}

pub(crate) const FIRST: &[&str] = &[
    "Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "Hedy", "John",
    "Karen", "Leslie", "Margaret", "Niklaus", "Radia", "Shafi", "Sophie", "Tim", "Tony", "Dennis",
    "Ken", "Lynn", "Mary", "Yukihiro",
];
pub(crate) const LAST: &[&str] = &[
    "Allen",
    "Backus",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Floyd",
    "Goldberg",
    "Hamilton",
    "Hopper",
    "Iverson",
    "Kay",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "McCarthy",
    "Naur",
    "Perlman",
    "Ritchie",
    "Shannon",
    "Thompson",
    "Turing",
    "Wirth",
    "Yao",
];

/// Masks fields of COPY rows, in text format (`row`) or binary (`binary`).
#[derive(Clone)]
pub(crate) struct Masker {
    /// The salt and `|`, hashed once; each value continues from here.
    keyed: Sha256,
    /// By field position: the mask, if any.
    fields: Vec<Option<Masked>>,
    value: Vec<u8>,
}

impl Masker {
    pub fn new(salt: &str, fields: Vec<Option<Masked>>) -> Self {
        let mut keyed = Sha256::new();
        keyed.update(salt.as_bytes());
        keyed.update(b"|");
        Self {
            keyed,
            fields,
            value: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.fields.iter().all(Option::is_none)
    }

    /// Appends `row` (one line, without its newline) to `out`, masked.
    pub fn row(&mut self, row: &[u8], out: &mut BytesMut) {
        for (index, field) in row.split(|&b| b == b'\t').enumerate() {
            if index > 0 {
                out.extend_from_slice(b"\t");
            }
            match self.fields.get(index).copied().flatten() {
                Some(mask) if field != b"\\N" => {
                    unescape(field, &mut self.value);
                    let digest = self.keyed.clone().chain_update(&self.value).finalize();
                    write_mask(mask, &digest, out);
                }
                _ => out.extend_from_slice(field),
            }
        }
        out.extend_from_slice(b"\n");
    }
}

/// COPY's binary format: the signature, flags and header extension length.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl Masker {
    /// Moves the complete tuples of binary COPY data from `input` to `out`,
    /// masked; the header and the trailer are read and left out (the writer
    /// writes one of each around the tuples of every reader). A tuple cut
    /// across messages waits in `input` for the rest.
    pub fn binary(&mut self, input: &mut BytesMut, out: &mut BytesMut, header: &mut bool) {
        if !*header {
            let fixed = SIGNATURE.len() + 8;
            if input.len() < fixed {
                return;
            }
            let extension = read_i32(&input[SIGNATURE.len() + 4..]) as usize;
            if input.len() < fixed + extension {
                return;
            }
            let _ = input.split_to(fixed + extension);
            *header = true;
        }
        while let Some(length) = tuple_length(input) {
            let tuple = input.split_to(length);
            self.binary_tuple(&tuple, out);
        }
    }

    fn binary_tuple(&mut self, tuple: &[u8], out: &mut BytesMut) {
        let count = i16::from_be_bytes([tuple[0], tuple[1]]);
        if count < 0 {
            // The trailer.
            return;
        }
        out.extend_from_slice(&tuple[..2]);
        let mut at = 2;
        for index in 0..usize::try_from(count.max(0)).unwrap_or(0) {
            let length = read_i32(&tuple[at..]);
            at += 4;
            if length < 0 {
                out.extend_from_slice(&length.to_be_bytes());
                continue;
            }
            let value = &tuple[at..at + length as usize];
            at += length as usize;
            match self.fields.get(index).copied().flatten() {
                Some(mask) => {
                    self.value.clear();
                    text_of(mask, value, &mut self.value);
                    let digest = self.keyed.clone().chain_update(&self.value).finalize();
                    let mut masked = BytesMut::new();
                    match mask {
                        Masked::Number(digits) => {
                            let n = leading(&digest, digits);
                            match value.len() {
                                2 => masked.extend_from_slice(&(n as i16).to_be_bytes()),
                                4 => masked.extend_from_slice(&(n as i32).to_be_bytes()),
                                _ => masked.extend_from_slice(&(n as i64).to_be_bytes()),
                            }
                        }
                        Masked::Uuid => masked.extend_from_slice(&digest[..16]),
                        text => write_mask(text, &digest, &mut masked),
                    }
                    out.extend_from_slice(&(masked.len() as i32).to_be_bytes());
                    out.extend_from_slice(&masked);
                }
                None => {
                    out.extend_from_slice(&length.to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
    }
}

fn read_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The length of the complete tuple (or trailer) at the start of `input`.
fn tuple_length(input: &[u8]) -> Option<usize> {
    if input.len() < 2 {
        return None;
    }
    let count = i16::from_be_bytes([input[0], input[1]]);
    let mut at = 2;
    for _ in 0..count.max(0) {
        if input.len() < at + 4 {
            return None;
        }
        let length = read_i32(&input[at..]);
        at += 4 + usize::try_from(length.max(0)).unwrap_or(0);
    }
    (input.len() >= at).then_some(at)
}

/// A binary value as the text PostgreSQL writes for it: what is hashed, so
/// that binary and text copies, and masks in SQL, agree.
fn text_of(mask: Masked, value: &[u8], out: &mut Vec<u8>) {
    match mask {
        Masked::Number(_) => {
            let n: i64 = match value.len() {
                2 => i64::from(i16::from_be_bytes([value[0], value[1]])),
                4 => i64::from(read_i32(value)),
                _ => i64::from_be_bytes(value[..8].try_into().unwrap_or([0; 8])),
            };
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Masked::Uuid => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for (i, byte) in value.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push(b'-');
                }
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
        }
        _ => out.extend_from_slice(value),
    }
}

/// The hash's first `digits` hex digits as a number.
fn leading(digest: &[u8], digits: usize) -> u64 {
    let mut n = 0u64;
    for i in 0..digits {
        let byte = digest[i / 2];
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        n = (n << 4) | u64::from(nibble);
    }
    n
}

fn hex(digest: &[u8], digits: usize, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..digits {
        let byte = digest[i / 2];
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        out.extend_from_slice(&[HEX[usize::from(nibble)]]);
    }
}

fn write_mask(mask: Masked, digest: &[u8], out: &mut BytesMut) {
    match mask {
        Masked::Hex(digits) => hex(digest, digits.min(64), out),
        Masked::Number(digits) => {
            out.extend_from_slice(leading(digest, digits).to_string().as_bytes())
        }
        Masked::Uuid => {
            let mut digits = BytesMut::with_capacity(32);
            hex(digest, 32, &mut digits);
            for (start, end) in [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)] {
                if start > 0 {
                    out.extend_from_slice(b"-");
                }
                out.extend_from_slice(&digits[start..end]);
            }
        }
        Masked::Email => {
            out.extend_from_slice(b"user");
            hex(digest, 12, out);
            out.extend_from_slice(b"@example.com");
        }
        Masked::Name => {
            let n = leading(digest, 8) as usize;
            out.extend_from_slice(FIRST[n % FIRST.len()].as_bytes());
            out.extend_from_slice(b" ");
            out.extend_from_slice(LAST[n / FIRST.len() % LAST.len()].as_bytes());
        }
        Masked::Phone => {
            let n = leading(digest, 8) % 10_000_000;
            out.extend_from_slice(format!("+1-555-{n:07}").as_bytes());
        }
    }
}

/// A field of COPY's text format as the value's bytes: `\\`, `\t`, `\n`,
/// `\r`, `\b`, `\f`, `\v`, octal `\ddd` and `\xhh` undone.
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let byte = field[i];
        if byte != b'\\' || i + 1 == field.len() {
            out.push(byte);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut taken = 0;
                while taken < 2 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    taken += 1;
                }
                out.push((value & 0xff) as u8);
            }
            b'x' => {
                let mut value = 0u32;
                let mut taken = 0;
                while taken < 2 && i < field.len() && field[i].is_ascii_hexdigit() {
                    value = value * 16 + (field[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    taken += 1;
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
}

/// Streams the rows of every source (readers of parts of one table) into
/// the target, masked; returns rows and bytes. Each source is read and
/// masked on a task of its own, a few batches ahead of the writes; in binary
/// format the writer puts one header before and one trailer after all of
/// them.
pub(crate) async fn pump(
    context: &RunContext,
    sources: Vec<CopyOutStream>,
    sink: CopyInSink<Bytes>,
    masker: &Masker,
    binary: bool,
) -> Result<(u64, u64), StepError> {
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Result<Bytes, StepError>>(8);
    let mut readers = Vec::new();
    let mut aborts = Vec::new();
    for source in sources {
        let reader = tokio::spawn(read(source, masker.clone(), binary, sender.clone()));
        aborts.push(AbortOnDrop(reader.abort_handle()));
        readers.push(reader);
    }
    drop(sender);
    futures_util::pin_mut!(sink);
    let mut bytes = 0u64;
    if binary {
        let mut header = BytesMut::from(SIGNATURE);
        header.extend_from_slice(&[0; 8]);
        sink.feed(header.freeze()).await?;
    }
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        bytes += batch.len() as u64;
        context.progress.add_bytes(batch.len() as u64);
        sink.feed(batch).await?;
    }
    // Every row was sent only if every reader ended on its own: a panic
    // there must not commit part of a table.
    for reader in readers {
        reader
            .await
            .map_err(|e| StepError::message(format!("reading the rows stopped: {e}"), None))?;
    }
    if binary {
        sink.feed(Bytes::from_static(&[0xff, 0xff])).await?;
    }
    let rows = sink.as_mut().finish().await?;
    context.progress.add_rows(rows);
    Ok((rows, bytes))
}

/// One source's rows, masked, in batches to the writer.
async fn read(
    source: CopyOutStream,
    mut masker: Masker,
    binary: bool,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, StepError>>,
) {
    const BATCH: usize = 256 * 1024;
    futures_util::pin_mut!(source);
    let mut out = BytesMut::with_capacity(BATCH + 4096);
    let mut pending = BytesMut::new();
    let mut header = false;
    while let Some(chunk) = source.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let error = StepError::from(flow_engine::flow_db::DbError::from(error));
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        if binary {
            pending.extend_from_slice(&chunk);
            masker.binary(&mut pending, &mut out, &mut header);
        } else {
            // PostgreSQL sends a row per message: whole lines are masked
            // where they arrived; only a row cut across messages is
            // gathered first.
            let mut rest: &[u8] = &chunk;
            if !pending.is_empty() {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        pending.extend_from_slice(&rest[..end]);
                        masker.row(&pending, &mut out);
                        pending.clear();
                        rest = &rest[end + 1..];
                    }
                    None => {
                        pending.extend_from_slice(rest);
                        rest = &[];
                    }
                }
            }
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                masker.row(&rest[..end], &mut out);
                rest = &rest[end + 1..];
            }
            pending.extend_from_slice(rest);
        }
        if out.len() >= BATCH && sender.send(Ok(out.split().freeze())).await.is_err() {
            return;
        }
    }
    if !binary && !pending.is_empty() {
        masker.row(&pending, &mut out);
    }
    if !out.is_empty() {
        let _ = sender.send(Ok(out.split().freeze())).await;
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::{Masked, Masker, unescape};

    fn masked(fields: Vec<Option<Masked>>, row: &[u8]) -> String {
        let mut out = bytes::BytesMut::new();
        Masker::new("salt", fields).row(row, &mut out);
        String::from_utf8(out.to_vec()).expect("utf-8")
    }

    #[test]
    fn binary_and_text_rows_mask_alike() {
        let fields = vec![
            Some(Masked::Number(7)),
            Some(Masked::Uuid),
            Some(Masked::Email),
            None,
        ];
        let text = masked(
            fields.clone(),
            b"42\t0011aabb-ccdd-eeff-0011-223344556677\tann@x.org\t\\N",
        );
        let mut input = bytes::BytesMut::new();
        input.extend_from_slice(super::SIGNATURE);
        input.extend_from_slice(&[0; 8]);
        input.extend_from_slice(&4i16.to_be_bytes());
        input.extend_from_slice(&4i32.to_be_bytes());
        input.extend_from_slice(&42i32.to_be_bytes());
        input.extend_from_slice(&16i32.to_be_bytes());
        input.extend_from_slice(&[
            0x00, 0x11, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x66, 0x77,
        ]);
        input.extend_from_slice(&9i32.to_be_bytes());
        input.extend_from_slice(b"ann@x.org");
        input.extend_from_slice(&(-1i32).to_be_bytes());
        // Half a trailer: it waits for the rest, then is left out.
        input.extend_from_slice(&[0xff]);
        let mut out = bytes::BytesMut::new();
        let mut header = false;
        let mut masker = Masker::new("salt", fields);
        masker.binary(&mut input, &mut out, &mut header);
        assert!(header);
        assert_eq!(input.as_ref(), &[0xff], "the cut trailer waits");
        let before = out.len();
        input.extend_from_slice(&[0xff]);
        masker.binary(&mut input, &mut out, &mut header);
        assert!(input.is_empty());
        assert_eq!(out.len(), before, "the trailer is the writer's");
        let tuple = &out[..];
        let parts: Vec<&str> = text.trim_end().split('\t').collect();
        let number = i32::from_be_bytes(tuple[6..10].try_into().expect("int4"));
        assert_eq!(number.to_string(), parts[0]);
        let uuid: String = tuple[14..30].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(uuid, parts[1].replace('-', ""));
        let length = i32::from_be_bytes(tuple[30..34].try_into().expect("length")) as usize;
        assert_eq!(&tuple[34..34 + length], parts[2].as_bytes());
        assert_eq!(&tuple[34 + length..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn escapes_are_undone_before_hashing() {
        let mut value = Vec::new();
        unescape(b"a\\tb\\\\c\\nd\\101\\x41", &mut value);
        assert_eq!(value, b"a\tb\\c\ndAA");
    }

    #[test]
    fn masks_are_deterministic_typed_and_keep_nulls() {
        let fields = vec![
            None,
            Some(Masked::Email),
            Some(Masked::Number(7)),
            Some(Masked::Hex(10)),
            Some(Masked::Uuid),
        ];
        let one = masked(fields.clone(), b"1\tann@x.org\t42\t\\N\tann");
        let two = masked(fields.clone(), b"2\tann@x.org\t42\tz\tann");
        let parts: Vec<&str> = one.trim_end().split('\t').collect();
        assert_eq!(parts[0], "1");
        assert!(
            parts[1].starts_with("user") && parts[1].ends_with("@example.com"),
            "{one}"
        );
        assert!(parts[2].parse::<u32>().expect("number") < (1 << 28));
        assert_eq!(parts[3], "\\N");
        assert_eq!(parts[4].len(), 36);
        let others: Vec<&str> = two.trim_end().split('\t').collect();
        assert_eq!(
            (parts[1], parts[2], parts[4]),
            (others[1], others[2], others[4])
        );
        assert_eq!(others[3].len(), 10);
        let salted = {
            let mut out = bytes::BytesMut::new();
            Masker::new("other", fields).row(b"1\tann@x.org\t42\t\\N\tann", &mut out);
            String::from_utf8(out.to_vec()).expect("utf-8")
        };
        assert_ne!(salted, one, "another salt, other masks");
    }
}
