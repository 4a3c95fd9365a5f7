//! A shapefile's `.dbf` read as GDAL reads it, field by field in order.
//!
//! Values keep what the file says: numbers (`N`, `F`) as their decimal
//! text, never through a float; text decoded in the encoding GDAL would pick
//! (the `encoding` parameter, else the `.cpg` in its usual spellings, else
//! the language driver byte through the ESRI code-page table, else UTF-8);
//! dates that are not dates (`00000000`), logicals that are not set (`?`)
//! and blank numbers are NULL, as GDAL reads them. Text that is not valid in
//! the chosen encoding is never replaced in silence: it is read as
//! Windows-1252 (when no encoding was declared) or with replacement
//! characters (when one was), and reported, with its record and field.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A field of the table, as its descriptor says.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// The dBase type letter: `C`, `N`, `F`, `L`, `D`, `I`, `O`, `B`, `T`,
    /// `@`, `Y`, `M`, ...
    pub kind: u8,
    pub length: usize,
    pub decimals: u8,
    offset: usize,
}

/// How a field's values are stored in PostgreSQL, as ogr2ogr types them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Text,
    Integer,
    Bigint,
    /// Exact decimal: every digit of the file kept.
    Numeric,
    Double,
    Boolean,
    Date,
    Timestamp,
}

impl Column {
    pub fn sql(self) -> &'static str {
        match self {
            Column::Text => "text",
            Column::Integer => "integer",
            Column::Bigint => "bigint",
            Column::Numeric => "numeric",
            Column::Double => "double precision",
            Column::Boolean => "boolean",
            Column::Date => "date",
            Column::Timestamp => "timestamp",
        }
    }
}

impl Field {
    /// GDAL's mapping: `N`/`F` without decimals are integers when they fit
    /// (width below 10: integer, below 19: bigint), other numbers exact.
    pub fn column(&self) -> Column {
        match self.kind {
            b'N' | b'F' if self.decimals == 0 && self.length < 10 => Column::Integer,
            b'N' | b'F' if self.decimals == 0 && self.length < 19 => Column::Bigint,
            b'N' | b'F' => Column::Numeric,
            b'I' | b'+' => Column::Integer,
            b'O' | b'B' | b'Y' => Column::Double,
            b'L' => Column::Boolean,
            b'D' => Column::Date,
            b'T' | b'@' => Column::Timestamp,
            _ => Column::Text,
        }
    }
}

/// One value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Text(Cow<'a, str>),
    /// A number as the file writes it (trimmed; validated as a number).
    Decimal(&'a str),
    Integer(i64),
    Double(f64),
    Bool(bool),
    Date {
        year: i32,
        month: u32,
        day: u32,
    },
    /// Microseconds since 2000-01-01 00:00.
    Timestamp(i64),
}

/// A value that is not what its field says, for a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: usize,
    pub message: String,
}

