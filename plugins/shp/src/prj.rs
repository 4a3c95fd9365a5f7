//! The SRID of a shapefile from its `.prj` (ESRI WKT): EPSG codes for the
//! common projections. An unknown projection gives no number, never a wrong
//! one; the caller warns and writes SRID 0.

/// The EPSG code the projection names, if it is one flow knows.
pub fn srid(prj: &str) -> Option<u32> {
    let text = prj.to_ascii_uppercase();
    // An explicit authority at the end of the WKT wins.
    if let Some(at) = text.rfind("AUTHORITY[\"EPSG\",")
        && let Some(code) = text[at + 17..]
            .split('"')
            .nth(1)
            .and_then(|c| c.parse().ok())
    {
        return Some(code);
    }
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
}
