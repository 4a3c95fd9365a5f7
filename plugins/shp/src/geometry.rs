//! Shapes as hex EWKB (with SRID) or WKT. Polygons become MultiPolygons and
//! polylines MultiLineStrings, whatever their number of parts, so that a
//! column holds one geometry type (as shp2pgsql and ogr2ogr's PROMOTE_TO_MULTI
//! do). A polygon's rings are grouped by orientation: each outer ring starts a
//! polygon and the inner rings after it are its holes.

use shapefile::{NO_DATA, Point, PointM, PointZ, PolygonRing, Shape};

/// A coordinate with what the shape type carries.
#[derive(Clone, Copy)]
struct Coord {
    x: f64,
    y: f64,
    z: Option<f64>,
    m: Option<f64>,
}

impl From<&Point> for Coord {
    fn from(p: &Point) -> Self {
        Coord {
            x: p.x,
            y: p.y,
            z: None,
            m: None,
        }
    }
}

impl From<&PointM> for Coord {
    fn from(p: &PointM) -> Self {
        Coord {
            x: p.x,
            y: p.y,
            z: None,
            m: Some(p.m),
        }
    }
}

impl From<&PointZ> for Coord {
    fn from(p: &PointZ) -> Self {
        Coord {
            x: p.x,
            y: p.y,
            z: Some(p.z),
            m: Some(p.m),
        }
    }
}

/// A geometry in the few forms shapefiles produce.
enum Geometry {
    Point(Coord),
    MultiPoint(Vec<Coord>),
    MultiLineString(Vec<Vec<Coord>>),
    MultiPolygon(Vec<Vec<Vec<Coord>>>),
}

fn coords<P>(points: &[P]) -> Vec<Coord>
where
    for<'a> Coord: From<&'a P>,
{
    points.iter().map(Coord::from).collect()
}

fn polygons<P>(rings: &[PolygonRing<P>]) -> Vec<Vec<Vec<Coord>>>
where
    for<'a> Coord: From<&'a P>,
{
    let mut polygons: Vec<Vec<Vec<Coord>>> = Vec::new();
    for ring in rings {
        match ring {
            PolygonRing::Outer(points) => polygons.push(vec![coords(points)]),
            PolygonRing::Inner(points) => match polygons.last_mut() {
                Some(polygon) => polygon.push(coords(points)),
                // A hole before any outer ring: keep it as a polygon of its own.
                None => polygons.push(vec![coords(points)]),
            },
        }
    }
    polygons
}

/// The geometry of a shape, with whether it has Z and M: the `Z` types
/// carry M only when `measures` says the file uses them.
fn geometry(shape: &Shape, measures: bool) -> Option<(Geometry, bool, bool)> {
    let (geometry, z, m) = geometry_of(shape)?;
    Some((geometry, z, m && (measures || !z)))
}

fn geometry_of(shape: &Shape) -> Option<(Geometry, bool, bool)> {
    Some(match shape {
        Shape::NullShape => return None,
        Shape::Point(p) => (Geometry::Point(p.into()), false, false),
        Shape::PointM(p) => (Geometry::Point(p.into()), false, true),
        Shape::PointZ(p) => (Geometry::Point(p.into()), true, true),
        Shape::Multipoint(s) => (Geometry::MultiPoint(coords(s.points())), false, false),
        Shape::MultipointM(s) => (Geometry::MultiPoint(coords(s.points())), false, true),
        Shape::MultipointZ(s) => (Geometry::MultiPoint(coords(s.points())), true, true),
        Shape::Polyline(s) => (
            Geometry::MultiLineString(s.parts().iter().map(|p| coords(p)).collect()),
            false,
            false,
        ),
        Shape::PolylineM(s) => (
            Geometry::MultiLineString(s.parts().iter().map(|p| coords(p)).collect()),
            false,
            true,
        ),
        Shape::PolylineZ(s) => (
            Geometry::MultiLineString(s.parts().iter().map(|p| coords(p)).collect()),
            true,
            true,
        ),
        Shape::Polygon(s) => (Geometry::MultiPolygon(polygons(s.rings())), false, false),
        Shape::PolygonM(s) => (Geometry::MultiPolygon(polygons(s.rings())), false, true),
        Shape::PolygonZ(s) => (Geometry::MultiPolygon(polygons(s.rings())), true, true),
        Shape::Multipatch(_) => return None,
    })
}