/// The text encodings a `.dbf` may use.
#[derive(Clone, Copy)]
pub enum Encoding {
    /// UTF-8; `guessed` when nothing declared it, so that invalid text is
    /// read as Windows-1252.
    Utf8 {
        guessed: bool,
    },
    Latin1,
    Whatwg(&'static encoding_rs::Encoding),
    Oem(u16, &'static [char; 128]),
}

impl Encoding {
    pub fn name(&self) -> String {
        match self {
            Encoding::Utf8 { .. } => "UTF-8".into(),
            Encoding::Latin1 => "ISO-8859-1".into(),
            Encoding::Whatwg(encoding) => encoding.name().into(),
            Encoding::Oem(page, _) => format!("CP{page}"),
        }
    }

    /// An encoding by a name as users and `.cpg` files write it: `UTF-8`,
    /// `utf8`, `65001`, `88591`, `8859-1`, `ISO-8859-15`, `latin1`, `1252`,
    /// `cp1252`, `windows-1252`, `ANSI 1251`, `852`, `CP437`, `OEM` (taken
    /// as 437), `LDID/87`, or any label the WHATWG encoding standard knows.
    pub fn from_label(label: &str) -> Option<Self> {
        let label = label.trim().trim_start_matches('\u{feff}').trim();
        let lower = label.to_ascii_lowercase();
        let lower = lower.as_str();
        if let Some(ldid) = lower.strip_prefix("ldid/") {
            return ldid.parse::<u8>().ok().and_then(Self::from_ldid);
        }
        if matches!(lower, "utf-8" | "utf8" | "65001") {
            return Some(Encoding::Utf8 { guessed: false });
        }
        if matches!(
            lower,
            "88591"
                | "8859-1"
                | "8859_1"
                | "iso-8859-1"
                | "iso8859-1"
                | "iso_8859-1"
                | "latin1"
                | "latin-1"
        ) {
            return Some(Encoding::Latin1);
        }
        if let Some(part) = lower
            .strip_prefix("8859")
            .map(|p| p.trim_start_matches(['-', '_']))
        {
            return encoding_rs::Encoding::for_label(format!("iso-8859-{part}").as_bytes())
                .map(Encoding::Whatwg);
        }
        if lower == "oem" {
            return Self::code_page(437);
        }
        let digits = lower
            .trim_start_matches("ansi")
            .trim_start_matches("windows-")
            .trim_start_matches("cp")
            .trim_start_matches("ibm")
            .trim();
        if let Ok(page) = digits.parse::<u16>() {
            return Self::code_page(page);
        }
        encoding_rs::Encoding::for_label(label.as_bytes()).map(Encoding::Whatwg)
    }

    /// A Windows or DOS code page by number.
    pub fn code_page(page: u16) -> Option<Self> {
        use oem_cp::code_table as t;
        let oem: Option<&'static [char; 128]> = match page {
            437 => Some(&t::DECODING_TABLE_CP437),
            737 => Some(&t::DECODING_TABLE_CP737),
            775 => Some(&t::DECODING_TABLE_CP775),
            850 => Some(&t::DECODING_TABLE_CP850),
            852 => Some(&t::DECODING_TABLE_CP852),
            855 => Some(&t::DECODING_TABLE_CP855),
            858 => Some(&t::DECODING_TABLE_CP858),
            860 => Some(&t::DECODING_TABLE_CP860),
            861 => Some(&t::DECODING_TABLE_CP861),
            862 => Some(&t::DECODING_TABLE_CP862),
            863 => Some(&t::DECODING_TABLE_CP863),
            865 => Some(&t::DECODING_TABLE_CP865),
            869 => Some(&t::DECODING_TABLE_CP869),
            _ => None,
        };
        if let Some(table) = oem {
            return Some(Encoding::Oem(page, table));
        }
        let label = match page {
            866 => "ibm866".to_owned(),
            874 => "windows-874".to_owned(),
            932 => "shift_jis".to_owned(),
            936 => "gbk".to_owned(),
            949 => "euc-kr".to_owned(),
            950 => "big5".to_owned(),
            1250..=1258 => format!("windows-{page}"),
            10000 => "macintosh".to_owned(),
            _ => return None,
        };
        encoding_rs::Encoding::for_label(label.as_bytes()).map(Encoding::Whatwg)
    }

    /// The code page of an ESRI language driver id (the `.dbf` header's
    /// byte 29), as GDAL's table gives it; `None` for 0 and unknown ids.
    pub fn from_ldid(ldid: u8) -> Option<Self> {
        let page: u16 = match ldid {
            1 | 11 | 13 | 15 | 17 | 21 | 24 | 25 | 27 => 437,
            2 | 10 | 14 | 16 | 18 | 20 | 22 | 26 | 29 | 37 | 55 => 850,
            3 | 88 | 89 => 1252,
            4 => 10000,
            8 | 23 | 102 => 865,
            19 | 123 => 932,
            28 | 108 => 863,
            31 | 34 | 35 | 64 | 100 | 135 => 852,
            36 => 860,
            38 | 101 => 866,
            77 | 122 => 936,
            78 | 121 => 949,
            79 | 120 => 950,
            80 | 124 => 874,
            87 => return Some(Encoding::Latin1),
            103 => 861,
            106 | 134 => 737,
            107 | 136 => 857,
            125 => 1255,
            126 => 1256,
            200 => 1250,
            201 => 1251,
            202 => 1254,
            203 => 1253,
            204 => 1257,
            _ => return None,
        };
        Self::code_page(page)
    }

    /// `bytes` as text, and whether they were not valid in this encoding.
    fn decode<'a>(&self, bytes: &'a [u8]) -> (Cow<'a, str>, bool) {
        match self {
            Encoding::Utf8 { guessed } => match std::str::from_utf8(bytes) {
                Ok(text) => (Cow::Borrowed(text), false),
                Err(_) if *guessed => {
                    let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
                    (text, true)
                }
                Err(_) => (String::from_utf8_lossy(bytes), true),
            },
            Encoding::Latin1 => {
                if bytes.is_ascii() {
                    (
                        Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()),
                        false,
                    )
                } else {
                    (
                        Cow::Owned(bytes.iter().map(|b| char::from(*b)).collect()),
                        false,
                    )
                }
            }
            Encoding::Whatwg(encoding) => {
                let (text, bad) = encoding.decode_without_bom_handling(bytes);
                (text, bad)
            }
            Encoding::Oem(_, table) => {
                if bytes.is_ascii() {
                    (
                        Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()),
                        false,
                    )
                } else {
                    let text = bytes
                        .iter()
                        .map(|b| {
                            if *b < 0x80 {
                                char::from(*b)
                            } else {
                                table[usize::from(*b - 0x80)]
                            }
                        })
                        .collect();
                    (Cow::Owned(text), false)
                }
            }
        }
    }
}

