//! `shp:convert`: ESRI shapefiles to CSV, with all attributes and one geometry
//! column (hex EWKB with SRID, or WKT).

use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

pub struct Convert;

/// Encodings a `.dbf` may be read with when its `.cpg` does not say.
pub const ENCODINGS: &[&str] = &["utf-8", "latin1", "windows-1252"];

static CONVERT: OperationSpec = OperationSpec {
    tool: "shp",
    target: Target::None,
    operation: "convert",
    summary: "convert shapefiles into CSV files with a geometry column",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Glob,
            "the shapefiles, like \"data/raw/**/*.shp\"",
        ),
        ParamSpec::required("to", ParamType::Path, "the folder for the CSV files"),
        ParamSpec::optional(
            "geometry",
            ParamType::OneOf(&["ewkb", "wkt"]),
            "how geometry is written (default `ewkb`)",
        ),
        ParamSpec::optional("srid", ParamType::Count, "the SRID, overriding the .prj"),
        ParamSpec::optional(
            "encoding",
            ParamType::String,
            "the .dbf encoding when there is no .cpg (default utf-8)",
        ),
    ],
};

impl Operation for Convert {
    fn spec(&self) -> &'static OperationSpec {
        &CONVERT
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        if let Some(encoding) = step.params.str("encoding")
            && !ENCODINGS.contains(&encoding.to_ascii_lowercase().as_str())
        {
            return Err(vec![Problem {
                param: Some("encoding"),
                message: format!("unknown encoding `{encoding}`"),
                help: Some(format!("known encodings: {}", ENCODINGS.join(", "))),
            }]);
        }
        let from = step.params.str("from").unwrap_or_default();
        let to = step.params.str("to").unwrap_or_default();
        Ok(Prepared::default()
            .reads(Resource::file(from))
            .writes(Resource::file(format!(
                "{}/**/*.csv",
                to.trim_end_matches('/')
            ))))
    }
}

inventory::submit!(Registration(&Convert));
