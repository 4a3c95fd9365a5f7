//! The SRID of a shapefile from its `.prj` (ESRI WKT), as GDAL finds it: an
//! explicit `AUTHORITY["EPSG", ...]`; else the coordinate system's name
//! looked up in the PROJ database (`proj.db`, from Debian's `proj-data`):
//! an ESRI alias of an EPSG system (`Japan_Zone_6` is EPSG 30166), an EPSG
//! name, or a system of the ESRI authority (`NAD_1983_StatePlane_Arizona_
//! Central_FIPS_0202_Feet` is ESRI 102649, which PostGIS's
//! `spatial_ref_sys` holds under that number); else a built-in table of the
//! common projections, for machines without `proj.db`. An unknown
//! projection gives no number, never a wrong one: the caller warns and
//! writes SRID 0. Matching by parameters, as GDAL also does, is not done.

/// The SRID the projection names, if flow can tell.
pub fn srid(prj: &str) -> Option<u32> {
    if let Some(code) = authority(prj) {
        return Some(code);
    }
    let name = prj.split('"').nth(1)?;
    proj_db::lookup(name).or_else(|| builtin(prj))
}

/// An explicit EPSG authority at the end of the WKT.
fn authority(prj: &str) -> Option<u32> {
    let text = prj.to_ascii_uppercase();
    let at = text.rfind("AUTHORITY[\"EPSG\",")?;
    text[at + 17..].split('"').nth(1)?.parse().ok()
}

mod proj_db {
    use std::sync::{Mutex, OnceLock};

    /// Where PROJ keeps its database: `PROJ_DATA` or `PROJ_LIB`, else
    /// Debian's place.
    fn path() -> std::path::PathBuf {
        ["PROJ_DATA", "PROJ_LIB"]
            .iter()
            .find_map(std::env::var_os)
            .map_or_else(
                || std::path::PathBuf::from("/usr/share/proj/proj.db"),
                |dir| std::path::PathBuf::from(dir).join("proj.db"),
            )
    }