/// An open `.dbf`: its fields, and its records one after another.
pub struct Table {
    file: BufReader<File>,
    pub fields: Vec<Field>,
    pub records: u32,
    header_len: u64,
    record_len: usize,
    pub encoding: Encoding,
    record: Vec<u8>,
}

impl Table {
    /// Opens `path`; `encoding` forces one, else the `.cpg` beside it, the
    /// language driver byte, or UTF-8 decide.
    pub fn open(path: &Path, encoding: Option<&str>) -> Result<Self, String> {
        let unreadable = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
        let mut file = BufReader::new(File::open(path).map_err(unreadable)?);
        let mut header = [0u8; 32];
        file.read_exact(&mut header)
            .map_err(|_| format!("`{}` is too short to be a .dbf", path.display()))?;
        let records = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let header_len = u64::from(u16::from_le_bytes([header[8], header[9]]));
        let record_len = usize::from(u16::from_le_bytes([header[10], header[11]]));
        if header_len < 33 || record_len == 0 {
            return Err(format!(
                "`{}` is not a .dbf: its header says {header_len} header bytes and records of {record_len}",
                path.display()
            ));
        }
        let mut descriptors = vec![0u8; usize::try_from(header_len - 32).unwrap_or(0)];
        file.read_exact(&mut descriptors)
            .map_err(|_| format!("`{}` ends inside its header", path.display()))?;
        let encoding = match encoding {
            Some(label) => {
                Encoding::from_label(label).ok_or_else(|| format!("unknown encoding `{label}`"))?
            }
            None => Self::declared(path, header[29])?,
        };
        let mut fields = Vec::new();
        let mut offset = 1; // the deletion flag
        for descriptor in descriptors.chunks_exact(32) {
            if descriptor[0] == 0x0D {
                break;
            }
            let raw = &descriptor[..11];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            let (name, _) = encoding.decode(&raw[..end]);
            let length = usize::from(descriptor[16]);
            // Character fields may use the decimals byte as a high byte of
            // their length (Clipper, FoxPro).
            let length = if descriptor[11] == b'C' {
                length + usize::from(descriptor[17]) * 256
            } else {
                length
            };
            fields.push(Field {
                name: name.trim().to_owned(),
                kind: descriptor[11].to_ascii_uppercase(),
                length,
                decimals: if descriptor[11] == b'C' {
                    0
                } else {
                    descriptor[17]
                },
                offset,
            });
            offset += length;
        }
        if offset > record_len {
            return Err(format!(
                "`{}`: its fields take {offset} bytes, its records {record_len}",
                path.display()
            ));
        }
        file.seek(SeekFrom::Start(header_len)).map_err(unreadable)?;
        Ok(Self {
            file,
            fields,
            records,
            header_len,
            record_len,
            encoding,
            record: vec![0; record_len],
        })
    }

    /// The encoding the `.cpg` or the language driver byte declare.
    fn declared(path: &Path, ldid: u8) -> Result<Encoding, String> {
        for cpg in [path.with_extension("cpg"), path.with_extension("CPG")] {
            if let Ok(label) = std::fs::read_to_string(&cpg) {
                return Encoding::from_label(&label).ok_or_else(|| {
                        format!(
                            "`{}` names an encoding flow does not know: `{}`; set `encoding` on the step",
                            cpg.display(),
                            label.trim()
                        )
                    });
            }
        }
        Ok(Encoding::from_ldid(ldid).unwrap_or(Encoding::Utf8 { guessed: true }))
    }