/// An M value as written: a missing measure is the shapefile's "no data"
/// number (below -10^38), kept as it is, as GDAL keeps it.
fn m_value(m: Option<f64>) -> f64 {
    m.unwrap_or(NO_DATA)
}

struct Ewkb {
    bytes: Vec<u8>,
    z: bool,
    m: bool,
}

impl Ewkb {
    fn header(&mut self, kind: u32, srid: Option<u32>) {
        let mut code = kind;
        if self.z {
            code |= 0x8000_0000;
        }
        if self.m {
            code |= 0x4000_0000;
        }
        if srid.is_some() {
            code |= 0x2000_0000;
        }
        self.bytes.push(1);
        self.bytes.extend_from_slice(&code.to_le_bytes());
        if let Some(srid) = srid {
            self.bytes.extend_from_slice(&srid.to_le_bytes());
        }
    }

    fn count(&mut self, n: usize) {
        self.bytes
            .extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }

    fn coord(&mut self, c: &Coord) {
        self.bytes.extend_from_slice(&c.x.to_le_bytes());
        self.bytes.extend_from_slice(&c.y.to_le_bytes());
        if self.z {
            self.bytes
                .extend_from_slice(&c.z.unwrap_or(0.0).to_le_bytes());
        }
        if self.m {
            self.bytes.extend_from_slice(&m_value(c.m).to_le_bytes());
        }
    }

    fn points(&mut self, points: &[Coord]) {
        self.count(points.len());
        for c in points {
            self.coord(c);
        }
    }
}

/// The shape as hex EWKB with its SRID; `None` for a null shape.
pub fn to_ewkb(shape: &Shape, srid: u32, measures: bool) -> Option<String> {
    Some(
        ewkb(shape, srid, measures)?
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect(),
    )
}

/// The shape as EWKB bytes with its SRID (what PostGIS takes in binary COPY);
/// `None` for a null shape.
pub fn ewkb(shape: &Shape, srid: u32, measures: bool) -> Option<Vec<u8>> {
    let (geometry, z, m) = geometry(shape, measures)?;
    let mut w = Ewkb {
        bytes: Vec::with_capacity(64),
        z,
        m,
    };
    match &geometry {
        Geometry::Point(c) => {
            w.header(1, Some(srid));
            w.coord(c);
        }
        Geometry::MultiPoint(points) => {
            w.header(4, Some(srid));
            w.count(points.len());
            for c in points {
                w.header(1, None);
                w.coord(c);
            }
        }
        Geometry::MultiLineString(lines) => {
            w.header(5, Some(srid));
            w.count(lines.len());
            for line in lines {
                w.header(2, None);
                w.points(line);
            }
        }
        Geometry::MultiPolygon(polygons) => {
            w.header(6, Some(srid));
            w.count(polygons.len());
            for polygon in polygons {
                w.header(3, None);
                w.count(polygon.len());
                for ring in polygon {
                    w.points(ring);
                }
            }
        }
    }
    Some(w.bytes)
}

/// The shape as WKT (with Z and M as the shape type has them).
pub fn to_wkt(shape: &Shape, measures: bool) -> Option<String> {
    let (geometry, z, m) = geometry(shape, measures)?;
    let dims = match (z, m) {
        (true, true) => " ZM",
        (true, false) => " Z",
        (false, true) => " M",
        (false, false) => "",
    };
    let coord = |c: &Coord| {
        let mut text = format!("{} {}", c.x, c.y);
        if z {
            text.push_str(&format!(" {}", c.z.unwrap_or(0.0)));
        }
        if m {
            text.push_str(&format!(" {}", m_value(c.m)));
        }
        text
    };
    let list = |points: &[Coord]| {
        format!(
            "({})",
            points.iter().map(coord).collect::<Vec<_>>().join(",")
        )
    };
    Some(match &geometry {
        Geometry::Point(c) => format!("POINT{dims}({})", coord(c)),
        Geometry::MultiPoint(points) => {
            format!(
                "MULTIPOINT{dims}({})",
                points
                    .iter()
                    .map(|c| format!("({})", coord(c)))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Geometry::MultiLineString(lines) => {
            format!(
                "MULTILINESTRING{dims}({})",
                lines.iter().map(|l| list(l)).collect::<Vec<_>>().join(",")
            )
        }
        Geometry::MultiPolygon(polygons) => format!(
            "MULTIPOLYGON{dims}({})",
            polygons
                .iter()
                .map(|p| format!(
                    "({})",
                    p.iter().map(|r| list(r)).collect::<Vec<_>>().join(",")
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
    })
}