    fn connection() -> Option<&'static Mutex<rusqlite::Connection>> {
        static DB: OnceLock<Option<Mutex<rusqlite::Connection>>> = OnceLock::new();
        DB.get_or_init(|| {
            rusqlite::Connection::open_with_flags(
                path(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()
            .map(Mutex::new)
        })
        .as_ref()
    }

    /// The code of a coordinate system by its name, EPSG first.
    pub fn lookup(name: &str) -> Option<u32> {
        let db = connection()?.lock().ok()?;
        let queries = [
            "SELECT code FROM alias_name WHERE table_name IN ('projected_crs', 'geodetic_crs')
             AND auth_name = 'EPSG' AND alt_name = ?1 ORDER BY table_name DESC, CAST(code AS integer) LIMIT 1",
            "SELECT code FROM projected_crs WHERE auth_name = 'EPSG' AND name = ?1 AND NOT deprecated
             UNION ALL SELECT code FROM geodetic_crs WHERE auth_name = 'EPSG' AND name = ?1 AND NOT deprecated
             LIMIT 1",
            "SELECT code FROM projected_crs WHERE auth_name = 'ESRI' AND name = ?1
             UNION ALL SELECT code FROM geodetic_crs WHERE auth_name = 'ESRI' AND name = ?1 LIMIT 1",
        ];
        queries.iter().find_map(|sql| {
            // Codes are stored as integers or as text.
            let code = db
                .query_row(sql, [name], |row| row.get::<_, rusqlite::types::Value>(0))
                .ok()?;
            match code {
                rusqlite::types::Value::Integer(code) => u32::try_from(code).ok(),
                rusqlite::types::Value::Text(code) => code.parse().ok(),
                _ => None,
            }
        })
    }
}

/// The EPSG code of the common projections, without `proj.db`.
fn builtin(prj: &str) -> Option<u32> {
    let text = prj.to_ascii_uppercase();
    let name = text.split('"').nth(1)?.to_owned();
    if text.starts_with("GEOGCS") {
        return match name.as_str() {
            "GCS_WGS_1984" | "WGS 84" | "WGS84" => Some(4326),
            "GCS_NORTH_AMERICAN_1983" | "NAD83" => Some(4269),
            "GCS_NORTH_AMERICAN_1927" | "NAD27" => Some(4267),
            "GCS_ETRS_1989" | "ETRS89" => Some(4258),
            "GCS_GDA_1994" => Some(4283),
            _ => None,
        };
    }
    if !text.starts_with("PROJCS") {
        return None;
    }
    if name.contains("WEB_MERCATOR")
        || name.contains("PSEUDO_MERCATOR")
        || name.contains("PSEUDO-MERCATOR")
    {
        return Some(3857);
    }
    // UTM zones on WGS 84, NAD83 and ETRS89.
    let zone = |prefix: &str| -> Option<(u32, char)> {
        let rest = name.strip_prefix(prefix)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let hemisphere = rest[digits.len()..].chars().next()?;
        Some((digits.parse().ok()?, hemisphere))
    };
    for (prefix, north, south) in [
        ("WGS_1984_UTM_ZONE_", 32600, Some(32700)),
        ("WGS 84 / UTM ZONE ", 32600, Some(32700)),
        ("NAD_1983_UTM_ZONE_", 26900, None),
        ("ETRS_1989_UTM_ZONE_", 25800, None),
    ] {
        if let Some((zone, hemisphere)) = zone(prefix)
            && (1..=60).contains(&zone)
        {
            return match (hemisphere, south) {
                ('N', _) => Some(north + zone),
                ('S', Some(south)) => Some(south + zone),
                _ => None,
            };
        }
    }
    match name.as_str() {
        "ETRS_1989_LAEA" | "ETRS89 / LAEA EUROPE" => Some(3035),
        "RGF_1993_LAMBERT_93" | "RGF93 / LAMBERT-93" => Some(2154),
        "BRITISH_NATIONAL_GRID" | "OSGB 1936 / BRITISH NATIONAL GRID" => Some(27700),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::srid;

    #[test]
    fn common_projections_have_their_epsg_codes() {
        assert_eq!(
            srid(
                r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["Degree",0.017453292519943295]]"#
            ),
            Some(4326)
        );
        assert_eq!(
            srid(r#"PROJCS["WGS_1984_UTM_Zone_33N",GEOGCS["GCS_WGS_1984"]]"#),
            Some(32633)
        );
        assert_eq!(
            srid(r#"PROJCS["WGS_1984_UTM_Zone_19S",GEOGCS["GCS_WGS_1984"]]"#),
            Some(32719)
        );
        assert_eq!(
            srid(r#"PROJCS["WGS_1984_Web_Mercator_Auxiliary_Sphere",GEOGCS["GCS_WGS_1984"]]"#),
            Some(3857)
        );
        assert_eq!(
            srid(r#"PROJCS["NAD83 / whatever",AUTHORITY["EPSG","26915"]]"#),
            Some(26915)
        );
        assert_eq!(
            srid(r#"PROJCS["Some_Local_Grid",GEOGCS["GCS_WGS_1984"]]"#),
            None
        );
    }

    #[test]
    fn esri_names_are_found_in_the_proj_database() {
        if !std::path::Path::new("/usr/share/proj/proj.db").exists() {
            return;
        }
        assert_eq!(
            srid(r#"PROJCS["Japan_Zone_6",GEOGCS["GCS_Tokyo"]]"#),
            Some(30166)
        );
        assert_eq!(
            srid(
                r#"PROJCS["NAD_1983_StatePlane_Arizona_Central_FIPS_0202_Feet",GEOGCS["GCS_North_American_1983"]]"#
            ),
            Some(102649)
        );
        assert_eq!(srid(r#"GEOGCS["GCS_North_American_1983"]"#), Some(4269));
    }
}