    /// Positions the table at record `index` (from 0).
    pub fn seek(&mut self, index: usize) -> Result<(), String> {
        let at = self.header_len + index as u64 * self.record_len as u64;
        self.file
            .seek(SeekFrom::Start(at))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The next record's bytes, `None` at the end of the file.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, String>> {
        match self.file.read_exact(&mut self.record) {
            Ok(()) if self.record[0] == 0x1A => None,
            Ok(()) => Some(Ok(Record {
                bytes: &self.record,
                fields: &self.fields,
                encoding: self.encoding,
            })),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(error) => Some(Err(error.to_string())),
        }
    }
}

/// One record, its values read on demand.
pub struct Record<'a> {
    bytes: &'a [u8],
    fields: &'a [Field],
    encoding: Encoding,
}

impl<'a> Record<'a> {
    /// The value of field `index`, and what is wrong with it, if anything.
    pub fn value(&self, index: usize) -> (Value<'a>, Option<Problem>) {
        let field = &self.fields[index];
        let raw = &self.bytes[field.offset..field.offset + field.length];
        let problem = |message: String| {
            Some(Problem {
                field: index,
                message,
            })
        };
        match field.kind {
            b'N' | b'F' => {
                let text = trimmed(raw);
                if text.is_empty() || text.iter().all(|b| matches!(b, b'*' | b'.' | b'-')) {
                    return (Value::Null, None);
                }
                match std::str::from_utf8(text) {
                    Ok(number) if is_number(number) => (Value::Decimal(number), None),
                    _ => (
                        Value::Null,
                        problem(format!(
                            "`{}` is not a number; read as NULL",
                            String::from_utf8_lossy(text)
                        )),
                    ),
                }
            }
            b'L' => match raw.first().map(u8::to_ascii_uppercase) {
                Some(b'T' | b'Y') => (Value::Bool(true), None),
                Some(b'F' | b'N') => (Value::Bool(false), None),
                _ => (Value::Null, None),
            },
            b'D' => (date(raw).unwrap_or(Value::Null), None),
            b'I' | b'+' if raw.len() == 4 => (
                Value::Integer(i64::from(i32::from_le_bytes([
                    raw[0], raw[1], raw[2], raw[3],
                ]))),
                None,
            ),
            b'O' | b'B' if raw.len() == 8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(raw);
                (Value::Double(f64::from_le_bytes(bytes)), None)
            }
            b'Y' if raw.len() == 8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(raw);
                (
                    Value::Double(i64::from_le_bytes(bytes) as f64 / 10_000.0),
                    None,
                )
            }
            b'T' | b'@' if raw.len() == 8 => (timestamp(raw), None),
            _ => {
                let text = trimmed(raw);
                if text.is_empty() {
                    return (Value::Null, None);
                }
                let (decoded, bad) = self.encoding.decode(text);
                let problem = bad.then(|| Problem {
                    field: index,
                    message: match self.encoding {
                        Encoding::Utf8 { guessed: true } => {
                            "text is not UTF-8 and no encoding is declared; read as Windows-1252"
                                .into()
                        }
                        encoding => format!(
                            "text is not valid {}; invalid bytes read as U+FFFD",
                            encoding.name()
                        ),
                    },
                });
                (Value::Text(decoded), problem)
            }
        }
    }
}

/// Blanks (and NULs) around a value, as GDAL trims them.
fn trimmed(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|b| !matches!(b, b' ' | 0))
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !matches!(b, b' ' | 0))
        .map_or(start, |e| e + 1);
    &raw[start..end.max(start)]
}

/// A decimal number as PostgreSQL's `numeric` reads it: sign, digits, an
/// optional point, an optional exponent.
pub fn is_number(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let mut digits = 0;
    let mut points = 0;
    for b in mantissa.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => points += 1,
            _ => return false,
        }
    }
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) && e.len() < 5
    });
    digits > 0 && points <= 1 && exponent_ok
}

