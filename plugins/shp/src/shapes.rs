//! A `.shp` read record by record, seekable through its `.shx`.
//!
//! Each record is read whole into a buffer and parsed from there, so that a
//! record's bytes never run into the next one, a reader can start at any
//! record of the index and go on sequentially without seeking (the buffered
//! reader keeps its buffer), and whether a `Z` record carries its optional
//! M section is known.

use std::fs::File;
use std::io::{BufReader, Read, Seek as _};
use std::path::Path;

use shapefile::{ReadableShape as _, Shape, ShapeType};

pub struct Shapes {
    file: BufReader<File>,
    /// Where `file` is, in bytes from the start.
    pos: u64,
    /// The end of the records, as the header says.
    end: u64,
    /// Byte offsets of the records, from the `.shx`.
    index: Option<Vec<u64>>,
    next: usize,
    pub shape_type: ShapeType,
    /// Whether the geometries carry measures: always for the `M` types; for
    /// the `Z` types, when their first shape has the optional M section, as
    /// GDAL decides.
    pub measures: bool,
    content: Vec<u8>,
}

impl Shapes {
    pub fn open(shp: &Path, shx: Option<&Path>) -> Result<Self, String> {
        let unreadable =
            |p: &Path, e: std::io::Error| format!("cannot read `{}`: {e}", p.display());
        let mut file = BufReader::new(File::open(shp).map_err(|e| unreadable(shp, e))?);
        let mut start = [0u8; 100];
        file.read_exact(&mut start).map_err(|_| {
            format!(
                "`{}` is too short to be a shapefile (less than its 100-byte header)",
                shp.display()
            )
        })?;
        let code = i32::from_be_bytes([start[0], start[1], start[2], start[3]]);
        if code != 9994 {
            return Err(format!(
                "`{}` is not a shapefile: it starts with {code}, not the file code 9994",
                shp.display()
            ));
        }
        let header = shapefile::header::Header::read_from(&mut std::io::Cursor::new(&start[..]))
            .map_err(|e| format!("`{}` has a header flow cannot read: {e}", shp.display()))?;
        let shape_type = header.shape_type;
        let index = match shx {
            Some(shx) => {
                let bytes = std::fs::read(shx).map_err(|e| unreadable(shx, e))?;
                let records = bytes.get(100..).unwrap_or_default();
                Some(
                    records
                        .chunks_exact(8)
                        .map(|r| u64::from(u32::from_be_bytes([r[0], r[1], r[2], r[3]])) * 2)
                        .collect(),
                )
            }
            None => None,
        };
        // The file's own size bounds the records: some writers get the
        // header's length wrong, and GDAL reads on regardless.
        let actual = std::fs::metadata(shp).map(|m| m.len()).unwrap_or(0);
        let mut shapes = Self {
            file,
            pos: 100,
            end: actual,
            index,
            next: 0,
            shape_type,
            measures: matches!(
                shape_type,
                ShapeType::PointM
                    | ShapeType::MultipointM
                    | ShapeType::PolylineM
                    | ShapeType::PolygonM
            ),
            content: Vec::new(),
        };
        if shape_type.has_z() {
            shapes.measures = shapes.first_has_measures();
            shapes.file.rewind().map_err(|e| unreadable(shp, e))?;
            shapes.pos = 0;
            shapes.move_to(100)?;
            shapes.next = 0;
        }
        Ok(shapes)
    }

    /// Whether the first shape that is not null carries the optional M
    /// section of the `Z` types: GDAL reads the file as measured if it does.
    fn first_has_measures(&mut self) -> bool {
        for _ in 0..16 {
            match self.next_shape() {
                Some(Ok(Shape::NullShape)) => {}
                Some(Ok(_)) => return m_section(&self.content),
                _ => return false,
            }
        }
        false
    }

    /// The number of records, when there is an index to count them.
    pub fn count(&self) -> Option<usize> {
        self.index.as_ref().map(Vec::len)
    }

    /// Positions the reader at record `index` (from 0); needs the `.shx`.
    pub fn seek(&mut self, index: usize) -> Result<(), String> {
        let offsets = self.index.as_ref().ok_or("it has no .shx to seek with")?;
        let at = offsets.get(index).copied().unwrap_or(self.end);
        self.move_to(at)?;
        self.next = index;
        Ok(())
    }

    fn move_to(&mut self, at: u64) -> Result<(), String> {
        if at != self.pos {
            let delta =
                i64::try_from(at).unwrap_or(i64::MAX) - i64::try_from(self.pos).unwrap_or(0);
            self.file.seek_relative(delta).map_err(|e| e.to_string())?;
            self.pos = at;
        }
        Ok(())
    }

    /// The next record's shape, `None` after the last.
    pub fn next_shape(&mut self) -> Option<Result<Shape, String>> {
        if let Some(index) = &self.index {
            let at = *index.get(self.next)?;
            if at + 8 > self.end {
                self.next += 1;
                return Some(Err(
                    "the .shp ends before this record, which its .shx lists".into(),
                ));
            }
            if let Err(error) = self.move_to(at) {
                return Some(Err(error));
            }
        }
        if self.pos + 8 > self.end {
            return None;
        }
        self.next += 1;
        Some(self.read_record())
    }

    fn read_record(&mut self) -> Result<Shape, String> {
        let mut header = [0u8; 8];
        self.file
            .read_exact(&mut header)
            .map_err(|_| "the .shp ends inside a record header".to_owned())?;
        let words = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let size = usize::try_from(words)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        if size < 4 || self.pos + 8 + size as u64 > self.end {
            return Err(format!(
                "its header says {size} bytes, past the end of the .shp"
            ));
        }
        self.content.resize(size, 0);
        self.file
            .read_exact(&mut self.content)
            .map_err(|_| "the .shp ends inside a record".to_owned())?;
        self.pos += 8 + size as u64;
        let size = i32::try_from(size).map_err(|_| "a record too large".to_owned())?;
        Shape::read_from(&mut std::io::Cursor::new(&self.content), size).map_err(|e| e.to_string())
    }
}

/// Whether a `Z` record's content (type, then the shape) is long enough to
/// hold the M section after its Z values.
fn m_section(content: &[u8]) -> bool {
    let word = |at: usize| -> usize {
        content
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let without = match word(0) {
        11 => return content.len() >= 36,
        // Multipoint Z: type, box, count, points, Z range, Z values.
        18 => 40 + 24 * word(36) + 16,
        // Polyline Z, polygon Z: type, box, parts, points, part starts, ...
        13 | 15 => 44 + 4 * word(36) + 24 * word(40) + 16,
        // Multipatch: part types too.
        31 => 44 + 8 * word(36) + 24 * word(40) + 16,
        _ => return false,
    };
    let points = if word(0) == 18 { word(36) } else { word(40) };
    content.len() >= without + 16 + 8 * points
}
