use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

pub struct Push;

static PUSH: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Database,
    operation: "push",
    summary: "create or update custom types from a types file",
    params: &[
        ParamSpec::required(
            "types",
            ParamType::Path,
            "the types file written by `drizzle:<db>:pull`",
        ),
        ParamSpec::optional(
            "renames",
            ParamType::Strings,
            "enum labels renamed, as \"type.old=new\"",
        ),
    ],
};

impl Operation for Push {
    fn spec(&self) -> &'static OperationSpec {
        &PUSH
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let problems: Vec<Problem> = step
            .params
            .list("renames")
            .into_iter()
            .filter(|rename| parse_rename(rename).is_none())
            .map(|rename| Problem {
                param: Some("renames"),
                message: format!("`{rename}` is not a rename"),
                help: Some("write renames as \"type.old_label=new_label\"".into()),
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let database = step.target.unwrap_or("flow").to_owned();
        Ok(Prepared::default()
            .reads(Resource::file(step.params.str("types").unwrap_or_default()))
            .reads(Resource::Extensions {
                database: database.clone(),
            })
            .creates(Resource::Types { database }))
    }
}

/// `type.old=new` as (type, old, new).
pub fn parse_rename(text: &str) -> Option<(&str, &str, &str)> {
    let (ty, labels) = text.rsplit_once('.').filter(|(ty, _)| !ty.is_empty())?;
    let (old, new) = labels.split_once('=')?;
    (!old.is_empty() && !new.is_empty()).then_some((ty, old, new))
}

inventory::submit!(Registration(&Push));

#[cfg(test)]
mod tests {
    use super::parse_rename;

    #[test]
    fn renames_name_a_type_and_two_labels() {
        assert_eq!(
            parse_rename("public.zone.res=residential"),
            Some(("public.zone", "res", "residential"))
        );
        assert_eq!(parse_rename("zone.res="), None);
        assert_eq!(parse_rename("res=residential"), None);
    }
}