fn date(raw: &[u8]) -> Option<Value<'static>> {
    let text = std::str::from_utf8(trimmed(raw)).ok()?;
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = text[..4].parse().ok()?;
    let month: u32 = text[4..6].parse().ok()?;
    let day: u32 = text[6..].parse().ok()?;
    let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    valid.then_some(Value::Date { year, month, day })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A dBase timestamp: a Julian day number and milliseconds of the day.
fn timestamp(raw: &[u8]) -> Value<'static> {
    let day = i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]));
    let millis = i64::from(i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]));
    if day == 0 {
        return Value::Null;
    }
    // Julian day 2451545 is 2000-01-01.
    Value::Timestamp((day - 2_451_545) * 86_400_000_000 + millis * 1000)
}

/// A timestamp as PostgreSQL reads it.
pub fn timestamp_text(micros: i64) -> String {
    let (days, rest) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (year, month, day) = civil(days + 10_957);
    let seconds = rest / 1_000_000;
    let fraction = rest % 1_000_000;
    let mut text = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction > 0 {
        text.push_str(&format!(".{fraction:06}"));
    }
    text
}

/// The civil date of a day count from 1970-01-01 (Howard Hinnant's
/// civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpg_spellings_name_their_encodings() {
        for (label, name) in [
            ("UTF-8", "UTF-8"),
            ("utf8\n", "UTF-8"),
            ("65001", "UTF-8"),
            ("88591", "ISO-8859-1"),
            ("8859-1", "ISO-8859-1"),
            ("ISO-8859-15", "ISO-8859-15"),
            ("885915", "ISO-8859-15"),
            ("1252", "windows-1252"),
            ("cp1252", "windows-1252"),
            ("ANSI 1251", "windows-1251"),
            ("852", "CP852"),
            ("OEM", "CP437"),
            ("LDID/87", "ISO-8859-1"),
            ("866", "IBM866"),
            ("936", "GBK"),
        ] {
            assert_eq!(
                Encoding::from_label(label).map(|e| e.name()).as_deref(),
                Some(name),
                "{label:?}"
            );
        }
        assert!(Encoding::from_label("klingon").is_none());
    }

    #[test]
    fn language_driver_ids_follow_the_esri_table() {
        let name = |ldid| Encoding::from_ldid(ldid).map(|e| e.name());
        assert_eq!(name(0x57).as_deref(), Some("ISO-8859-1"));
        assert_eq!(name(0x03).as_deref(), Some("windows-1252"));
        assert_eq!(name(0x64).as_deref(), Some("CP852"));
        assert_eq!(name(0xC9).as_deref(), Some("windows-1251"));
        assert_eq!(name(0), None);
    }

    #[test]
    fn text_in_each_encoding() {
        let decode = |label: &str, bytes: &[u8]| {
            Encoding::from_label(label)
                .expect("known")
                .decode(bytes)
                .0
                .into_owned()
        };
        assert_eq!(decode("1252", b"Na\xe7\xe3o \x80"), "Nação €");
        assert_eq!(decode("88591", b"M\xe9xico"), "México");
        assert_eq!(decode("852", b"\xa5"), "ą");
        let guessed = Encoding::Utf8 { guessed: true };
        assert_eq!(
            guessed.decode(b"M\xe9xico"),
            (Cow::Owned("México".to_owned()), true)
        );
        assert!(!guessed.decode("México".as_bytes()).1);
    }

    #[test]
    fn numbers_keep_their_text_and_blank_ones_are_null() {
        assert!(is_number("1.42948681360561E+03"));
        assert!(is_number("-000107"));
        assert!(is_number(".5"));
        assert!(!is_number("1,5"));
        assert!(!is_number("1.2.3"));
        assert!(!is_number("e5"));
    }

    #[test]
    fn timestamps_read_as_postgresql_writes_them() {
        assert_eq!(timestamp_text(0), "2000-01-01 00:00:00");
        assert_eq!(
            timestamp_text(86_400_000_000 * 366 + 3_661_000_500),
            "2001-01-01 01:01:01.000500"
        );
    }

    #[test]
    fn dates_that_are_not_dates_are_null() {
        assert_eq!(
            date(b"20240229"),
            Some(Value::Date {
                year: 2024,
                month: 2,
                day: 29
            })
        );
        assert_eq!(date(b"20230229"), None);
        assert_eq!(date(b"00000000"), None);
        assert_eq!(date(b"        "), None);
    }
}
